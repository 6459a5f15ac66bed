"""Benchmark: ConvNet on real CIFAR-10 — accuracy after E epochs with DSA, and throughput.

Throughput compares, in one run and interleaved (these machines are noisy), our training step
(``lss_cl.train.train_model``: index gather + DSA + SGD) against a bare PyTorch loop over
contiguous slices without augmentation, for widths 32/64/128. Writes JSON + Markdown to
``bench/results/train_convnet.{json,md}``.

    LSS_CL_DATA=../shared/data python bench/train_convnet.py [--epochs 10] [--quick]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lss_cl.augment import DSA
from lss_cl.config import DataConfig
from lss_cl.models import ConvNet
from lss_cl.pipeline import prepare_data
from lss_cl.runtime import atomic_write_json, atomic_write_text, seed_everything
from lss_cl.train import evaluate, train_model

RESULTS = Path(__file__).parent / "results"


def bare_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """Images/s of the plainest possible loop: no augmentation, no shuffling, no loader."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    start = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        loss = F.cross_entropy(model(x[i:i + batch]), y[i:i + batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return x.shape[0] / (time.perf_counter() - start)


def ours(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    res = train_model(model, x, y, epochs=1, lr=0.01, batch_size=batch, dsa=DSA(seed=0), seed=0)
    return res.images_per_second


def throughput(data, widths: list[int], steps: int, reps: int, batch: int) -> list[dict]:
    x, y = data.train_x[: steps * batch], data.train_y[: steps * batch]
    rows = []
    for width in widths:
        runs = {"bare": [], "ours": []}
        for rep in range(reps + 1):  # rep 0 warms up allocators and kernels
            for name, fn in (("bare", bare_loop), ("ours", ours)):
                torch.manual_seed(rep)
                ips = fn(ConvNet(10, width=width), x, y, batch)
                if rep:
                    runs[name].append(ips)
        bare, our = statistics.median(runs["bare"]), statistics.median(runs["ours"])
        rows.append({"width": width, "bare_images_per_s": round(bare, 1),
                     "ours_dsa_images_per_s": round(our, 1), "ratio": round(our / bare, 3),
                     "bare_runs": [round(v, 1) for v in runs["bare"]],
                     "ours_runs": [round(v, 1) for v in runs["ours"]]})
        print(rows[-1], flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=12, help="batches per throughput measurement")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny settings to check the script runs")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.steps, args.reps = 1, 2, 1

    data = prepare_data(DataConfig(dataset="cifar10"), progress=True)
    if args.quick:
        data.train_x, data.train_y = data.train_x[:2048], data.train_y[:2048]
    speed = throughput(data, [32, 64, 128], args.steps, args.reps, 256)

    seed_everything(args.seed)
    model = ConvNet(10, width=args.width)
    res = train_model(model, data.train_x, data.train_y, epochs=args.epochs, lr=0.01,
                      batch_size=256, momentum=0.9, weight_decay=5e-4, dsa=DSA(seed=args.seed),
                      seed=args.seed, progress="train")
    acc = evaluate(model, data.test_x, data.test_y)
    out = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": sys.version.split()[0]},
        "config": {"dataset": "cifar10", "arch": "convnet", "width": args.width, "epochs": args.epochs,
                   "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "batch": 256, "dsa": True,
                   "lr_decay": "x0.1 at half", "zca": False, "seed": args.seed, "quick": args.quick},
        "test_accuracy": acc,
        "seconds_per_epoch": res.seconds / args.epochs,
        "train_images_per_s": res.images_per_second,
        "epoch_losses": res.epoch_losses,
        "throughput": speed,
    }
    name = "train_convnet_quick" if args.quick else "train_convnet"
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / f"{name}.json", out)
    lines = [f"# ConvNet on real CIFAR-10 ({out['machine']['threads']} CPU threads, torch "
             f"{out['machine']['torch']}, seed {args.seed})", "",
             f"Width {args.width}, {args.epochs} epochs, DSA, SGD lr 0.01 m 0.9 wd 5e-4, batch 256: "
             f"**test accuracy {acc:.4f}**, {out['seconds_per_epoch']:.1f} s/epoch, "
             f"{res.images_per_second:.0f} images/s.", "",
             "| width | bare loop images/s | ours (gather+DSA) images/s | ratio |", "|---|---|---|---|"]
    lines += [f"| {r['width']} | {r['bare_images_per_s']:.0f} | {r['ours_dsa_images_per_s']:.0f} | "
              f"{r['ratio']:.2f} |" for r in speed]
    lines += ["", f"Throughput: median of {args.reps} interleaved runs of {args.steps} batches of 256."]
    atomic_write_text(RESULTS / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
