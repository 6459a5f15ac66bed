"""Normalisation (dataset mean/std) and ZCA whitening, both invertible for display.

ZCA follows ``kornia.enhance.ZCAWhitening(eps)``: unbiased covariance of the flattened,
mean/std-normalised train images, ``T = U diag(1/sqrt(S + eps)) Uᵀ``, ``y = (x - μ) T``;
so a memory file that says ``zca: {"eps": 0.1}`` can be decoded by any reader with kornia.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from .data import ArraySplit, DatasetArrays


@dataclass
class ZCA:
    """A fitted ZCA whitening transform over flattened (C·H·W) images."""

    mean: torch.Tensor  # (D,)
    transform: torch.Tensor  # (D, D)
    inverse_transform: torch.Tensor  # (D, D)
    eps: float

    @classmethod
    def fit(cls, x: torch.Tensor, eps: float = 0.1, chunk: int = 8192) -> "ZCA":
        """Fit on ``x`` (N, ...); the covariance is accumulated in chunks to bound memory."""
        flat = x.reshape(x.shape[0], -1)
        mean = flat.mean(0, dtype=torch.float64)
        d = flat.shape[1]
        cov = torch.zeros(d, d, dtype=torch.float64)
        mean32 = mean.float()
        for i in range(0, flat.shape[0], chunk):  # float32 matmuls, float64 accumulation
            c = flat[i:i + chunk].float() - mean32
            cov += (c.T @ c).double()
        cov /= max(flat.shape[0] - 1, 1)
        evals, evecs = torch.linalg.eigh(cov)  # cov is symmetric PSD: eigh == svd, faster
        evals = evals.clamp_min(0)
        t = (evecs * torch.rsqrt(evals + eps)) @ evecs.T
        t_inv = (evecs * torch.sqrt(evals + eps)) @ evecs.T
        return cls(mean.float(), t.float(), t_inv.float(), eps)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m, t = self.mean.to(x.device), self.transform.to(x.device)
        return ((x.reshape(x.shape[0], -1) - m) @ t).reshape(x.shape)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        m, ti = self.mean.to(y.device), self.inverse_transform.to(y.device)
        return (y.reshape(y.shape[0], -1) @ ti + m).reshape(y.shape)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file({"mean": self.mean, "transform": self.transform,
                   "inverse_transform": self.inverse_transform}, tmp,
                  metadata={"eps": repr(self.eps)})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, eps: float) -> "ZCA":
        t = load_file(str(path))
        return cls(t["mean"], t["transform"], t["inverse_transform"], eps)


@dataclass
class Normalizer:
    """uint8 NHWC images → normalised (optionally whitened) float NCHW tensors, and back."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    zca: ZCA | None = None

    @classmethod
    def for_dataset(cls, data: DatasetArrays, zca: bool = False, eps: float = 0.1) -> "Normalizer":
        """Mean/std of the dataset; ZCA fit on its whole train split (cached next to the arrays)."""
        norm = cls(tuple(data.mean), tuple(data.std))
        if not zca:
            return norm
        cache = Path(data.cache_file).with_suffix(f".zca{eps:g}.safetensors") if data.cache_file else None
        if cache is not None and cache.is_file():
            norm.zca = ZCA.load(cache, eps)
        else:
            norm.zca = ZCA.fit(norm(data.train.images), eps)
            if cache is not None:
                norm.zca.save(cache)
        return norm

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        return mean, std

    def __call__(self, images: np.ndarray | torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        x = torch.as_tensor(images)
        out = torch.empty(x.shape[0], x.shape[3], x.shape[1], x.shape[2], dtype=torch.float32)
        mean, std = self._stats(out.device)
        for i in range(0, x.shape[0], chunk):
            part = x[i:i + chunk].permute(0, 3, 1, 2).float().div_(255.0).sub_(mean).div_(std)
            out[i:i + chunk] = self.zca(part) if self.zca is not None else part
        return out

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Back to [0, 1] RGB (N, C, H, W), for display."""
        if self.zca is not None:
            x = self.zca.inverse(x)
        mean, std = self._stats(x.device)
        return (x * std + mean).clamp(0, 1)


class TensorImageDataset(Dataset):
    """torchvision-style dataset over normalised tensors; ``targets`` as Avalanche expects."""

    def __init__(self, split: ArraySplit, normalizer: Normalizer):
        self.data = normalizer(split.images)
        self.targets = torch.as_tensor(split.labels, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int]:
        return self.data[idx], int(self.targets[idx])
