"""Storage accounting (the paper's Table 2) and the budget solver.

floats(low-rank) = k·C·(H+W)·r + k·m·C·r² + k·m·classes   (labels only when soft)
floats(full-rank) = n·C·H·W + n·classes                     (labels only when soft)

A real image costs C·H·W *bytes* (uint8); a float costs 4 (float32) or 2 (float16) bytes, so
budgets are given in floats, in images per class (IPC·classes·C·H·W floats, the paper's
convention) or in bytes for a storage dtype (the equal-byte comparison of the CL runner).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import ConfigError

DTYPE_BYTES = {"float32": 4, "float16": 2}


@dataclass(frozen=True)
class Shape:
    channels: int
    height: int
    width: int
    classes: int

    @property
    def pixels(self) -> int:
        return self.channels * self.height * self.width


def lowrank_floats(shape: Shape, rank: int, groups: int, per_group: int, soft_labels: bool = True) -> int:
    c, h, w = shape.channels, shape.height, shape.width
    labels = groups * per_group * shape.classes if soft_labels else 0
    return groups * c * (h + w) * rank + groups * per_group * c * rank * rank + labels


def fullrank_floats(shape: Shape, images: int, soft_labels: bool = False) -> int:
    return images * shape.pixels + (images * shape.classes if soft_labels else 0)


def ipc_budget_floats(shape: Shape, ipc: float) -> int:
    """The paper's budget: IPC images per class of C·H·W floats each."""
    return int(round(ipc * shape.classes * shape.pixels))


@dataclass(frozen=True)
class LowRankPlan:
    """A solved low-rank layout and what it costs."""

    rank: int
    groups: int
    per_group: int
    images: int
    floats: int
    budget_floats: int
    storage_dtype: str
    bytes: int
    raw_images_same_bytes: float

    def as_dict(self) -> dict:
        return asdict(self)


def solve_lowrank(shape: Shape, budget_floats: int, rank: int, groups: int,
                  soft_labels: bool = True, storage_dtype: str = "float32") -> LowRankPlan:
    """Largest images-per-group m with floats ≤ budget, for the given rank r and groups k."""
    if storage_dtype not in DTYPE_BYTES:
        raise ConfigError(f"storage_dtype: got {storage_dtype!r}; allowed: float32, float16")
    if not 1 <= rank <= min(shape.height, shape.width):
        raise ConfigError(f"rank: got {rank}; allowed range 1..{min(shape.height, shape.width)} "
                          f"(≤ min(H, W) of {shape.height}x{shape.width} images)")
    if groups < 1:
        raise ConfigError(f"groups: got {groups}; must be ≥ 1")
    mappers = lowrank_floats(shape, rank, groups, 0, soft_labels)
    per_image = shape.channels * rank * rank + (shape.classes if soft_labels else 0)
    m = (budget_floats - mappers) // (groups * per_image)
    if m < 1:
        need = lowrank_floats(shape, rank, groups, 1, soft_labels)
        raise ConfigError(f"budget: got {budget_floats} floats; rank {rank} × {groups} groups needs "
                          f"≥ {need} for one image per group: raise the budget or lower rank/groups")
    floats = lowrank_floats(shape, rank, groups, m, soft_labels)
    nbytes = floats * DTYPE_BYTES[storage_dtype]
    return LowRankPlan(rank, groups, m, groups * m, floats, budget_floats, storage_dtype, nbytes,
                       nbytes / shape.pixels)


def budget_from_bytes(budget_bytes: int, storage_dtype: str) -> int:
    """Floats that fit in ``budget_bytes`` when stored as ``storage_dtype``."""
    return budget_bytes // DTYPE_BYTES[storage_dtype]
