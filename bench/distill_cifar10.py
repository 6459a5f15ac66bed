"""Benchmark: random real vs plain MTT vs LSS initialisation vs MTT-LSS, CIFAR-10, IPC=1 budget.

All methods share the same experts, iterations and evaluation (R fresh ConvNets per memory,
MTT protocol). Resumable: finished rows are kept in the JSON, a killed distillation continues
from its checkpoint. Writes bench/results/distill_cifar10.{json,md} and each method's memory
file to bench/results/distill_cifar10/<method>/memory.safetensors.

    LSS_CL_DATA=../shared/data python bench/distill_cifar10.py [--config bench/distill_cifar10.yaml]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from lss_cl.config import DistillConfig, load_config
from lss_cl.distill import Distiller, write_outputs
from lss_cl.evaluation import evaluate_memory
from lss_cl.memory import load_memory, random_real_memory
from lss_cl.pipeline import prepare_data
from lss_cl.runtime import atomic_write_json, atomic_write_text

HERE = Path(__file__).parent
RESULTS = HERE / "results"
WORK = Path("bench-work")  # experts and checkpoints (not committed)


# Each row: config fields that differ from the shared base config ("random": real images).
# The random baseline is stored raw (uint8) and therefore uses fewer bytes than the float rows.
METHODS = {"random": None, "mtt": {"method": "mtt", "labels": "hard"},
           "lss_init": {"method": "lss", "iterations": 0}, "lss": {"method": "lss"}}


def parse_args(default_rows: list[str], default_name: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(HERE / "distill_cifar10.yaml"))
    ap.add_argument("--methods", nargs="+", default=default_rows)
    ap.add_argument("--eval-runs", type=int, default=3)
    ap.add_argument("--eval-epochs", type=int, default=1000)
    ap.add_argument("--name", default=default_name)
    ap.add_argument("--set", action="append", default=[], help="override a config field")
    return ap.parse_args()


def main() -> int:
    args = parse_args(list(METHODS), "distill_cifar10")
    run_rows(args, METHODS)
    return 0


def run_rows(args: argparse.Namespace, rows: dict[str, dict | None],
             table: Callable[[dict, Path], None] | None = None) -> dict:
    """Distil (or sample) and evaluate each requested row; skip rows already in the JSON; the
    Markdown table is rewritten after every row (by ``table``, default :func:`write_table`)."""
    base = load_config(DistillConfig, args.config, None, args.set)
    json_path = RESULTS / f"{args.name}.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {"rows": {}}
    results["config"] = dataclasses.asdict(base)
    results["machine"] = {"cpu": platform.processor() or platform.machine(),
                          "threads": torch.get_num_threads(), "torch": torch.__version__,
                          "device": "cuda" if torch.cuda.is_available() else "cpu"}
    data = prepare_data(base.data, progress=True)
    for method in args.methods:
        if method in results["rows"]:
            print(f"{method}: done already ({results['rows'][method]['mean']:.4f})")
            continue
        mem_dir = RESULTS / args.name / method
        start = time.perf_counter()
        if method == "random":
            path = random_real_memory(mem_dir / "memory.safetensors", data, int(base.ipc or 1), base.seed)
            extra: dict = {"seconds": {}}
        else:
            cfg = dataclasses.replace(base, **rows[method], out=str(WORK / args.name / method))
            res = Distiller(cfg, data=data).run(resume=True)
            path = write_outputs(cfg, res)
            mem_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, mem_dir / "memory.safetensors")
            shutil.copy(path.parent / "report.json", mem_dir / "report.json")
            extra = {"seconds": res.seconds, "iterations": len(res.history["loss"]),
                     "final_loss": res.history["loss"][-1] if res.history["loss"] else None,
                     "learned_lr": res.syn_lr, "nonfinite_skipped": res.nonfinite}
        mem = load_memory(mem_dir / "memory.safetensors")
        ev = evaluate_memory(mem, data, base.model, runs=args.eval_runs, epochs=args.eval_epochs,
                             lr=0.01 if method == "random" else None, seed=base.seed, progress=True,
                             device="cuda" if torch.cuda.is_available() else "cpu")
        results["rows"][method] = {**ev, **extra, "images": mem.num_images, "floats": mem.meta["floats"],
                                   "bytes": mem.meta["bytes"], "wall_s": time.perf_counter() - start}
        atomic_write_json(json_path, results)
        print(f"{method}: {ev['mean']:.4f} ± {ev['std']:.4f}", flush=True)
        (table or write_table)(results, RESULTS / f"{args.name}.md")
    (table or write_table)(results, RESULTS / f"{args.name}.md")
    return results


def write_table(results: dict, path: Path) -> None:
    cfg = results["config"]
    lines = [f"# Distillation on real CIFAR-10, IPC=1 budget ({results['machine']['device']}, "
             f"{results['machine']['threads']} threads, seed {cfg['seed']})", "",
             f"ConvNet width {cfg['model']['width']}, ZCA {cfg['data']['zca']}, experts "
             f"{cfg['experts']['num_experts']} × {cfg['max_start_epoch'] + cfg['expert_epochs']} epochs, "
             f"iterations {cfg['iterations']}, syn_steps {cfg['syn_steps']}, expert_epochs "
             f"{cfg['expert_epochs']}, max_start_epoch {cfg['max_start_epoch']}, LSS r={cfg['rank']} "
             f"k={cfg['groups']}.", "",
             "| method | images | floats | bytes | test accuracy (mean ± std) | eval runs × epochs | wall s |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results["rows"].items():
        lines.append(f"| {name} | {r['images']} | {r['floats']} | {r['bytes']} | "
                     f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f} | {r['runs']} × {r['epochs']} | "
                     f"{r['wall_s']:.0f} |")
    atomic_write_text(path, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
