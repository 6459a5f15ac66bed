"""The memory file (``lss-cl-memory/1``): one safetensors file per distilled set.

See docs/memory-format.md. Tensors may be stored in float16 and are used in float32; loading
checks the format tag and every shape against the metadata, so a truncated or foreign file
fails with a one-line error instead of producing garbage.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .budget import DTYPE_BYTES
from .errors import DataError
from .synthetic import reconstruct

if TYPE_CHECKING:
    from .pipeline import PreparedData

FORMAT = "lss-cl-memory/1"
KINDS = ("lowrank", "fullrank", "raw")
_JSON_KEYS = ("classes", "class_names", "mean", "std", "zca", "rank", "groups", "per_group",
              "floats", "bytes")


@dataclass
class Memory:
    """A loaded memory: tensors in float32 plus the metadata that says how to read them."""

    kind: str
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> list[int]:
        return list(self.meta["classes"])

    @property
    def num_images(self) -> int:
        t = self.tensors
        if self.kind == "lowrank":
            return int(t["S"].shape[0] * t["S"].shape[1])
        return int((t["images"] if self.kind == "fullrank" else t["images_uint8"]).shape[0])

    @property
    def lr(self) -> float | None:
        return float(self.tensors["lr"]) if "lr" in self.tensors else None

    def images(self) -> torch.Tensor:
        """(n, C, H, W) float32 in normalised space (for ``raw``: the uint8 pixels)."""
        t = self.tensors
        if self.kind == "lowrank":
            return reconstruct(t["U"], t["S"], t["V"])
        if self.kind == "fullrank":
            return t["images"]
        return t["images_uint8"]

    def labels(self) -> torch.Tensor:
        """Soft probabilities (n, classes) when ``label_logits`` is stored, else int64 ids."""
        if "label_logits" in self.tensors:
            return torch.softmax(self.tensors["label_logits"], 1)
        return self.tensors["labels"]


def save_memory(path: str | os.PathLike, kind: str, tensors: dict[str, torch.Tensor],
                meta: dict[str, Any], storage_dtype: str = "float32") -> Path:
    """Write atomically; float tensors (not uint8 images or int labels) in ``storage_dtype``."""
    if kind not in KINDS:
        raise ValueError(f"kind: got {kind!r}; allowed: {', '.join(KINDS)}")
    dtype = torch.float16 if storage_dtype == "float16" else torch.float32
    out = {k: (v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
           for k, v in tensors.items()}
    str_meta = {"format": FORMAT, "kind": kind, "storage_dtype": storage_dtype}
    for k, v in meta.items():
        str_meta[k] = v if isinstance(v, str) else json.dumps(v)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(out, tmp, metadata=str_meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _expect(name: str, t: torch.Tensor | None, shape: tuple[int, ...], path: Path) -> None:
    if t is None:
        raise DataError(f"{path}: memory file lacks tensor {name!r}")
    if tuple(t.shape) != shape:
        raise DataError(f"{path}: tensor {name!r} has shape {tuple(t.shape)}, metadata says {shape}")


def load_memory(path: str | os.PathLike) -> Memory:
    """Read and validate a memory file; tensors come back as float32 (uint8/int64 kept)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: memory file not found")
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            raw_meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable safetensors file ({exc}); truncated or foreign?") from None
    if raw_meta.get("format") != FORMAT:
        raise DataError(f"{path}: format {raw_meta.get('format')!r} is not {FORMAT!r}; not an lss-cl memory")
    kind = raw_meta.get("kind")
    if kind not in KINDS:
        raise DataError(f"{path}: kind {kind!r} unknown; expected one of {', '.join(KINDS)}")
    meta: dict[str, Any] = dict(raw_meta)
    for k in _JSON_KEYS:
        if k in meta:
            meta[k] = json.loads(meta[k])
    tensors = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    classes = len(meta.get("classes", []))
    if kind == "lowrank":
        k, r, m = meta["groups"], meta["rank"], meta["per_group"]
        c, h, r_ = tensors["U"].shape[1:] if "U" in tensors else (0, 0, 0)
        _expect("U", tensors.get("U"), (k, c, h, r), path)
        _expect("S", tensors.get("S"), (k, m, c, r, r), path)
        w = tensors["V"].shape[2] if "V" in tensors else 0
        _expect("V", tensors.get("V"), (k, c, w, r), path)
    n = Memory(kind, tensors, meta).num_images if kind != "lowrank" or "S" in tensors else 0
    if "label_logits" in tensors:
        _expect("label_logits", tensors["label_logits"], (n, classes), path)
    else:
        _expect("labels", tensors.get("labels"), (n,), path)
        if n and (tensors["labels"].min() < 0 or tensors["labels"].max() >= classes):
            raise DataError(f"{path}: labels index outside the {classes} classes of the metadata")
    return Memory(kind, tensors, meta)


def memory_bytes(floats: int, storage_dtype: str) -> int:
    return floats * DTYPE_BYTES[storage_dtype]


def memory_metadata(data: "PreparedData", floats: int, nbytes: int, rank: int = 0, groups: int = 0,
                    per_group: int = 0) -> dict[str, Any]:
    """The metadata every memory file carries, from the data it was made of."""
    arrays, norm = data.arrays, data.normalizer
    return {"dataset": arrays.name, "classes": list(arrays.class_ids or range(arrays.num_classes)),
            "class_names": list(arrays.class_names), "mean": list(norm.mean), "std": list(norm.std),
            "zca": {"eps": norm.zca.eps} if norm.zca is not None else False,
            "rank": rank, "groups": groups, "per_group": per_group, "floats": floats, "bytes": nbytes}


def random_real_memory(path: str | os.PathLike, data: "PreparedData", per_class: int, seed: int) -> Path:
    """Baseline: ``per_class`` random real training images per class, stored raw (uint8)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.from_numpy(data.arrays.train.labels)
    picks = [idx[torch.randperm(idx.numel(), generator=g)[:per_class]]
             for idx in (torch.nonzero(labels == c).flatten() for c in range(data.num_classes))]
    chosen = torch.cat(picks)
    images = torch.from_numpy(data.arrays.train.images)[chosen]
    values = int(images.numel())
    return save_memory(path, "raw", {"images_uint8": images, "labels": labels[chosen]},
                       memory_metadata(data, values, values))
