"""Avalanche plugins: replay of soft-labelled memories, and DSA on every training batch.

``SoftReplayPlugin`` follows the ``GenerativeReplayPlugin`` pattern: before each training
iteration it appends a memory minibatch to ``strategy.mbatch``. Targets of the whole batch
become probability vectors (one-hot for current data, the memory's soft labels for replayed
samples), which ``CrossEntropyLoss`` takes as they are; regularisers (LwF, EWC) see the
enlarged batch like any other.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from ..augment import DSA
from .buffers import PerExperienceMemoryBuffer


class SoftReplayPlugin(SupervisedPlugin):
    """Replays ``storage_policy``'s memory with its soft labels; updates it after each experience."""

    def __init__(self, storage_policy: PerExperienceMemoryBuffer, batch_size_mem: int | None = None,
                 seed: int = 0):
        super().__init__()
        self.storage_policy = storage_policy
        self.batch_size_mem = batch_size_mem
        self.gen = torch.Generator().manual_seed(seed)
        self._x = self._p = None
        self._order = torch.empty(0, dtype=torch.long)

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        x, p = self.storage_policy.replay_tensors()
        self._x, self._p = (x.to(strategy.device), p.to(strategy.device)) if len(x) else (None, None)
        self._order = torch.empty(0, dtype=torch.long)

    def _next_indices(self, n: int) -> torch.Tensor:
        while self._order.numel() < n:
            self._order = torch.cat([self._order, torch.randperm(self._x.shape[0], generator=self.gen)])
        idx, self._order = self._order[:n], self._order[n:]
        return idx

    def before_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        if self._x is None:
            return
        mb = strategy.mbatch
        n = self.batch_size_mem or len(mb[0])
        idx = self._next_indices(n).to(strategy.device)
        num_classes = self._p.shape[1]
        y = mb[1] if mb[1].is_floating_point() else F.one_hot(mb[1].long(), num_classes).float()
        mb[0] = torch.cat([mb[0], self._x[idx]])
        mb[1] = torch.cat([y, self._p[idx]])
        mb[-1] = torch.cat([mb[-1], torch.full((n,), int(mb[-1][0]), device=mb[-1].device,
                                                dtype=mb[-1].dtype)])

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.storage_policy.post_adapt(strategy, strategy.experience)
        self._x = self._p = None


class DSAPlugin(SupervisedPlugin):
    """Differentiable Siamese Augmentation on each training minibatch (memory included)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.dsa = DSA(seed=seed)

    def before_forward(self, strategy: Any, **kwargs: Any) -> None:
        if strategy.is_training:
            strategy.mbatch[0] = self.dsa(strategy.mbatch[0])
