"""Evaluation protocol for a distilled memory: train R fresh networks on it, test on real data.

MTT's protocol: SGD momentum 0.9, weight decay 5e-4, batch 256, lr = the learned step size
(or a given one), lr × 0.1 at half, DSA on; mean ± std test accuracy on the classes covered.
"""

from __future__ import annotations

import statistics

import torch

from .augment import DSA
from .config import ModelConfig
from .errors import DataError
from .memory import Memory
from .pipeline import PreparedData, make_model
from .train import train_model


def memory_images(memory: Memory, data: PreparedData) -> torch.Tensor:
    """Images in the normalised space of ``data`` (raw uint8 exemplars are normalised here)."""
    if memory.kind == "raw":
        return data.normalizer(memory.images())
    return memory.images()


def check_compatible(memory: Memory, data: PreparedData) -> None:
    ids = list(data.arrays.class_ids or range(data.num_classes))
    if memory.meta.get("dataset") != data.arrays.name or memory.classes != ids:
        raise DataError(f"memory covers {memory.meta.get('dataset')} classes {memory.classes}; "
                        f"the evaluation data is {data.arrays.name} classes {ids}")
    zca = memory.meta.get("zca") or False
    if bool(zca) != (data.normalizer.zca is not None):
        raise DataError(f"memory zca={zca} but evaluation data zca={data.normalizer.zca is not None}; "
                        "evaluate with the same whitening the memory was distilled in")


def evaluate_memory(memory: Memory, data: PreparedData, model: ModelConfig, *, runs: int = 5,
                    epochs: int = 1000, lr: float | None = None, batch_size: int = 256,
                    device: torch.device | str = "cpu", seed: int = 0, dsa: bool = True,
                    progress: bool = False) -> dict:
    """Mean ± std accuracy of ``runs`` networks trained from scratch on the memory."""
    check_compatible(memory, data)
    images, labels = memory_images(memory, data), memory.labels()
    step = lr if lr is not None else (memory.lr or 0.01)
    accs = []
    for r in range(runs):
        torch.manual_seed(seed + r)
        net = make_model(model, data)
        res = train_model(net, images, labels, epochs=epochs, lr=step, batch_size=batch_size,
                          momentum=0.9, weight_decay=5e-4, lr_decay=True,
                          dsa=DSA(seed=seed + r) if dsa else None, device=device, seed=seed + r,
                          test=(data.test_x, data.test_y),
                          progress=f"eval {r + 1}/{runs}" if progress else False)
        accs.append(float(res.test_accuracy or 0.0))
    return {"runs": runs, "epochs": epochs, "lr": step, "arch": model.arch, "width": model.width,
            "accuracies": accs, "mean": statistics.fmean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
