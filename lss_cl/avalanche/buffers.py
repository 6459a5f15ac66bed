"""Avalanche storage policies that keep one memory file per experience under a byte budget.

``max_size`` is the budget **in bytes per experience** (not a sample count): every method gets
the same bytes. After each experience ``post_adapt`` writes ``exp_XX.safetensors`` (format
lss-cl-memory/1) and rebuilds ``buffer``, an AvalancheDataset of (image, hard label, task 0)
that Avalanche's own ``ReplayPlugin`` can replay; ``replay_tensors()`` adds the soft labels
for :class:`~lss_cl.avalanche.plugins.SoftReplayPlugin`.
"""

from __future__ import annotations

import dataclasses
import shutil
from abc import abstractmethod
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from avalanche.benchmarks.utils.classification_dataset import _make_taskaware_tensor_classification_dataset
from avalanche.training.storage_policy import ClassBalancedBuffer, ExemplarsBuffer

from ..budget import DTYPE_BYTES, Shape, budget_from_bytes, fullrank_floats, lowrank_floats
from ..config import DistillConfig
from ..context import Context
from ..distill import Distiller, write_outputs
from ..memory import Memory, load_memory, memory_metadata, save_memory
from ..pipeline import PreparedData
from ..transforms import Normalizer

DataFor = Callable[[list[int]], PreparedData]


def global_targets(memory: Memory, num_classes: int) -> torch.Tensor:
    """Memory labels as probabilities over all ``num_classes`` global classes."""
    labels, ids = memory.labels(), torch.tensor(memory.classes)
    local = labels if labels.is_floating_point() else F.one_hot(labels, len(ids)).float()
    out = torch.zeros(local.shape[0], num_classes)
    out[:, ids] = local
    return out


def memory_cost(kind: str, tensors: dict[str, torch.Tensor], meta: dict) -> tuple[int, int]:
    """(floats, bytes) of a memory as the paper counts them; raw images cost 1 byte a value."""
    soft = "label_logits" in tensors
    if kind == "raw":
        values = int(tensors["images_uint8"].numel())
        return values, values
    classes = len(meta["classes"])
    if kind == "lowrank":
        k, c, h, r = tensors["U"].shape
        shape = Shape(c, h, tensors["V"].shape[2], classes)
        floats = lowrank_floats(shape, r, k, tensors["S"].shape[1], soft)
    else:
        n, c, h, w = tensors["images"].shape
        floats = fullrank_floats(Shape(c, h, w, classes), n, soft)
    return floats, floats * DTYPE_BYTES[meta.get("storage_dtype", "float32")]


def shrink(memory: Memory, budget_bytes: int) -> Memory:
    """Fit a memory into ``budget_bytes``: drop whole groups (low-rank, each group is
    self-contained) or a tail of images (labels are round-robin, so a prefix stays balanced)."""
    if memory.meta["bytes"] <= budget_bytes:
        return memory
    t, meta = dict(memory.tensors), dict(memory.meta)
    if memory.kind == "lowrank":
        m = int(t["S"].shape[1])

        def cut(groups: int) -> dict[str, torch.Tensor]:
            out = {"U": t["U"][:groups], "V": t["V"][:groups], "S": t["S"][:groups]}
            out.update({k: t[k][: groups * m] for k in ("label_logits", "labels") if k in t})
            return {**t, **out}

        groups = int(t["U"].shape[0])
        while groups > 0 and memory_cost("lowrank", cut(groups), meta)[1] > budget_bytes:
            groups -= 1
        t = cut(groups)
        meta["groups"] = groups
    else:
        key = "images" if memory.kind == "fullrank" else "images_uint8"
        n = int(t[key].shape[0])
        while n > 0 and memory_cost(memory.kind, {**t, key: t[key][:n]}, meta)[1] > budget_bytes:
            n -= 1
        t.update({k: t[k][:n] for k in (key, "label_logits", "labels") if k in t})
    meta["floats"], meta["bytes"] = memory_cost(memory.kind, t, meta)
    return Memory(memory.kind, t, meta)


class PerExperienceMemoryBuffer(ExemplarsBuffer):
    """Base policy: one memory per experience, ``max_size`` bytes each."""

    def __init__(self, budget_bytes: int, memory_dir: str | Path, normalizer: Normalizer,
                 num_classes: int):
        super().__init__(max_size=budget_bytes)
        self.memory_dir = Path(memory_dir)
        self.normalizer = normalizer
        self.num_classes = num_classes
        self.memories: list[Memory] = []
        self.files: list[Path] = []

    @abstractmethod
    def make_memory(self, exp: Any, index: int, path: Path) -> None:
        """Write the memory of experience ``exp`` to ``path``."""

    def post_adapt(self, agent_state: Any, exp: Any) -> None:
        path = self.memory_dir / f"exp_{len(self.files):02d}.safetensors"
        self.make_memory(exp, len(self.files), path)
        self.add_file(path)

    def add_file(self, path: Path) -> None:
        """Adopt an existing memory file (also how a resumed run restores its buffer)."""
        self.files.append(Path(path))
        self.memories.append(shrink(load_memory(path), self.max_size))
        self._rebuild()

    def resize(self, strategy: Any, new_size: int) -> None:
        self.max_size = new_size
        self.memories = [shrink(m, new_size) for m in self.memories]
        self._rebuild()

    def replay_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images in normalised space, soft targets over all classes) of every memory."""
        if not self.memories:
            return torch.empty(0), torch.empty(0, self.num_classes)
        xs = [self.normalizer(m.images()) if m.kind == "raw" else m.images() for m in self.memories]
        ys = [global_targets(m, self.num_classes) for m in self.memories]
        return torch.cat(xs).detach(), torch.cat(ys).detach()

    def _rebuild(self) -> None:
        x, p = self.replay_tensors()
        hard = p.argmax(1) if len(p) else torch.empty(0, dtype=torch.long)
        self.buffer = _make_taskaware_tensor_classification_dataset(
            x, hard, targets=hard.tolist(), task_labels=0)

    def records(self) -> list[dict]:
        """Per-experience memory accounting for metrics.json."""
        out = []
        for i, (m, f) in enumerate(zip(self.memories, self.files)):
            out.append({"experience": i, "classes": m.classes, "kind": m.kind,
                        "rank": m.meta.get("rank", 0), "groups": m.meta.get("groups", 0),
                        "per_group": m.meta.get("per_group", 0), "images": m.num_images,
                        "floats": m.meta["floats"], "bytes": m.meta["bytes"], "budget_bytes": self.max_size,
                        "file": str(f)})
        return out


def experience_classes(exp: Any) -> list[int]:
    return sorted(int(c) for c in exp.classes_in_this_experience)


class RandomExemplarBuffer(PerExperienceMemoryBuffer):
    """Replay baseline: Avalanche's class-balanced random exemplars, stored as uint8
    (C·H·W bytes per image), as many as the byte budget buys."""

    def __init__(self, budget_bytes: int, memory_dir: str | Path, normalizer: Normalizer,
                 num_classes: int, image_bytes: int, data_for: DataFor):
        super().__init__(budget_bytes, memory_dir, normalizer, num_classes)
        self.image_bytes = image_bytes
        self.data_for = data_for

    def make_memory(self, exp: Any, index: int, path: Path) -> None:
        per_exp = self.max_size // self.image_bytes
        picker = ClassBalancedBuffer(max_size=per_exp, adaptive_size=True)
        picker.post_adapt(None, exp)
        xs, ys = zip(*[(x, int(y)) for x, y, *_ in picker.buffer])
        x = torch.stack(xs)
        pixels = (self.normalizer.inverse(x) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        classes = experience_classes(exp)
        labels = torch.tensor([classes.index(y) for y in ys])
        values = int(pixels.numel())
        data = self.data_for(classes)
        save_memory(path, "raw", {"images_uint8": pixels, "labels": labels},
                    memory_metadata(data, values, values))


class DistilledBuffer(PerExperienceMemoryBuffer):
    """MTT / MTT-LSS: each experience is distilled into ``max_size`` bytes of factors (or pixels)
    with learned soft labels, optionally next to the earlier memories (past-aware, see
    :mod:`lss_cl.context`); the buffer holds the reconstructed images."""

    def __init__(self, budget_bytes: int, memory_dir: str | Path, normalizer: Normalizer,
                 num_classes: int, distill: DistillConfig, data_for: DataFor, work_dir: str | Path,
                 progress: bool = False):
        super().__init__(budget_bytes, memory_dir, normalizer, num_classes)
        self.distill = distill
        self.data_for = data_for
        self.work_dir = Path(work_dir)
        self.progress = progress
        self.last_seconds: dict[str, float] = {}

    def context(self) -> Context | None:
        """The earlier memories, for past-aware distillation (``distill.context_batch > 0``)."""
        if not self.distill.context_batch or not self.memories:
            return None
        x, p = self.replay_tensors()
        seen = sorted({c for m in self.memories for c in m.classes})
        return Context(x, p[:, seen], seen)

    def make_memory(self, exp: Any, index: int, path: Path) -> None:
        classes = experience_classes(exp)
        cfg = dataclasses.replace(
            self.distill, ipc=None, out=str(self.work_dir / f"exp_{index:02d}"),
            budget_floats=budget_from_bytes(self.max_size, self.distill.storage_dtype),
            data=dataclasses.replace(self.distill.data, classes=classes))
        result = Distiller(cfg, progress=self.progress, data=self.data_for(classes),
                           context=self.context()).run(resume=True)
        write_outputs(cfg, result, memory_path=path)
        shutil.copy(Path(cfg.out) / "report.json", path.with_suffix(".report.json"))
        self.last_seconds = dict(result.seconds)

