"""Dataclass configs loaded from YAML (or dicts) with validation that names the bad field.

Each field may carry ``metadata`` with ``min``/``max`` (inclusive bounds) or ``choices``;
``from_dict`` checks unknown keys, types and these bounds, then calls the dataclass's own
``validate()`` (if any) for checks that span several fields. Every failure is a
:class:`ConfigError` of one line: ``<dotted.field>: got <value>; <what is allowed>``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


def bounded(default: Any, *, min: float | None = None, max: float | None = None,
            choices: tuple[Any, ...] | None = None, help: str = "") -> Any:
    """A dataclass field with validation metadata (inclusive bounds or a set of choices)."""
    meta = {"min": min, "max": max, "choices": choices, "help": help}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Check ``value`` against annotation ``tp``; int→float is the only silent conversion."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{name}: got {value!r}; expected {' or '.join(_type_name(a) for a in args)}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{name}: got {value!r}; allowed: {', '.join(map(repr, allowed))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: got {value!r}; expected a list")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{name}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: got {value!r}; expected a mapping of {tp.__name__} fields")
        return from_dict(tp, value, prefix=f"{name}.")
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: got {value!r}; expected a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: got {value!r}; expected an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: got {value!r}; expected true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: got {value!r}; expected a string")
        return value
    return value


def _check_bounds(value: Any, meta: Mapping[str, Any], name: str) -> None:
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if value is None:
        return
    if choices is not None and value not in choices:
        raise ConfigError(f"{name}: got {value!r}; allowed: {', '.join(map(str, choices))}")
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if not isinstance(v, (int, float)):
            continue
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
            raise ConfigError(f"{name}: got {v!r}; allowed range {rng}")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, validating every field (recursively)."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown field; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        value = _coerce(data[name], hints[name], prefix + name)
        _check_bounds(value, f.metadata, prefix + name)
        kwargs[name] = value
    obj = cls(**kwargs)
    for name, f in fields.items():  # defaults are validated too (they may be overridden later)
        if name not in kwargs:
            _check_bounds(getattr(obj, name), f.metadata, prefix + name)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(prefix)
    return obj


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "train.epochs", 5)`` sets ``d["train"]["epochs"] = 5``."""
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: {part!r} is not a section")
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML scalars/lists)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected dotted.key=value, e.g. train.epochs=5")
        key, raw = item.split("=", 1)
        set_dotted(data, key, yaml.safe_load(raw))
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a ConfigError, not a traceback."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config {p}: file not found; pass an existing YAML file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"config {p}: invalid YAML{where}; fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {p}: top level must be a mapping of fields")
    return data


def load_config(cls: type[T], path: str | Path | None = None,
                flags: Mapping[str, Any] | None = None, overrides: list[str] | None = None) -> T:
    """Config from (optional) YAML file, then command-line flags (dotted keys; None = not
    given), then ``--set dotted.key=value`` overrides."""
    data = load_yaml(path) if path else {}
    for key, value in (flags or {}).items():
        if value is not None:
            set_dotted(data, key, value)
    apply_overrides(data, list(overrides or []))
    return from_dict(cls, data)


# --------------------------------------------------------------------------- shared sections


@dataclasses.dataclass
class DataConfig:
    """Which data, where, and how it is normalised."""

    dataset: str = "cifar10"
    data_root: str | None = None
    classes: list[int] | None = None
    zca: bool = False
    zca_eps: float = bounded(0.1, min=1e-8, max=10.0)
    download: bool = False


@dataclasses.dataclass
class ModelConfig:
    arch: str = bounded("convnet", choices=("convnet", "resnet18"))
    width: int = bounded(128, min=1, max=4096)
    depth: int = bounded(3, min=1, max=5)
    norm: str | None = bounded(None, choices=("instance", "batch", "none", None))


@dataclasses.dataclass
class TrainConfig:
    """``lss-cl train``: one network on a (sub)set of a dataset."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    epochs: int = bounded(10, min=1, max=100_000)
    lr: float = bounded(0.01, min=0.0, max=10.0)
    batch_size: int = bounded(256, min=1, max=65_536)
    momentum: float = bounded(0.9, min=0.0, max=0.999)
    weight_decay: float = bounded(5e-4, min=0.0, max=1.0)
    lr_decay: bool = True
    dsa: bool = True
    seed: int = bounded(0, min=0)
    device: str = "auto"


@dataclasses.dataclass
class ExpertConfig:
    """MTT expert trajectories: SGD lr 0.01, no momentum, batch 256, DSA, a snapshot per epoch."""

    num_experts: int = bounded(5, min=1, max=10_000)
    lr: float = bounded(0.01, min=0.0, max=10.0)
    momentum: float = bounded(0.0, min=0.0, max=0.999)
    weight_decay: float = bounded(0.0, min=0.0, max=1.0)
    batch_size: int = bounded(256, min=1, max=65_536)
    dsa: bool = True
    seed: int = bounded(0, min=0)
    store: str = "experts"


@dataclasses.dataclass
class DistillConfig:
    """``lss-cl distill``: MTT or MTT-LSS on a dataset or class subset."""

    data: DataConfig = dataclasses.field(default_factory=lambda: DataConfig(zca=True))
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    experts: ExpertConfig = dataclasses.field(default_factory=ExpertConfig)
    method: str = bounded("lss", choices=("lss", "mtt"))
    ipc: float | None = bounded(1.0, min=0.0)
    budget_floats: int | None = bounded(None, min=1)
    storage_dtype: str = bounded("float32", choices=("float32", "float16"))
    rank: int = bounded(8, min=1)
    groups: int = bounded(4, min=1)
    init: str = bounded("real", choices=("real", "noise"))
    labels: str = bounded("soft", choices=("soft", "hard"))
    label_init: str = bounded("expert", choices=("expert", "random", "class"))
    iterations: int = bounded(5000, min=0, max=10_000_000)
    syn_steps: int = bounded(50, min=1, max=10_000)
    expert_epochs: int = bounded(2, min=1, max=1000)
    max_start_epoch: int = bounded(2, min=0, max=1000)
    progressive: bool = True
    delta: float = bounded(1.0, min=0.0)
    window: float = bounded(2.0, min=0.0)
    batch_syn: int | None = bounded(None, min=1)
    context_batch: int = bounded(0, min=0, help="lss-cl run only: earlier-memory images per student step")
    lr_img: float = bounded(100.0, min=0.0)  # pixels (plain MTT)
    lr_basis: float | None = bounded(None, min=0.0)  # LSS bases Σ (default: lr_img)
    lr_mapper: float | None = bounded(None, min=0.0)  # LSS mappers U, V (default: lr_basis)
    lr_label: float = bounded(5.0, min=0.0)
    lr_lr: float = bounded(1e-7, min=0.0)
    lr_teacher: float = bounded(0.01, min=0.0)
    optimizer_momentum: float = bounded(0.5, min=0.0, max=0.999)
    max_nonfinite: int = bounded(20, min=1)
    checkpoint_every: int = bounded(50, min=1)
    seed: int = bounded(0, min=0)
    device: str = "auto"
    out: str = "distilled"

    def validate(self, prefix: str = "") -> None:
        if self.ipc is None and self.budget_floats is None:
            raise ConfigError(f"{prefix}ipc: give ipc (images per class) or budget_floats")
        if self.data.classes is not None and len(self.data.classes) < 2:
            raise ConfigError(f"{prefix}data.classes: got {self.data.classes}; distillation needs ≥ 2 classes")
