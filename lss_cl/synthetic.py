"""Learnable synthetic sets: full-rank pixels (plain MTT) and low-rank LSS factors, + labels.

Both are ``nn.Module``s with one interface: ``images()`` (n, C, H, W) in normalised space,
``labels()`` (soft probabilities (n, K) or hard ids (n,)), ``parameters()``, ``num_floats()``
and ``state_dict()``. LSS image (i, j) is ``U[i,c] @ S[i,j,c] @ V[i,c]ᵀ`` per channel c: k
groups of shared dimension mappers U (C×H×r), V (C×W×r) and m per-image bases Σ (C×r×r).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .budget import Shape, fullrank_floats, lowrank_floats


class Labels(nn.Module):
    """Soft labels (learnable logits → softmax) or fixed hard class ids."""

    def __init__(self, hard: torch.Tensor, num_classes: int, soft: bool,
                 logits: torch.Tensor | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("hard", hard.long().clone())
        self.logits = nn.Parameter(logits.float().clone()) if soft and logits is not None else None
        if soft and logits is None:
            raise ValueError("soft labels need initial logits")

    @property
    def soft(self) -> bool:
        return self.logits is not None

    def forward(self) -> torch.Tensor:
        return torch.softmax(self.logits, 1) if self.logits is not None else self.hard

    def num_floats(self) -> int:
        return self.logits.numel() if self.logits is not None else 0


class SyntheticSet(nn.Module):
    """Common interface; subclasses define ``images()`` and ``image_floats()``."""

    kind = "abstract"

    def __init__(self, shape: Shape, labels: Labels):
        super().__init__()
        self.shape = shape
        self.label_set = labels

    def images(self) -> torch.Tensor:
        raise NotImplementedError

    def labels(self) -> torch.Tensor:
        return self.label_set()

    def image_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("label_set.")]

    def num_floats(self) -> int:
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self.label_set.hard.shape[0])


class FullRankSet(SyntheticSet):
    """Plain MTT: every pixel of every image is learned."""

    kind = "fullrank"

    def __init__(self, images: torch.Tensor, labels: Labels, shape: Shape):
        super().__init__(shape, labels)
        self.pixels = nn.Parameter(images.float().clone())

    def images(self) -> torch.Tensor:
        return self.pixels

    def num_floats(self) -> int:
        return fullrank_floats(self.shape, self.pixels.shape[0], self.label_set.soft)


class LowRankSet(SyntheticSet):
    """LSS: k groups × m images, image = U_i Σ_j V_iᵀ per channel."""

    kind = "lowrank"

    def __init__(self, U: torch.Tensor, S: torch.Tensor, V: torch.Tensor, labels: Labels, shape: Shape):
        super().__init__(shape, labels)
        k, c, h, r = U.shape
        if V.shape != (k, c, shape.width, r) or S.shape[0] != k or S.shape[2:] != (c, r, r):
            raise ValueError(f"factor shapes disagree: U {tuple(U.shape)}, S {tuple(S.shape)}, V {tuple(V.shape)}")
        self.U, self.S, self.V = (nn.Parameter(t.float().clone()) for t in (U, S, V))

    @property
    def rank(self) -> int:
        return int(self.U.shape[-1])

    @property
    def groups(self) -> int:
        return int(self.U.shape[0])

    @property
    def per_group(self) -> int:
        return int(self.S.shape[1])

    def images(self) -> torch.Tensor:
        return reconstruct(self.U, self.S, self.V)

    def num_floats(self) -> int:
        return lowrank_floats(self.shape, self.rank, self.groups, self.per_group, self.label_set.soft)


def reconstruct(U: torch.Tensor, S: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """(k,C,H,r), (k,m,C,r,r), (k,C,W,r) → (k·m, C, H, W), group-major order."""
    k, m, c, r, _ = S.shape
    x = U.unsqueeze(1) @ S @ V.unsqueeze(1).transpose(-1, -2)  # (k, m, C, H, W)
    return x.reshape(k * m, c, U.shape[2], V.shape[2])


def balanced_classes(n: int, num_classes: int) -> torch.Tensor:
    """Class of each synthetic image: round robin, so every class gets ⌊n/K⌋ or ⌈n/K⌉."""
    return torch.arange(n) % num_classes


def sample_real(images: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
    """One distinct random real image per requested class entry (with replacement only if a
    class has fewer images than requested)."""
    out = torch.empty(classes.shape[0], *images.shape[1:])
    for c in classes.unique():
        want = (classes == c).nonzero().flatten()
        pool = (labels == c).nonzero().flatten()
        pick = pool[torch.randperm(pool.numel(), generator=generator)[: want.numel()]]
        if pick.numel() < want.numel():
            pick = pool[torch.randint(pool.numel(), (want.numel(),), generator=generator)]
        out[want] = images[pick]
    return out


def svd_init(real: torch.Tensor, groups: int, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Factors whose reconstruction is the rank-r projection U Uᵀ x V Vᵀ of each real image.

    ``real`` is (k·m, C, H, W) in group-major order. Per group and channel, U holds the top-r
    left singular vectors of the images side by side [x_1 … x_m] (H × mW), V the top-r right
    singular vectors of the images stacked [x_1; …; x_m] (mH × W), and Σ_j = Uᵀ x_j V.
    """
    n, c, h, w = real.shape
    m = n // groups
    x = real.reshape(groups, m, c, h, w).double()
    wide = x.permute(0, 2, 3, 1, 4).reshape(groups, c, h, m * w)   # (k, C, H, mW)
    tall = x.permute(0, 2, 1, 3, 4).reshape(groups, c, m * h, w)   # (k, C, mH, W)
    U = torch.linalg.svd(wide, full_matrices=False)[0][..., :rank]
    V = torch.linalg.svd(tall, full_matrices=False)[2][..., :rank, :].transpose(-1, -2)
    S = U.transpose(-1, -2).unsqueeze(1) @ x @ V.unsqueeze(1)        # (k, m, C, r, r)
    return U.float(), S.float(), V.float()


def noise_init(n: int, shape: Shape, groups: int, rank: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random orthonormal mappers and Gaussian bases (the paper's noise option)."""
    m = n // groups
    c, h, w = shape.channels, shape.height, shape.width
    U = torch.linalg.qr(torch.randn(groups, c, h, rank, generator=generator))[0]
    V = torch.linalg.qr(torch.randn(groups, c, w, rank, generator=generator))[0]
    S = torch.randn(groups, m, c, rank, rank, generator=generator) * ((h * w) ** 0.5 / rank)
    return U, S, V  # pixels then have unit variance, like normalised images
