"""Reading run folders (for the dashboard and ``compare``): status, metrics, memories.

A run folder has ``progress.json`` (always, while and after running), ``metrics.json`` once
finished, ``config.yaml`` and ``memory/exp_XX.safetensors``. Unreadable files make the run
``corrupt`` with the reason, never an exception.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .budget import DTYPE_BYTES


@dataclass
class RunInfo:
    path: Path
    scenario: str = "?"
    strategy: str = "?"
    protocol: str = "?"
    seed: int | None = None
    status: str = "unknown"  # finished | running | failed | corrupt
    phase: str = ""
    experience: int | None = None
    experiences: int | None = None
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    updated: float | None = None

    @property
    def final_average_accuracy(self) -> float | None:
        return self.metrics.get("final_average_accuracy")

    @property
    def average_forgetting(self) -> float | None:
        return self.metrics.get("average_forgetting")

    @property
    def memory_bytes(self) -> int:
        return sum(int(m.get("bytes", 0)) for m in self.metrics.get("memory", []))

    @property
    def wall_seconds(self) -> float | None:
        return (self.metrics.get("seconds") or {}).get("total")

    @property
    def label(self) -> str:
        return f"{self.scenario}/{self.protocol}-{self.strategy}-seed{self.seed}"


def _read_json(path: Path) -> tuple[dict | None, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None, ""
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path.name}: {exc}"
    if not isinstance(data, dict):
        return None, f"{path.name}: not a JSON object"
    return data, ""


def read_run(path: Path) -> RunInfo:
    info = RunInfo(path=path)
    progress, perr = _read_json(path / "progress.json")
    metrics, merr = _read_json(path / "metrics.json")
    for src in (progress or {}, metrics or {}):
        for key in ("scenario", "strategy", "protocol", "seed"):
            if key in src:
                setattr(info, key, src[key])
    if progress:
        info.status, info.phase = progress.get("status", "unknown"), progress.get("phase", "")
        info.experience, info.experiences = progress.get("experience"), progress.get("experiences")
        info.error, info.updated = progress.get("error", ""), progress.get("updated")
    if merr or perr:
        info.status, info.error = "corrupt", merr or perr
    elif metrics is not None:
        needed = ("accuracy_matrix", "average_accuracy", "final_average_accuracy")
        missing = [k for k in needed if k not in metrics]
        if missing:
            info.status, info.error = "corrupt", f"metrics.json: missing {', '.join(missing)}"
        else:
            info.metrics, info.status = metrics, "finished"
    return info


def find_runs(root: str | Path) -> list[RunInfo]:
    """Every run folder under ``root`` (a folder with progress.json or metrics.json)."""
    root = Path(root)
    if not root.is_dir():
        return []
    folders = {p.parent for name in ("progress.json", "metrics.json") for p in root.rglob(name)}
    return sorted((read_run(f) for f in folders), key=lambda r: str(r.path))


def memory_header(path: str | Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """Metadata and tensor shapes of a memory file, without reading the tensors."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = dict(fh.metadata() or {})
        shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    return meta, shapes


def budget_breakdown(meta: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Bytes of one memory split into mappers (U, V), bases Σ, labels and images."""
    dtype = DTYPE_BYTES.get(meta.get("storage_dtype", "float32"), 4)

    def size(name: str) -> int:
        return int(math.prod(shapes.get(name, (0,))))

    labels = size("label_logits") * dtype
    if meta.get("kind") == "raw":
        return {"mappers": 0, "bases": 0, "labels": 0, "images": size("images_uint8")}
    return {"mappers": (size("U") + size("V")) * dtype, "bases": size("S") * dtype,
            "labels": labels, "images": size("images") * dtype}
