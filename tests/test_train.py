import torch

from lss_cl.augment import DSA
from lss_cl.models import ConvNet
from lss_cl.train import evaluate, train_model


def _toy(n=64, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    x = torch.randn(n, 3, 8, 8, generator=g) * 0.3 + y.view(-1, 1, 1, 1).float()
    return x, y


def test_soft_label_training_reduces_loss():
    x, y = _toy()
    soft = torch.softmax(torch.nn.functional.one_hot(y, 3).float() * 3, 1)
    torch.manual_seed(0)
    net = ConvNet(3, width=8, depth=2, im_size=(8, 8))
    res = train_model(net, x, soft, epochs=8, lr=0.05, batch_size=16, dsa=DSA(seed=0))
    assert res.epoch_losses[-1] < 0.8 * res.epoch_losses[0]


def test_hard_labels_learn_and_evaluate_subset():
    x, y = _toy()
    torch.manual_seed(0)
    net = ConvNet(3, width=8, depth=2, im_size=(8, 8))
    res = train_model(net, x, y, epochs=10, lr=0.05, batch_size=16, test=(x, y))
    assert res.test_accuracy is not None and res.test_accuracy > 0.6
    assert res.images_per_second > 0
    only2 = evaluate(net, x, y, classes=[2])
    manual = (net.eval()(x[y == 2]).argmax(1) == 2).float().mean().item()
    assert abs(only2 - manual) < 1e-6


def test_on_epoch_end_called_each_epoch():
    x, y = _toy(16)
    seen = []
    train_model(ConvNet(3, width=4, depth=1, im_size=(8, 8)), x, y, epochs=3, lr=0.01,
                on_epoch_end=lambda e, m: seen.append(e))
    assert seen == [0, 1, 2]
