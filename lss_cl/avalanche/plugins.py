"""Avalanche plugins: replay of soft-labelled memories, and DSA on every training batch.

``SoftReplayPlugin`` follows the ``GenerativeReplayPlugin`` pattern: before each training
iteration it appends a memory minibatch to ``strategy.mbatch``. Targets of the whole batch
become probability vectors (one-hot for current data, the memory's soft labels for replayed
samples), which ``CrossEntropyLoss`` takes as they are; regularisers (LwF, EWC) see the
enlarged batch like any other.

With ``loss="ace"`` the batch is scored as in ER-ACE (Caccia et al., ICLR 2022) by Avalanche's
``ACECriterion``: current samples compete only among the classes of the current batch, so
learning new classes does not push the old logits down, and the replayed part is scored over
all classes. As in Avalanche's ``ER_ACE``, whose buffer already holds the current experience
when it trains on it, the replayed part carries the current experience as one more share
(a memory of it exists only after the experience has been distilled).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.training.regularization import ACECriterion

from ..augment import DSA
from .buffers import PerExperienceMemoryBuffer


class ReplayCriterion:
    """The strategy's criterion: soft-target cross-entropy over the whole batch (``ce``), or ER-ACE
    (``ace``) over a batch whose first ``current`` rows are current data and the rest replay."""

    def __init__(self, loss: str = "ce"):
        if loss not in ("ce", "ace"):
            raise ValueError(f"loss: got {loss!r}; allowed: ce, ace")
        self.loss = loss
        self.current: int | None = None  # set per training iteration by SoftReplayPlugin
        self.ace = ACECriterion()

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = self.current
        if self.loss == "ce" or n is None:
            return F.cross_entropy(out, y)
        return self.ace(out[:n], y[:n].argmax(1), out[n:], y[n:])  # current rows are one-hot


class SoftReplayPlugin(SupervisedPlugin):
    """Replays ``storage_policy``'s memory with its soft labels; updates it after each experience.
    Give ``criterion`` to the strategy as its loss."""

    def __init__(self, storage_policy: PerExperienceMemoryBuffer, batch_size_mem: int | None = None,
                 seed: int = 0, loss: str = "ce"):
        super().__init__()
        self.storage_policy = storage_policy
        self.batch_size_mem = batch_size_mem
        self.criterion = ReplayCriterion(loss)
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
        x, p = self._x[idx], self._p[idx]
        current = len(mb[0])
        if self.criterion.loss == "ace":  # the current experience's share of the replayed part
            k = min(current, max(1, round(n / (len(self.storage_policy.memories) + 1))))
            x, p = torch.cat([x[: n - k], mb[0][:k]]), torch.cat([p[: n - k], y[:k]])
        mb[0] = torch.cat([mb[0], x])
        mb[1] = torch.cat([y, p])
        mb[-1] = torch.cat([mb[-1], torch.full((n,), int(mb[-1][0]), device=mb[-1].device,
                                                dtype=mb[-1].dtype)])
        self.criterion.current = current

    def after_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        self.criterion.current = None  # evaluation losses are plain cross-entropy

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
