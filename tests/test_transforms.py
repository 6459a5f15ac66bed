import numpy as np
import torch

from lss_cl.transforms import ZCA, Normalizer, TensorImageDataset
from lss_cl.data import ArraySplit


def test_zca_round_trip_and_whitening():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(12, 12, generator=g)
    x = (torch.randn(4000, 12, generator=g) @ mix).reshape(4000, 3, 2, 2)
    zca = ZCA.fit(x, eps=1e-6)
    y = zca(x)
    torch.testing.assert_close(zca.inverse(y), x, atol=1e-3, rtol=1e-3)
    cov = torch.cov(y.reshape(4000, -1).T)
    torch.testing.assert_close(cov, torch.eye(12), atol=2e-2, rtol=0)
    # ZCA (unlike PCA whitening) is symmetric: the transform equals its transpose
    torch.testing.assert_close(zca.transform, zca.transform.T)


def test_normalizer_inverse_recovers_pixels():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    norm = Normalizer((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    x = norm(imgs)
    assert x.shape == (50, 3, 4, 4)
    torch.testing.assert_close(x[:, 0].mean(), torch.tensor((imgs[..., 0] / 255.0 - 0.5).mean() / 0.2,
                                                            dtype=torch.float32), atol=1e-5, rtol=0)
    norm.zca = ZCA.fit(x, eps=0.1)
    back = norm.inverse(norm(imgs))
    np.testing.assert_allclose(back.permute(0, 2, 3, 1).numpy() * 255, imgs, atol=0.05)


def test_tensor_dataset_has_targets():
    split = ArraySplit(np.zeros((3, 2, 2, 3), np.uint8), np.array([2, 0, 1]))
    ds = TensorImageDataset(split, Normalizer((0.0,) * 3, (1.0,) * 3))
    assert len(ds) == 3 and ds.targets.tolist() == [2, 0, 1]
    x, y = ds[0]
    assert x.shape == (3, 2, 2) and y == 2
