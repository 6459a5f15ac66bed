"""Expert trajectories: networks trained on real data, a flat parameter snapshot per epoch.

One safetensors file per expert (tensor ``trajectory`` of shape (epochs + 1, P)) in a folder
named by a hash of everything that shapes a trajectory (data, classes, normalisation, model,
optimiser, seed) — so a later run with a matching config reuses it instead of retraining.
Files are written atomically when an expert finishes: after a kill, finished experts are kept
and a half-trained one is redone. Under ``torchrun`` each rank trains its share.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from tqdm.auto import tqdm

from .augment import DSA
from .config import DataConfig, ExpertConfig, ModelConfig
from .context import Context, expert_training_set
from .errors import ConfigError, DataError
from .models import FlatParams
from .pipeline import PreparedData, make_model
from .train import evaluate, train_model

FORMAT = "lss-cl-expert/1"


@dataclass(frozen=True)
class ExpertSpec:
    """Everything a trajectory depends on (not how many experts or epochs are wanted)."""

    dataset: str
    classes: tuple[int, ...] | None
    zca: float | None
    arch: str
    width: int
    depth: int
    norm: str | None
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    dsa: bool
    seed: int
    context: str | None = None  # Context.key() of the earlier memories trained alongside

    @classmethod
    def from_configs(cls, data: DataConfig, model: ModelConfig, experts: ExpertConfig,
                     context: Context | None = None) -> "ExpertSpec":
        return cls(data.dataset, tuple(data.classes) if data.classes is not None else None,
                   data.zca_eps if data.zca else None, model.arch, model.width, model.depth,
                   model.norm, experts.lr, experts.momentum, experts.weight_decay,
                   experts.batch_size, experts.dsa, experts.seed,
                   context.key() if context is not None else None)

    def key(self) -> str:
        fields = asdict(self)
        if fields["context"] is None:  # keeps the keys of stores written before past-aware experts
            del fields["context"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        cls = "all classes" if self.classes is None else f"classes {list(self.classes)}"
        past = f" + earlier memories {self.context}" if self.context else ""
        return f"{self.arch}-{self.width}x{self.depth} on {self.dataset} ({cls}){past}"


class ExpertStore:
    """``root/<key>/expert_NNN.safetensors``; ``root`` may also be one such folder itself."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def folder(self, spec: ExpertSpec) -> Path:
        if any(self.root.glob("expert_*.safetensors")):  # pointed straight at a trajectory folder
            return self.root
        return self.root / f"{spec.dataset.replace(':', '_').replace('/', '_')}-{spec.key()}"

    def path(self, spec: ExpertSpec, index: int) -> Path:
        return self.folder(spec) / f"expert_{index:03d}.safetensors"

    def epochs_stored(self, spec: ExpertSpec, index: int) -> int:
        """Epochs in a finished, matching trajectory; -1 if none. A mismatch is an error."""
        path = self.path(spec, index)
        if not path.is_file():
            return -1
        try:
            with safe_open(str(path), "pt") as fh:
                meta = fh.metadata() or {}
        except (SafetensorError, OSError):
            return -1  # unreadable (e.g. foreign or truncated): retrain it
        if meta.get("format") != FORMAT:
            return -1
        if meta.get("spec_key") != spec.key():
            raise ConfigError(f"experts: {path.parent} holds {meta.get('describe', 'other')} trajectories; "
                              f"this run needs {spec.describe()}: point --experts at another store "
                              "or match the model/data settings")
        return int(meta["epochs"])

    def save(self, spec: ExpertSpec, index: int, trajectory: torch.Tensor, extra: dict) -> Path:
        path = self.path(spec, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "spec_key": spec.key(), "describe": spec.describe(),
                "spec": json.dumps(asdict(spec)), "epochs": str(trajectory.shape[0] - 1),
                "index": str(index), **{k: json.dumps(v) for k, v in extra.items()}}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file({"trajectory": trajectory.contiguous()}, tmp, metadata=meta)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def load(self, spec: ExpertSpec, num_experts: int, epochs: int) -> torch.Tensor:
        """(num_experts, epochs + 1, P) trajectories, cut to the epochs asked for."""
        missing = [i for i in range(num_experts) if self.epochs_stored(spec, i) < epochs]
        if missing:
            raise DataError(f"experts: {len(missing)} of {num_experts} trajectories with ≥ {epochs} epochs "
                            f"missing in {self.folder(spec)}; run `lss-cl experts` with the same settings")
        return torch.stack([load_file(str(self.path(spec, i)))["trajectory"][: epochs + 1]
                            for i in range(num_experts)])


def _distributed() -> tuple[int, int]:
    """(rank, world size); joins the torchrun process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


def train_experts(data: PreparedData, model_cfg: ModelConfig, cfg: ExpertConfig, spec: ExpertSpec,
                  epochs: int, device: torch.device, progress: bool = True,
                  context: Context | None = None) -> list[Path]:
    """Train the missing experts (this rank's share under torchrun) and return all paths; with a
    ``context`` they also learn the earlier memories, on a head widened to their classes."""
    store = ExpertStore(cfg.store)
    rank, world = _distributed()
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1 and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    todo = [i for i in range(cfg.num_experts)
            if i % world == rank and store.epochs_stored(spec, i) < epochs]
    x, y, head = data.train_x, data.train_y, None
    if context is not None:
        x, y = expert_training_set(x, y, context, data.num_classes)
        head = context.head(data.num_classes)
    for i in tqdm(todo, desc=f"experts (rank {rank})", disable=not progress):
        seed = cfg.seed * 100_003 + i
        torch.manual_seed(seed)
        model = make_model(model_cfg, data, head)
        flat = FlatParams(model)
        snapshots = [flat.flatten()]  # a copy: .detach().cpu() alone would alias on CPU
        res = train_model(model, x, y, epochs=epochs, lr=cfg.lr,
                          batch_size=cfg.batch_size, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, lr_decay=False,
                          dsa=DSA(seed=seed) if cfg.dsa else None, device=device, seed=seed,
                          on_epoch_end=lambda e, m: snapshots.append(flat.flatten(m).cpu()),
                          progress=f"expert {i}" if progress else False)
        acc = evaluate(model, data.test_x, data.test_y, device=device)
        store.save(spec, i, torch.stack([s.cpu() for s in snapshots]),
                   {"test_accuracy": acc, "rank": rank, "epoch_losses": res.epoch_losses, "seed": seed,
                    "classes": list(data.arrays.class_ids or range(data.num_classes)),
                    "class_names": list(data.arrays.class_names),
                    "mean": list(data.normalizer.mean), "std": list(data.normalizer.std),
                    "seconds": res.seconds})
    if world > 1:
        dist.barrier()
    return [store.path(spec, i) for i in range(cfg.num_experts)]
