"""The paper's Table 3 grid: soft labels × progressive matching × low-rank sampling (8 rows),
same experts, iterations and evaluation for every row. Resumable like distill_cifar10.py.

    LSS_CL_DATA=../shared/data python bench/ablation.py [--config bench/distill_cifar10.yaml]
"""

from __future__ import annotations

import sys

from distill_cifar10 import parse_args, run_rows

ROWS = {f"soft={int(soft)} prog={int(prog)} lowrank={int(lr)}":
        {"method": "lss" if lr else "mtt", "labels": "soft" if soft else "hard", "progressive": prog}
        for lr in (False, True) for soft in (False, True) for prog in (False, True)}


def main() -> int:
    args = parse_args(list(ROWS), "ablation")
    run_rows(args, ROWS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
