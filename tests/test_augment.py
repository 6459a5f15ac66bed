import pytest
import torch

from lss_cl.augment import DSA, STRATEGIES


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gradient_flows_to_input(strategy):
    x = torch.randn(8, 3, 16, 16, requires_grad=True)
    out = DSA(seed=0)(x, strategy=strategy)
    assert out.shape == x.shape
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_parameters_drawn_per_sample(strategy):
    x = torch.randn(1, 3, 16, 16).expand(32, 3, 16, 16).contiguous()
    out = DSA(seed=1)(x, strategy=strategy)
    distinct = {tuple(o.flatten()[:64].round(decimals=4).tolist()) for o in out}
    assert len(distinct) > 1, f"{strategy}: all samples got the same augmentation"


def test_seeded_and_siamese():
    x = torch.randn(6, 3, 16, 16)
    torch.testing.assert_close(DSA(seed=5)(x), DSA(seed=5)(x))
    aug = DSA()
    torch.testing.assert_close(aug(x, seed=9), aug(x, seed=9))  # Siamese: same seed, same params
    outs = {DSA(seed=s)(x).sum().item() for s in range(6)}
    assert len(outs) > 1


def test_mtt_defaults_and_bad_strategy():
    p = DSA().params
    assert (p.flip, p.scale, p.rotate, p.crop, p.cutout) == (0.5, 1.2, 15.0, 0.125, 0.5)
    assert (p.brightness, p.saturation, p.contrast) == (1.0, 2.0, 0.5)
    from lss_cl.augment import DSAParams
    with pytest.raises(ValueError, match="strategies"):
        DSA(DSAParams(strategies=("blur",)))
