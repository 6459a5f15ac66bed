"""One training loop for experts, evaluation of distilled sets and memory retraining.

Images are normalised float tensors held on the device; batches are gathered by index, so
there is no DataLoader between the data and the network. Labels are hard (int64, (N,)) or
soft (float probabilities, (N, K)); ``F.cross_entropy`` handles both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .augment import DSA


@dataclass
class TrainResult:
    epoch_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    test_accuracy: float | None = None


def train_model(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int,
                lr: float, batch_size: int = 256, momentum: float = 0.9, weight_decay: float = 5e-4,
                lr_decay: bool = True, dsa: DSA | None = None, device: torch.device | str = "cpu",
                seed: int = 0, test: tuple[torch.Tensor, torch.Tensor] | None = None,
                on_epoch_end: Callable[[int, nn.Module], None] | None = None,
                progress: bool | str = False) -> TrainResult:
    """SGD (momentum, weight decay) for ``epochs``; lr × 0.1 at half when ``lr_decay``.

    ``on_epoch_end(epoch, model)`` is called after each epoch (experts snapshot there).
    Returns per-epoch mean losses, throughput and, if ``test`` is given, its accuracy.
    """
    device = torch.device(device)
    model.to(device).train()
    x_all, y_all = images.to(device), labels.to(device)
    n = x_all.shape[0]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [epochs // 2] if lr_decay and epochs > 1 else [], 0.1)
    shuffle = torch.Generator().manual_seed(seed)
    result = TrainResult()
    bar = tqdm(range(epochs), desc=progress if isinstance(progress, str) else "train",
               disable=not progress, leave=False)
    start = time.perf_counter()
    for epoch in bar:
        perm = torch.randperm(n, generator=shuffle).to(device)
        total = torch.zeros((), device=device)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            x, y = x_all[idx], y_all[idx]
            if dsa is not None:
                x = dsa(x)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * idx.shape[0]
        sched.step()
        result.epoch_losses.append(float(total) / n)
        bar.set_postfix(loss=f"{result.epoch_losses[-1]:.3f}")
        if on_epoch_end is not None:
            on_epoch_end(epoch, model)
    result.seconds = time.perf_counter() - start
    result.images_per_second = epochs * n / max(result.seconds, 1e-9)
    if test is not None:
        result.test_accuracy = evaluate(model, *test, device=device)
    return result


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             classes: Sequence[int] | None = None, batch_size: int = 1000,
             device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy, optionally only on test samples whose label is in ``classes``."""
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    if classes is not None:
        keep = torch.isin(labels, torch.as_tensor(list(classes), dtype=labels.dtype))
        images, labels = images[keep], labels[keep]
    correct = 0
    for i in range(0, labels.shape[0], batch_size):
        out = model(images[i:i + batch_size].to(device))
        correct += int((out.argmax(1).cpu() == labels[i:i + batch_size].cpu()).sum())
    model.train(was_training)
    return correct / max(int(labels.shape[0]), 1)
