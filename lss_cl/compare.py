"""``lss-cl compare``: mean ± std over seeds per (scenario, protocol, strategy), as Markdown."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from .errors import DataError


def load_runs(paths: list[str | Path]) -> list[dict]:
    """metrics.json of every finished run under ``paths`` (folders are searched recursively)."""
    files: list[Path] = []
    for p in map(Path, paths):
        files += [p] if p.is_file() else sorted(p.rglob("metrics.json"))
    runs = []
    for f in files:
        try:
            runs.append({**json.loads(f.read_text()), "_path": str(f.parent)})
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{f}: unreadable metrics ({exc}); re-run with --resume") from None
    if not runs:
        raise DataError(f"no metrics.json under {', '.join(map(str, paths))}; finish a run first")
    return runs


def mean_std(values: list[float]) -> str:
    """Fractions as percent, ``mean ± std`` (std 0 for one value), as every results table prints them."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def table(runs: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        groups[(r["scenario"], r["protocol"], r["strategy"])].append(r)
    lines = ["| scenario | protocol | strategy | seeds | final avg accuracy (%) | avg forgetting (%) | "
             "memory bytes / experience | wall s |", "|---|---|---|---|---|---|---|---|"]
    for (scen, proto, strat), rs in sorted(groups.items()):
        mem = rs[0].get("memory") or []
        per_exp = max((m["bytes"] for m in mem), default=0)
        lines.append(f"| {scen} | {proto} | {strat} | {len(rs)} | "
                     f"{mean_std([r['final_average_accuracy'] for r in rs])} | "
                     f"{mean_std([r['average_forgetting'] for r in rs])} | {per_exp} | "
                     f"{statistics.fmean(r['seconds']['total'] for r in rs):.0f} |")
    return "\n".join(lines)
