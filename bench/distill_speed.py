"""Benchmark: seconds per distillation iteration and peak memory, CPU or CUDA.

Configs (CIFAR-10, IPC=1 budget, ConvNet, syn_steps 20, expert_epochs 2, DSA on, ZCA on):
  mtt-wW: plain MTT, 10 images, batch_syn 10;   lss-wW: LSS r=8 k=4 m=30, 120 images, batch_syn 120;
  full120-wW: 120 full-rank images (same batch as LSS) to isolate the cost of the reconstruction.
Each config runs in its own subprocess (so peak RSS is its own) on real ZCA-whitened CIFAR-10
images; the expert trajectory is a random walk from a fresh init: per-iteration compute does not
depend on the trajectory values. Median of --iters timed iterations after 3 warm-up ones.

    LSS_CL_DATA=../shared/data python bench/distill_speed.py [--iters 50] [--widths 32 128]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
OFFICIAL_MTT_S = 0.36  # official MTT code, same config (width 32, syn_steps 20), this machine, 2 threads


def one(name: str, width: int, iters: int, device: str) -> dict:
    from lss_cl.config import DistillConfig, from_dict
    from lss_cl.distill import Matcher, build_synthetic, make_plan
    from lss_cl.budget import Shape
    from lss_cl.models import FlatParams
    from lss_cl.pipeline import make_model, prepare_data

    method = "mtt" if name == "mtt" else "lss"
    cfg = from_dict(DistillConfig, {
        "data": {"dataset": "cifar10", "zca": True}, "model": {"width": width}, "method": method,
        "labels": "hard" if method == "mtt" else "soft", "label_init": "class", "ipc": 1, "rank": 8,
        "groups": 4, "syn_steps": 20, "expert_epochs": 2, "max_start_epoch": 2, "iterations": 5000,
        "device": device, "lr_lr": 1e-7})
    dev = torch.device(device)
    data = prepare_data(cfg.data)
    plan = make_plan(cfg, Shape(3, 32, 32, 10))
    gen = torch.Generator().manual_seed(0)
    if name == "full120":  # same images as LSS, stored as pixels: no reconstruction
        plan.method, plan.images = "mtt", 120
        cfg.method = "mtt"
    syn = build_synthetic(cfg, plan, data, None, gen).to(dev)
    net = FlatParams(make_model(cfg.model, data).to(dev))
    theta0 = net.flatten()
    steps = torch.randn(1, 5, theta0.numel(), generator=gen).to(dev) * 1e-3
    traj = theta0.view(1, 1, -1) + steps.cumsum(1)
    matcher = Matcher(cfg, syn, net, gen, dev)
    times = []
    for i in range(iters + 3):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        matcher.iterate(i, traj)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    q = statistics.quantiles(times, n=10)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    # profiled after the timing and the peak reading: the profiler costs time and memory itself
    conv_s = conv_kernel_seconds(lambda i: matcher.iterate(i, traj)) if dev.type == "cpu" and name == "mtt" else None
    return {"config": f"{name}-w{width}", "method": name, "width": width, "images": len(syn),
            "batch_syn": matcher.batch, "syn_steps": cfg.syn_steps, "median_s": statistics.median(times),
            "p10_s": q[0], "p90_s": q[-1], "iters": iters, "peak_mib": round(peak, 1),
            "peak_kind": "cuda max allocated" if dev.type == "cuda" else "process max RSS",
            "threads": torch.get_num_threads(), "device": device, "conv_kernels_s": conv_s}


def conv_kernel_seconds(iterate, iters: int = 5) -> float:
    """Seconds per iteration spent inside convolution kernels (forward, backward and double
    backward; profiler self time): the floor no change outside the kernels can go below."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(iters):
            iterate(i)
    return sum(e.self_cpu_time_total for e in prof.key_averages() if "convolution" in e.key) / 1e6 / iters


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--configs", nargs="+", default=["mtt", "lss", "full120"], choices=["mtt", "lss", "full120"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--one", nargs=2, metavar=("NAME", "WIDTH"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS / "distill_speed"))
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.iters, args.device)))
        return 0
    json_path = Path(args.out + ".json")
    # rows of other configs measured earlier on this machine are kept (one table, several runs)
    by = {r["config"]: r for r in json.loads(json_path.read_text())["rows"]} if json_path.exists() else {}
    for width in args.widths:
        for name in args.configs:
            proc = subprocess.run([sys.executable, __file__, "--one", name, str(width), "--iters",
                                   str(args.iters), "--device", args.device],
                                  capture_output=True, text=True, check=True)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            by[row["config"]] = row
            print(row, flush=True)
            write(by, args.device, json_path)
    return 0


def write(by: dict[str, dict], device: str, json_path: Path) -> None:
    from lss_cl.runtime import atomic_write_json, atomic_write_text

    rows = sorted(by.values(), key=lambda r: (r["width"], ("mtt", "lss", "full120").index(r["method"])))
    widths = sorted({r["width"] for r in rows})
    overhead = {w: by[f"lss-w{w}"]["median_s"] / by[f"full120-w{w}"]["median_s"] - 1 for w in widths
                if f"lss-w{w}" in by and f"full120-w{w}" in by}
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                       "torch": torch.__version__, "device": device,
                       "gpu": torch.cuda.get_device_name() if device == "cuda" else None},
           "rows": rows, "lss_reconstruction_overhead": overhead,
           "official_mtt_s_per_iter_w32_cpu": OFFICIAL_MTT_S}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(json_path, out)
    lines = [f"# Distillation speed ({device}, {out['machine']['threads']} threads, torch {torch.__version__})",
             "", "| config | images | batch_syn | syn_steps | median s/iter | p10–p90 | in conv kernels s/iter "
             "| peak MiB |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['images']} | {r['batch_syn']} | {r['syn_steps']} | {r['median_s']:.3f} | "
              f"{r['p10_s']:.3f}–{r['p90_s']:.3f} | "
              f"{'' if r.get('conv_kernels_s') is None else format(r['conv_kernels_s'], '.3f')} | "
              f"{r['peak_mib']} ({r['peak_kind']}) |" for r in rows]
    lines += ["", "LSS reconstruction overhead (LSS vs the same 120 images stored as pixels): " +
              ", ".join(f"width {w}: {v * 100:+.1f}%" for w, v in overhead.items()),
              f"Official MTT code at mtt-w32 on the project CPU: {OFFICIAL_MTT_S} s/iter (2 threads).",
              "'in conv kernels': profiler self time of the convolution forward/backward/double-backward "
              "kernels per iteration (mtt rows), the floor for any change outside those kernels."]
    atomic_write_text(json_path.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
