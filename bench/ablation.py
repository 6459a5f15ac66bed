"""The paper's Table 3 grid: soft labels × progressive matching × low-rank sampling (8 rows),
same experts, iterations and evaluation for every row. Resumable like distill_cifar10.py.
Writes bench/results/ablation.{json,md}; the table has the paper's layout (✓ columns) next to
the paper's IPC=1 ("0.02% ratio") numbers.

    LSS_CL_DATA=../shared/data python bench/ablation.py [--config bench/distill_cifar10.yaml] \\
        [--set iterations=150]
"""

from __future__ import annotations

import sys

from distill_cifar10 import parse_args, run_rows

from lss_cl.runtime import atomic_write_text

# (soft labels, progressive, low-rank) in the paper's row order, with its CIFAR-10 IPC=1 result
PAPER = {(False, False, False): 46.3, (False, True, False): 46.3, (True, False, False): 48.1,
         (True, True, False): 48.1, (False, False, True): 63.2, (False, True, True): 63.4,
         (True, False, True): 65.0, (True, True, True): 65.3}


def row_name(soft: bool, prog: bool, lowrank: bool) -> str:
    return f"soft{int(soft)}-prog{int(prog)}-lowrank{int(lowrank)}"


ROWS = {row_name(*key): {"method": "lss" if key[2] else "mtt", "labels": "soft" if key[0] else "hard",
                         "progressive": key[1]} for key in PAPER}


def write_paper_table(results: dict, path) -> None:
    cfg = results["config"]
    tick = {True: "✓", False: ""}
    lines = [f"# Ablation (paper Table 3 layout), CIFAR-10 IPC=1 budget, {results['machine']['device']}, "
             f"{results['machine']['threads']} threads, seed {cfg['seed']}", "",
             f"ConvNet width {cfg['model']['width']}, experts {cfg['experts']['num_experts']}, iterations "
             f"{cfg['iterations']}, syn_steps {cfg['syn_steps']}, expert_epochs {cfg['expert_epochs']}, "
             f"max_start_epoch {cfg['max_start_epoch']}; LSS r={cfg['rank']} k={cfg['groups']}.", "",
             "| Soft Labels | Prog. Opt. | Low-rank Sampling | ours: test accuracy (mean ± std) | "
             "paper (0.02% ratio) |", "|:-:|:-:|:-:|---|---|"]
    for key, paper in PAPER.items():
        r = results["rows"].get(row_name(*key))
        ours = f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f} ({r['runs']} runs)" if r else "not run yet"
        lines.append(f"| {tick[key[0]]} | {tick[key[1]]} | {tick[key[2]]} | {ours} | {paper} |")
    atomic_write_text(path, "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    args = parse_args(list(ROWS), "ablation")
    run_rows(args, ROWS, write_paper_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
