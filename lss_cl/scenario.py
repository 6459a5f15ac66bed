"""Continual-learning scenario files (``scenarios/*.yaml``): validated dataclasses.

A scenario names the data and its class-incremental split, the learner, the per-experience
memory budget (bytes, or raw-image equivalents), the distiller/expert settings shared by the
``mtt`` and ``lss`` strategies, the protocol and the seeds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .config import DataConfig, DistillConfig, bounded, load_config
from .errors import ConfigError

STRATEGIES = ("naive", "joint", "replay", "mtt", "lss")
PROTOCOLS = ("replay", "retrain")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


@dataclasses.dataclass
class LearnerConfig:
    """The continual learner (an Avalanche strategy) and how it trains on each experience."""

    arch: str = bounded("convnet", choices=("convnet", "resnet18"))
    width: int = bounded(128, min=1, max=4096)
    depth: int = bounded(3, min=1, max=5)
    epochs: int = bounded(5, min=1, max=10_000)
    lr: float = bounded(0.01, min=0.0, max=10.0)
    momentum: float = bounded(0.9, min=0.0, max=0.999)
    weight_decay: float = bounded(5e-4, min=0.0, max=1.0)
    batch_size: int = bounded(128, min=1, max=65_536)
    replay_batch_size: int | None = bounded(None, min=1, max=65_536)
    replay_loss: str = bounded("ce", choices=("ce", "ace"))  # ace: ER-ACE's asymmetric cross-entropy
    dsa: bool = True
    regularizer: str = bounded("none", choices=("none", "lwf"))
    lwf_alpha: float = bounded(1.0, min=0.0)
    lwf_temperature: float = bounded(2.0, min=0.01)


@dataclasses.dataclass
class RetrainConfig:
    """Protocol "retrain": a fresh learner trained only on all memories so far (GDumb-style)."""

    epochs: int = bounded(300, min=1, max=100_000)
    lr: float | None = bounded(None, min=0.0, max=10.0)  # None: 0.01 (memories' lr not mixed)
    batch_size: int = bounded(256, min=1, max=65_536)


@dataclasses.dataclass
class MemoryConfig:
    """Per-experience budget, the same bytes for every memory strategy."""

    budget_bytes: int | None = bounded(None, min=1)
    budget_images: float | None = bounded(None, min=0.0)  # raw uint8 image equivalents
    storage_dtype: str = bounded("float16", choices=("float16", "float32"))

    def validate(self, prefix: str = "") -> None:
        if (self.budget_bytes is None) == (self.budget_images is None):
            raise ConfigError(f"{prefix}budget_bytes: give exactly one of budget_bytes or budget_images")
        if self.budget_images is not None and self.budget_images <= 0:
            raise ConfigError(f"{prefix}budget_images: got {self.budget_images}; must be > 0")


@dataclasses.dataclass
class ScenarioConfig:
    name: str = "scenario"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    experiences: int = bounded(5, min=1, max=10_000)
    class_order: list[int] | None = None
    class_order_seed: int | None = bounded(None, min=0)
    learner: LearnerConfig = dataclasses.field(default_factory=LearnerConfig)
    protocol: str = bounded("replay", choices=PROTOCOLS)
    retrain: RetrainConfig = dataclasses.field(default_factory=RetrainConfig)
    memory: MemoryConfig = dataclasses.field(default_factory=MemoryConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    strategies: list[str] = dataclasses.field(default_factory=lambda: list(STRATEGIES))
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    eval_batch_size: int = bounded(1000, min=1)
    device: str = "auto"

    def validate(self, prefix: str = "") -> None:
        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad or not self.strategies:
            raise ConfigError(f"{prefix}strategies: got {bad or self.strategies}; allowed: {', '.join(STRATEGIES)}")
        classes = len(self.data.classes) if self.data.classes else NUM_CLASSES.get(self.data.dataset)
        if classes is not None and (self.experiences > classes or classes % self.experiences):
            raise ConfigError(f"{prefix}experiences: got {self.experiences}; must divide the {classes} classes "
                              f"of {self.data.dataset} (and be ≤ {classes})")
        if any(s < 0 for s in self.seeds) or not self.seeds:
            raise ConfigError(f"{prefix}seeds: got {self.seeds}; give one or more seeds ≥ 0")


def load_scenario(path: str | Path | None, overrides: list[str] | None = None,
                  flags: dict[str, Any] | None = None) -> ScenarioConfig:
    """Scenario from YAML, then ``--strategy``/``--seeds`` style flags, then ``--set`` overrides."""
    cfg = load_config(ScenarioConfig, path, flags, overrides)
    if path and cfg.name == "scenario":
        cfg.name = Path(path).stem
    return cfg

