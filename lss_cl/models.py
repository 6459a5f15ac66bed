"""Networks: the MTT ConvNet and a CIFAR ResNet-18, both usable over a flat parameter vector.

The distiller unrolls students as ``θ ← θ - α ∇ℓ``; keeping θ as one flat vector makes the
update a single fused op and the matching loss a plain vector norm. ``FlatParams`` maps that
vector to named views for ``torch.func.functional_call``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

Norm = Literal["instance", "batch", "none"]


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "instance":  # MTT's "instancenorm": GroupNorm with one group per channel, affine
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class ConvNet(nn.Module):
    """depth × [conv3×3 → norm → ReLU → avgpool 2] → linear (the MTT/DC benchmark ConvNet)."""

    def __init__(self, num_classes: int, channels: int = 3, width: int = 128, depth: int = 3,
                 norm: Norm = "instance", im_size: tuple[int, int] = (32, 32)):
        super().__init__()
        layers: list[nn.Module] = []
        c, (h, w) = channels, im_size
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), _norm(norm, width), nn.ReLU(inplace=True),
                       nn.AvgPool2d(2)]
            c, h, w = width, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: Norm):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _norm(norm, cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(norm, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32×32 inputs: 3×3 stem, no max-pool, widths w, 2w, 4w, 8w."""

    def __init__(self, num_classes: int, channels: int = 3, width: int = 64, norm: Norm = "batch"):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1, bias=False), _norm(norm, width),
                                  nn.ReLU(inplace=True))
        blocks, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2 ** i
            blocks += [BasicBlock(cin, cout, stride, norm), BasicBlock(cout, cout, 1, norm)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))


def build_model(arch: str, num_classes: int, channels: int = 3, width: int = 128, depth: int = 3,
                norm: Norm | None = None, im_size: tuple[int, int] = (32, 32)) -> nn.Module:
    """``convnet`` (MTT default: width 128, depth 3, instance norm) or ``resnet18``."""
    if arch == "convnet":
        return ConvNet(num_classes, channels, width, depth, norm or "instance", im_size)
    if arch == "resnet18":
        return ResNet18(num_classes, channels, width, norm or "batch")
    raise ValueError(f"arch: got {arch!r}; allowed: convnet, resnet18")


class FlatParams:
    """Views a flat parameter vector as a module's named parameters (for ``functional_call``)."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.names = [n for n, _ in module.named_parameters()]
        self.shapes = [p.shape for _, p in module.named_parameters()]
        self.numels = [math.prod(s) for s in self.shapes]
        self.size = sum(self.numels)

    def flatten(self, module: nn.Module | None = None) -> torch.Tensor:
        """A *copy* of the module's parameters as one vector (safe to store in a trajectory)."""
        params = (module or self.module).parameters()
        return torch.cat([p.detach().reshape(-1) for p in params]).clone()

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: v.view(s) for n, v, s in zip(self.names, flat.split(self.numels), self.shapes)}

    def load_into(self, flat: torch.Tensor, module: nn.Module | None = None) -> None:
        """Copy a flat vector into the module's parameters in place."""
        with torch.no_grad():
            for p, v in zip((module or self.module).parameters(), flat.split(self.numels)):
                p.copy_(v.view_as(p))

    def __call__(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Forward pass of the module with parameters taken from ``flat``."""
        return functional_call(self.module, self.unflatten(flat), (x,))
