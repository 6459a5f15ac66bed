"""Why does the LSS memory help less than raw exemplars when replayed *during* training?

Variants of the quick split-CIFAR-10 ``lss`` run (replay protocol, seed 0), each one scenario
override away from the shipped file: the rank-r initialisation alone (0 distillation
iterations: the rank-r projections of real images), distilled with soft or hard labels, at
rank 8 (k=4, 124 images / experience) and rank 16 (k=2, 30 images / experience), all at the same
61,440 bytes per experience. Finished variants are skipped (results in
bench/results/cl_diagnose.{json,md}); every run shares the scenario's expert store.

    LSS_CL_DATA=../shared/data python bench/cl_diagnose.py [--only TAG ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from lss_cl.runner import Run, run_dir
from lss_cl.runtime import atomic_write_json, atomic_write_text
from lss_cl.scenario import load_scenario

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"
WORK = ROOT / "bench-work" / "probe" / "runs"
EXPERTS = ROOT / "bench-work" / "runs" / "split_cifar10_quick" / "experts"  # shared with cl_split_cifar10.py
R8, R16 = ["distill.rank=8", "distill.groups=4"], ["distill.rank=16", "distill.groups=2"]
VARIANTS = {
    "init_hard": ("rank 8, initialisation only, hard labels", R8 + ["distill.iterations=0", "distill.labels=hard"]),
    "init_soft": ("rank 8, initialisation only, expert soft labels", R8 + ["distill.iterations=0"]),
    "r8_hard": ("rank 8, distilled, hard labels", R8 + ["distill.labels=hard"]),
    "r16_init_hard": ("rank 16, initialisation only, hard labels",
                      R16 + ["distill.iterations=0", "distill.labels=hard"]),
    "r12_init_hard": ("rank 12 (k=4), initialisation only, hard labels",
                      ["distill.rank=12", "distill.groups=4", "distill.iterations=0", "distill.labels=hard"]),
    "r16_soft_exp": ("rank 16, distilled, expert soft labels", R16),
    "r16_soft_cls": ("rank 16, distilled, class-initialised soft labels", R16 + ["distill.label_init=class"]),
    "r16_hard": ("rank 16, distilled, hard labels", R16 + ["distill.labels=hard"]),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", help="variant tags to run (default: all)")
    args = ap.parse_args()
    path = RESULTS / "cl_diagnose.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for tag, (what, overrides) in VARIANTS.items():
        if (args.only and tag not in args.only) or tag in results:
            continue
        cfg = load_scenario(ROOT / "scenarios" / "split_cifar10_quick.yaml", ["protocol=replay", *overrides])
        root = WORK / tag
        folder = run_dir(root, cfg, "lss", 0)
        if not (folder / "metrics.json").exists():
            experts = root / cfg.name / "experts"
            if not experts.exists():
                experts.parent.mkdir(parents=True, exist_ok=True)
                EXPERTS.mkdir(parents=True, exist_ok=True)
                experts.symlink_to(EXPERTS.resolve())
            print(f"== {tag}: {what}", flush=True)
            Run(cfg, "lss", 0, root, progress=False).execute(resume=(folder / "state.pt").exists())
        m = json.loads((folder / "metrics.json").read_text())
        results[tag] = {"what": what, "overrides": overrides, "final_average_accuracy": m["final_average_accuracy"],
                        "average_forgetting": m["average_forgetting"],
                        "images_per_experience": m["memory"][0]["images"],
                        "bytes_per_experience": m["memory"][0]["bytes"], "seconds": m["seconds"]["total"]}
        atomic_write_json(path, results)
    write_table(results)
    return 0


def write_table(results: dict) -> None:
    lines = [f"# LSS memory in replay-during-training: diagnosis ({platform.machine()}, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__})", "",
             "split_cifar10_quick, protocol replay, strategy lss, seed 0; same 61,440-byte budget per experience. "
             "Compare with bench/results/cl_split_cifar10.md (replay: raw exemplars, lss: rank 8 soft).", "",
             "| variant | images / experience | final avg accuracy (%) | avg forgetting (%) | wall s |",
             "|---|---|---|---|---|"]
    for tag, r in results.items():
        lines.append(f"| {r['what']} | {r['images_per_experience']} | {100 * r['final_average_accuracy']:.2f} | "
                     f"{100 * r['average_forgetting']:.2f} | {r['seconds']:.0f} |")
    missing = [t for t in VARIANTS if t not in results]
    lines += ["", f"Variants still to run: {', '.join(missing) if missing else 'none'}."]
    atomic_write_text(RESULTS / "cl_diagnose.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
