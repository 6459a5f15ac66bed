"""Glue from configs to tensors: load a dataset, select classes, normalise, build the model."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .augment import DSA
from .config import DataConfig, ModelConfig, TrainConfig
from .data import DatasetArrays, load_dataset
from .models import build_model
from .runtime import resolve_device, seed_everything
from .train import TrainResult, train_model
from .transforms import Normalizer


@dataclass
class PreparedData:
    """A dataset (possibly a class subset) as normalised tensors, plus how to undo that."""

    arrays: DatasetArrays
    normalizer: Normalizer
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def num_classes(self) -> int:
        return self.arrays.num_classes

    def subset(self, class_ids: list[int]) -> "PreparedData":
        """Only ``class_ids`` (global ids), relabelled 0..n-1; no re-normalisation."""
        arrays = self.arrays.subset(class_ids)
        base = list(self.arrays.class_ids or range(self.num_classes))
        local = torch.tensor([base.index(c) for c in class_ids])

        def pick(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            keep = torch.isin(y, local)
            remap = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
            remap[local] = torch.arange(len(class_ids))
            return x[keep], remap[y[keep]]

        return PreparedData(arrays, self.normalizer, *pick(self.train_x, self.train_y),
                            *pick(self.test_x, self.test_y))


def prepare_data(cfg: DataConfig, progress: bool = False) -> PreparedData:
    """Normalisation (and ZCA) is fit on the *whole* train split, then classes are selected."""
    full = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download, progress=progress)
    normalizer = Normalizer.for_dataset(full, zca=cfg.zca, eps=cfg.zca_eps)
    arrays = full.subset(cfg.classes) if cfg.classes is not None else full
    return PreparedData(arrays, normalizer,
                        normalizer(arrays.train.images), torch.from_numpy(arrays.train.labels),
                        normalizer(arrays.test.images), torch.from_numpy(arrays.test.labels))


def make_model(cfg: ModelConfig, data: PreparedData, num_classes: int | None = None) -> torch.nn.Module:
    """A network for ``data``'s images; ``num_classes`` widens the head (past-aware distillation)."""
    c, h, w = data.arrays.image_shape
    return build_model(cfg.arch, num_classes or data.num_classes, c, cfg.width, cfg.depth, cfg.norm, (h, w))


def train_on_dataset(cfg: TrainConfig, progress: bool = False) -> TrainResult:
    """``lss-cl train``: a fresh network trained on the real data, tested on its test split."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    data = prepare_data(cfg.data, progress)
    model = make_model(cfg.model, data)
    return train_model(model, data.train_x, data.train_y, epochs=cfg.epochs, lr=cfg.lr,
                       batch_size=cfg.batch_size, momentum=cfg.momentum,
                       weight_decay=cfg.weight_decay, lr_decay=cfg.lr_decay,
                       dsa=DSA(seed=cfg.seed) if cfg.dsa else None, device=device, seed=cfg.seed,
                       test=(data.test_x, data.test_y), progress="train" if progress else False)
