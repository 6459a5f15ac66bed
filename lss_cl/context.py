"""Earlier memories that a continual-learning distillation keeps in view (past-aware MTT).

In a class-incremental run the memory of experience i is replayed next to the memories of
experiences < i, so it has to teach its classes *against* theirs, not only against each other.
With ``distill.context_batch > 0`` the experts of experience i train on its real data plus the
earlier memories (one head over the current classes, then the earlier ones), and every student
step mixes ``context_batch`` of those fixed earlier images into the synthetic minibatch. The
matching loss then pulls the synthetic set towards trajectories that separate new from old
classes. Only the synthetic set is learned; the stored memory keeps labels over its own classes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Context:
    """Fixed earlier-memory images (normalised) with probabilities over their ``classes``."""

    images: torch.Tensor
    targets: torch.Tensor
    classes: list[int]

    def __post_init__(self) -> None:
        if self.images.shape[0] != self.targets.shape[0] or self.targets.shape[1] != len(self.classes):
            raise ValueError(f"context: {self.images.shape[0]} images, targets {tuple(self.targets.shape)}, "
                             f"{len(self.classes)} classes do not agree")

    def key(self) -> str:
        """Fingerprint of the exact tensors: experts trained next to other memories differ."""
        h = hashlib.sha256(str(self.classes).encode())
        for t in (self.images, self.targets):
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def head(self, current: int) -> int:
        """Output size of a network that scores the ``current`` classes, then the earlier ones."""
        return current + len(self.classes)


def as_head_targets(labels: torch.Tensor, current: int, head: int) -> torch.Tensor:
    """Labels over the ``current`` classes (hard ids or probabilities) as probabilities over
    a ``head``-way output whose first ``current`` columns are those classes."""
    probs = labels if labels.is_floating_point() else F.one_hot(labels, current).float()
    return F.pad(probs, (0, head - current))


def context_targets(context: Context, current: int) -> torch.Tensor:
    """Context probabilities placed in the columns after the ``current`` classes."""
    return F.pad(context.targets, (current, 0))


def expert_training_set(images: torch.Tensor, labels: torch.Tensor, context: Context,
                        current: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real images plus the context, repeated to about as many samples as the real data: the
    continual learner replays memory at an equal share, so the experts see it at that share."""
    head = context.head(current)
    reps = max(1, round(images.shape[0] / max(context.images.shape[0], 1)))
    x = torch.cat([images, context.images.to(images.device).repeat(reps, 1, 1, 1)])
    y = torch.cat([as_head_targets(labels, current, head),
                   context_targets(context, current).to(images.device).repeat(reps, 1)])
    return x, y
