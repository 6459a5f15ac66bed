"""Benchmark: continual learning on the quick split-CIFAR-10 scenario (+ one CIFAR-100 result).

Replay-during-training: lss and replay × 3 seeds, naive, joint, mtt × 1 seed; retrain-on-memory:
lss and replay × 1 seed; split-CIFAR-100 quick: lss vs replay × 1 seed, then seeds 1 and 2. Every run is resumable
(``--resume``) and finished runs are skipped, so the benchmark can span sessions. Writes the
run folders to bench-work/runs and the ``lss-cl compare`` table to
bench/results/cl_split_cifar10.md (+ JSON with every run's metrics). The retrain-protocol lss
run distils exactly what the replay-protocol run of the same seed distilled (same config and
seed), so it reuses that finished distillation instead of repeating it. Results of the first
version of the quick scenarios (soft labels, plain CE, fewer iterations) are kept in
bench/results/cl_split_cifar10_v1.*.

    LSS_CL_DATA=../shared/data python bench/cl_split_cifar10.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from lss_cl.compare import load_runs, table
from lss_cl.runner import Run, run_dir
from lss_cl.runtime import atomic_write_json, atomic_write_text
from lss_cl.scenario import load_scenario

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"
RUNS = ROOT / "bench-work" / "runs"

# (scenario file, protocol, strategy, seed), most informative first so partial results help.
Q10, Q100 = "split_cifar10_quick", "split_cifar100_quick"
PLAN = [(Q10, "replay", "lss", 0), (Q10, "replay", "replay", 0),
        (Q10, "replay", "lss", 1), (Q10, "replay", "replay", 1),
        (Q10, "replay", "lss", 2), (Q10, "replay", "replay", 2),
        (Q10, "replay", "mtt", 0), (Q10, "retrain", "lss", 0), (Q10, "retrain", "replay", 0),
        (Q100, "replay", "lss", 0), (Q100, "replay", "replay", 0),
        (Q10, "replay", "naive", 0), (Q10, "replay", "joint", 0),
        (Q100, "replay", "replay", 1), (Q100, "replay", "lss", 1),
        (Q100, "replay", "replay", 2), (Q100, "replay", "lss", 2)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", help="strategy names to run (default: the whole plan)")
    ap.add_argument("--budget-minutes", type=float, default=1e9, help="stop starting new runs after this")
    args = ap.parse_args()
    start = time.time()
    for scen, protocol, strategy, seed in PLAN:
        if args.only and strategy not in args.only:
            continue
        cfg = load_scenario(ROOT / "scenarios" / f"{scen}.yaml", [f"protocol={protocol}"])
        folder = run_dir(RUNS, cfg, strategy, seed)
        if (folder / "metrics.json").exists() or (scen, protocol, strategy, seed) in committed():
            continue
        if (time.time() - start) / 60 > args.budget_minutes:
            print("time budget spent; rerun to continue", flush=True)
            return summarize()
        twin = run_dir(RUNS, load_scenario(ROOT / "scenarios" / f"{scen}.yaml", ["protocol=replay"]),
                       strategy, seed) / "distill"
        if protocol == "retrain" and twin.exists() and not (folder / "distill").exists():
            shutil.copytree(twin, folder / "distill")
        print(f"== {scen} {protocol}-{strategy} seed {seed}", flush=True)
        Run(cfg, strategy, seed, RUNS, progress=False).execute(resume=(folder / "state.pt").exists())
        summarize()
    return summarize()


def key(r: dict) -> tuple:
    return r["scenario"], r["protocol"], r["strategy"], r["seed"]


def committed() -> dict[tuple, dict]:
    """Runs already in the committed results (a later session may be on a fresh machine)."""
    path = RESULTS / "cl_split_cifar10.json"
    return {key(r): r for r in json.loads(path.read_text())} if path.exists() else {}


def summarize() -> int:
    fresh = load_runs([RUNS]) if RUNS.exists() and any(RUNS.rglob("metrics.json")) else []
    merged = {**committed(), **{key(r): r for r in fresh}}
    runs = list(merged.values())
    if not runs:
        return 0
    done = {(r["scenario"], r["protocol"], r["strategy"], r["seed"]) for r in runs}
    todo = [f"{s} {p}-{st} seed {sd}" for s, p, st, sd in PLAN if (s, p, st, sd) not in done]
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    setup = "; ".join(
        f"{c.name}: learner.replay_loss {c.learner.replay_loss}, lss at r={c.distill.rank}, "
        f"k={c.distill.groups}, {c.distill.labels} labels, {c.distill.iterations} distillation iterations"
        for c in (load_scenario(ROOT / "scenarios" / f"{q}.yaml") for q in (Q10, Q100)))
    text = (f"# Continual learning on distilled memories ({machine})\n\n"
            f"Scenarios as shipped ({setup}). The retrain-protocol lss run reuses the replay-protocol "
            f"run's distillation (same config and seed), so its wall s holds no distillation.\n\n"
            f"{table(runs)}\n\n"
            f"Runs still to do: {', '.join(todo) if todo else 'none'}.\n")
    atomic_write_text(RESULTS / "cl_split_cifar10.md", text)
    atomic_write_json(RESULTS / "cl_split_cifar10.json",
                      [{k: v for k, v in r.items() if k != "_path"} for r in runs])
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
