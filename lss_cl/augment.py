"""Differentiable Siamese Augmentation (Zhao & Bilen, 2021) with the MTT defaults.

Every operation is built from differentiable tensor ops (affine grids, indexing, masks), so
gradients reach the input images — the distiller back-propagates through augmentation into
the synthetic set. One augmentation family is picked per call; its parameters are drawn per
sample. Passing the same ``seed`` twice gives the same augmentation (the "Siamese" part).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

STRATEGIES = ("color", "crop", "cutout", "flip", "scale", "rotate")


@dataclass
class DSAParams:
    """MTT's ParamDiffAug defaults."""

    strategies: tuple[str, ...] = STRATEGIES
    flip: float = 0.5
    scale: float = 1.2
    rotate: float = 15.0
    crop: float = 0.125
    cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


class DSA:
    """Callable augmentation: ``DSA(seed=0)(x)``; gradients flow from output to ``x``."""

    def __init__(self, params: DSAParams | None = None, seed: int | None = None):
        self.params = params or DSAParams()
        unknown = set(self.params.strategies) - set(STRATEGIES)
        if unknown or not self.params.strategies:
            raise ValueError(f"dsa strategies: got {sorted(unknown) or 'none'}; allowed: {', '.join(STRATEGIES)}")
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}

    def generator(self, device: torch.device, seed: int | None = None) -> torch.Generator | None:
        """The generator used on ``device`` (per-instance, seeded), or a fresh one for ``seed``."""
        if seed is not None:
            return torch.Generator(device=device).manual_seed(seed)
        if self.seed is None:
            return None  # global RNG
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def __call__(self, x: torch.Tensor, seed: int | None = None, strategy: str | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ``x``; randomness from ``generator``, else ``seed``, else the instance seed."""
        g = generator if generator is not None else self.generator(x.device, seed)
        if strategy is None:
            pick = torch.randint(len(self.params.strategies), (1,), generator=g, device=x.device)
            strategy = self.params.strategies[int(pick.item())]
        return getattr(self, f"_{strategy}")(x, g)

    # Each family below draws its own per-sample parameters from generator ``g``.
    def _rand(self, x: torch.Tensor, g: torch.Generator | None, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, device=x.device, dtype=x.dtype)

    def _flip(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        flip = self._rand(x, g, x.shape[0], 1, 1, 1) < self.params.flip
        return torch.where(flip, x.flip(3), x)

    def _affine(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(theta, list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, align_corners=True)

    def _scale(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        r = self.params.scale
        s = self._rand(x, g, 2, x.shape[0]) * (r - 1.0 / r) + 1.0 / r
        zero = torch.zeros_like(s[0])
        theta = torch.stack([torch.stack([s[0], zero, zero], 1), torch.stack([zero, s[1], zero], 1)], 1)
        return self._affine(x, theta)

    def _rotate(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        a = (self._rand(x, g, x.shape[0]) - 0.5) * 2 * self.params.rotate / 180 * math.pi
        zero = torch.zeros_like(a)
        theta = torch.stack([torch.stack([a.cos(), -a.sin(), zero], 1),
                             torch.stack([a.sin(), a.cos(), zero], 1)], 1)
        return self._affine(x, theta)

    def _color(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        p, n = self.params, x.shape[0]
        x = x + (self._rand(x, g, n, 1, 1, 1) - 0.5) * p.brightness
        m = x.mean(1, keepdim=True)
        x = (x - m) * (self._rand(x, g, n, 1, 1, 1) * p.saturation) + m
        m = x.mean((1, 2, 3), keepdim=True)
        return (x - m) * (self._rand(x, g, n, 1, 1, 1) + p.contrast) + m

    def _crop(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """Per-sample translation by up to crop·size pixels, zero fill (DSA's "crop")."""
        n, _, h, w = x.shape
        sh, sw = int(h * self.params.crop + 0.5), int(w * self.params.crop + 0.5)
        ty = torch.randint(-sh, sh + 1, (n, 1, 1), generator=g, device=x.device)
        tx = torch.randint(-sw, sw + 1, (n, 1, 1), generator=g, device=x.device)
        rows = (torch.arange(h, device=x.device).view(1, h, 1) + ty + 1).clamp(0, h + 1)
        cols = (torch.arange(w, device=x.device).view(1, 1, w) + tx + 1).clamp(0, w + 1)
        padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)
        batch = torch.arange(n, device=x.device).view(n, 1, 1)
        return padded[batch, rows, cols].permute(0, 3, 1, 2)

    def _cutout(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """Zero one square of cutout·size per sample, centred anywhere (clipped at borders)."""
        n, _, h, w = x.shape
        ch, cw = int(h * self.params.cutout + 0.5), int(w * self.params.cutout + 0.5)
        oy = torch.randint(0, h + (1 - ch % 2), (n, 1), generator=g, device=x.device) - ch // 2
        ox = torch.randint(0, w + (1 - cw % 2), (n, 1), generator=g, device=x.device) - cw // 2
        r = torch.arange(h, device=x.device).view(1, h)
        c = torch.arange(w, device=x.device).view(1, w)
        in_r = (r >= oy) & (r < oy + ch)
        in_c = (c >= ox) & (c < ox + cw)
        keep = ~(in_r[:, :, None] & in_c[:, None, :])
        return x * keep[:, None].to(x.dtype)
