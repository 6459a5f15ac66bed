import torch

from lss_cl.models import ConvNet, FlatParams, ResNet18, build_model


def test_functional_convnet_equals_module():
    torch.manual_seed(0)
    net = ConvNet(10, width=16)
    flat = FlatParams(net)
    vec = flat.flatten()
    x = torch.randn(5, 3, 32, 32)
    assert vec.numel() == sum(p.numel() for p in net.parameters())
    torch.testing.assert_close(flat(vec, x), net(x))
    # a different vector gives the module's output once loaded into it
    other = torch.randn_like(vec) * 0.05
    out = flat(other, x)
    flat.load_into(other)
    torch.testing.assert_close(out, net(x))


def test_flatten_is_a_copy_not_a_view():
    net = ConvNet(2, width=4, depth=1, im_size=(8, 8))
    flat = FlatParams(net)
    snap = flat.flatten()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    assert not torch.allclose(snap, flat.flatten())


def test_functional_gradient_reaches_flat_vector():
    net = ConvNet(3, width=8, depth=2, im_size=(16, 16))
    flat = FlatParams(net)
    vec = flat.flatten().requires_grad_(True)
    flat(vec, torch.randn(4, 3, 16, 16)).sum().backward()
    assert vec.grad is not None and vec.grad.abs().sum() > 0


def test_paper_convnet_size_and_resnet():
    assert sum(p.numel() for p in ConvNet(10).parameters()) == 320_010
    assert isinstance(build_model("resnet18", 10, width=8), ResNet18)
    out = build_model("resnet18", 7, width=8)(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
