"""Why does the LSS memory help less than raw exemplars when replayed *during* training?

Variants of the quick split-CIFAR-10 ``lss`` run (replay protocol unless a variant says retrain;
seed 0 unless a variant lists more seeds), each one scenario
override away from the shipped file: the rank-r initialisation alone (0 distillation
iterations: the rank-r projections of real images), distilled with soft or hard labels, at
rank 8 (k=4, 124 images / experience) and rank 16 (k=2, 30 images / experience), all at the same
61,440 bytes per experience; and learner changes for lss and for replay alike: the ER-ACE loss
(``learner.replay_loss=ace``), a memory batch twice the current one, one epoch per experience;
and two distiller changes: 150 instead of 60 iterations, and past-aware distillation
(``distill.context_batch=64``: experts and student steps that include the earlier memories).
All variants start from the first shipped quick scenario (``V1``: soft labels, plain CE, 60
iterations), so the table stays one experiment as the shipped file moves on.
Finished variants are skipped (results in bench/results/cl_diagnose.{json,md}); every run
shares the scenario's expert store, and the lss variants that change only the learner reuse
the finished distillations of the same config and seed.

    LSS_CL_DATA=../shared/data python bench/cl_diagnose.py [--only TAG ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
from pathlib import Path

import torch

from lss_cl.compare import mean_std
from lss_cl.runner import Run, run_dir
from lss_cl.runtime import atomic_write_json, atomic_write_text
from lss_cl.scenario import load_scenario

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"
WORK = ROOT / "bench-work" / "probe" / "runs"
# The diagnosis varies the first version of the quick scenario (soft labels, plain CE, 60
# iterations); its reference runs and experts are bench/results/cl_split_cifar10_v1.* and
# bench-work/runs-v1 (the same expert spec as the scenario has now).
EXPERTS = ROOT / "bench-work" / "runs-v1" / "split_cifar10_quick" / "experts"
REFERENCE = RESULTS / "cl_split_cifar10_v1.json"
V1 = ["distill.labels=soft", "distill.label_init=expert", "distill.iterations=60", "learner.replay_loss=ce"]
R8, R12, R16 = (["distill.rank=8", "distill.groups=4"], ["distill.rank=12", "distill.groups=4"],
                ["distill.rank=16", "distill.groups=2"])
ACE = "learner.replay_loss=ace"
VARIANTS = {
    "init_hard": ("rank 8, initialisation only, hard labels", R8 + ["distill.iterations=0", "distill.labels=hard"]),
    "init_soft": ("rank 8, initialisation only, expert soft labels", R8 + ["distill.iterations=0"]),
    "r8_hard": ("rank 8, distilled, hard labels", R8 + ["distill.labels=hard"]),
    "r16_init_hard": ("rank 16, initialisation only, hard labels",
                      R16 + ["distill.iterations=0", "distill.labels=hard"]),
    "r12_init_hard": ("rank 12 (k=4), initialisation only, hard labels",
                      R12 + ["distill.iterations=0", "distill.labels=hard"]),
    "r16_soft_exp": ("rank 16, distilled, expert soft labels", R16),
    "r16_soft_cls": ("rank 16, distilled, class-initialised soft labels", R16 + ["distill.label_init=class"]),
    "r16_hard": ("rank 16, distilled, hard labels", R16 + ["distill.labels=hard"]),
    "r8_hard_retrain": ("retrain protocol: rank 8, distilled, hard labels",
                        R8 + ["distill.labels=hard", "protocol=retrain"]),
    "r8_hard_ace": ("ER-ACE loss: rank 8, distilled, hard labels", R8 + ["distill.labels=hard", ACE]),
    "ace": ("ER-ACE loss: lss as shipped (rank 8, expert soft labels)", [ACE]),
    "replay_ace": ("ER-ACE loss: replay, raw uint8 exemplars", [ACE]),
    "r12_hard": ("rank 12 (k=4), distilled, hard labels", R12 + ["distill.labels=hard"]),
    "r12_hard_ace": ("ER-ACE loss: rank 12 (k=4), distilled, hard labels", R12 + ["distill.labels=hard", ACE]),
    "r8_hard_mem2x": ("memory batch 2× current: rank 8, distilled, hard labels",
                      R8 + ["distill.labels=hard", "learner.replay_batch_size=256"]),
    "replay_mem2x": ("memory batch 2× current: replay, raw uint8 exemplars", ["learner.replay_batch_size=256"]),
    "r8_hard_ep1": ("1 epoch per experience: rank 8, distilled, hard labels",
                    R8 + ["distill.labels=hard", "learner.epochs=1"]),
    "replay_ep1": ("1 epoch per experience: replay, raw uint8 exemplars", ["learner.epochs=1"]),
    "r8_hard_it150": ("150 distillation iterations: rank 8, hard labels",
                      R8 + ["distill.labels=hard", "distill.iterations=150"]),
    "r8_hard_it150_ace": ("ER-ACE loss, 150 distillation iterations: rank 8, hard labels",
                          R8 + ["distill.labels=hard", "distill.iterations=150", ACE]),
    "r8_hard_ctx": ("past-aware distillation (64 earlier-memory images per student step): rank 8, hard labels",
                    R8 + ["distill.labels=hard", "distill.context_batch=64"]),
    "r8_hard_ctx_ace": ("ER-ACE loss, past-aware distillation: rank 8, hard labels",
                        R8 + ["distill.labels=hard", "distill.context_batch=64", ACE]),
}
SEEDS = {"r8_hard": (0, 1, 2), "r8_hard_ace": (0, 1, 2), "replay_ace": (0, 1, 2)}  # others: seed 0
STRATEGY = {"replay_ace": "replay", "replay_mem2x": "replay", "replay_ep1": "replay"}  # others: lss
# Variants that change only the learner reuse the finished distillations of the same config and
# seed (the runner resumes a finished distillation, so this is the same memory, not an estimate).
DISTILL_FROM = {**{tag: lambda seed: WORK / run_key("r8_hard", seed)
                   for tag in ("r8_hard_ace", "r8_hard_mem2x", "r8_hard_ep1")},
                "r12_hard_ace": lambda seed: WORK / run_key("r12_hard", seed),
                "r8_hard_it150_ace": lambda seed: WORK / run_key("r8_hard_it150", seed),
                "r8_hard_ctx_ace": lambda seed: WORK / run_key("r8_hard_ctx", seed),
                "ace": lambda seed: ROOT / "bench-work" / "runs-v1"}


def run_key(tag: str, seed: int) -> str:
    return tag if seed == 0 else f"{tag}_s{seed}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", help="variant tags to run (default: all)")
    args = ap.parse_args()
    path = RESULTS / "cl_diagnose.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for tag, (what, overrides) in VARIANTS.items():
        for seed in SEEDS.get(tag, (0,)):
            key = run_key(tag, seed)
            if (args.only and tag not in args.only) or key in results:
                continue
            results[key] = run_variant(tag, key, what, overrides, seed)
            atomic_write_json(path, results)
    write_table(results)
    return 0


def run_variant(tag: str, key: str, what: str, overrides: list[str], seed: int) -> dict:
    cfg = load_scenario(ROOT / "scenarios" / "split_cifar10_quick.yaml", ["protocol=replay", *V1, *overrides])
    root = WORK / key
    strategy = STRATEGY.get(tag, "lss")
    folder = run_dir(root, cfg, strategy, seed)
    if tag in DISTILL_FROM and not (folder / "distill").exists():
        source = run_dir(DISTILL_FROM[tag](seed), cfg, strategy, seed) / "distill"
        shutil.copytree(source, folder / "distill")
    if not (folder / "metrics.json").exists():
        experts = root / cfg.name / "experts"
        if not experts.exists():
            experts.parent.mkdir(parents=True, exist_ok=True)
            EXPERTS.mkdir(parents=True, exist_ok=True)
            experts.symlink_to(EXPERTS.resolve())
        print(f"== {key}: {what}, seed {seed}", flush=True)
        Run(cfg, strategy, seed, root, progress=False).execute(resume=(folder / "state.pt").exists())
    m = json.loads((folder / "metrics.json").read_text())
    return {"what": what, "strategy": strategy, "overrides": overrides, "seed": seed,
            "final_average_accuracy": m["final_average_accuracy"], "average_forgetting": m["average_forgetting"],
            "images_per_experience": m["memory"][0]["images"], "bytes_per_experience": m["memory"][0]["bytes"],
            "seconds": m["seconds"]["total"], "distill_reused": tag in DISTILL_FROM}


def write_table(results: dict) -> None:
    groups: dict[str, list[dict]] = {}
    for r in results.values():
        groups.setdefault(r["what"], []).append(r)
    ref = json.loads(REFERENCE.read_text())
    for protocol, strategy, what in (
            ("replay", "replay", "reference: replay, raw uint8 exemplars"),
            ("replay", "lss", "reference: first shipped lss (rank 8, distilled, expert soft labels)"),
            ("retrain", "replay", "reference, retrain protocol: replay"),
            ("retrain", "lss", "reference, retrain protocol: first shipped lss")):
        rows = [r for r in ref if (r["scenario"], r["protocol"], r["strategy"]) ==
                ("split_cifar10_quick", protocol, strategy)]
        groups[what] = [{"final_average_accuracy": r["final_average_accuracy"],
                         "average_forgetting": r["average_forgetting"], "seed": r["seed"],
                         "images_per_experience": r["memory"][0]["images"], "seconds": r["seconds"]["total"]}
                        for r in rows]

    lines = [f"# LSS memory in replay-during-training: diagnosis ({platform.machine()}, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__})", "",
             "split_cifar10_quick, strategy lss unless the row says replay, protocol replay unless the row says "
             "retrain; same 61,440-byte "
             "budget per experience; "
             "the reference rows are bench/results/cl_split_cifar10_v1.json (the first shipped quick scenario: expert soft labels, plain CE, 60 iterations). Wall s as measured (a few "
             "variants shared the two cores with another job; the ER-ACE, memory-batch and 1-epoch lss "
             "rows reused finished distillations, so their wall s is the learner alone).", "",
             "| variant | seeds | images / experience | final avg accuracy (%) | avg forgetting (%) | wall s |",
             "|---|---|---|---|---|---|"]
    for what, rs in groups.items():
        seeds = ",".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"]))
        acc = mean_std([r["final_average_accuracy"] for r in rs])
        forgetting = mean_std([r["average_forgetting"] for r in rs])
        lines.append(f"| {what} | {seeds} | {rs[0]['images_per_experience']} | {acc} | {forgetting} | "
                     f"{statistics.fmean(r['seconds'] for r in rs):.0f} |")
    missing = [run_key(t, s) for t in VARIANTS for s in SEEDS.get(t, (0,)) if run_key(t, s) not in results]
    lines += ["", f"Variants still to run: {', '.join(missing) if missing else 'none'}."]
    atomic_write_text(RESULTS / "cl_diagnose.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
