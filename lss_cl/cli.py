"""``lss-cl`` command line. User errors print one line and exit with code 2."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .errors import ConfigError, LssError

PAPER_TABLE2 = ((4, 15), (8, 4), (12, 4), (16, 3))  # (rank r, groups k) of the paper's Table 2


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="folder holding the data (default: $LSS_CL_DATA, else ./data)")
    p.add_argument("--download", action="store_true", default=None,
                   help="fetch CIFAR with torchvision's downloader if it is not there")


def cmd_data_info(args: argparse.Namespace) -> int:
    from .data import KNOWN_DATASETS, load_dataset

    names = args.dataset or list(KNOWN_DATASETS)
    failures = []
    for name in names:
        try:
            d = load_dataset(name, args.data_root, download=bool(args.download), progress=True)
        except LssError as exc:
            failures.append(str(exc))
            continue
        c, h, w = d.image_shape
        print(f"{name}: found at {d.source}")
        print(f"  images {c}x{h}x{w}, classes {d.num_classes}, train {len(d.train)}, test {len(d.test)}")
        print(f"  cache {d.cache_file}")
        train_counts, test_counts = d.train.class_counts(d.num_classes), d.test.class_counts(d.num_classes)
        for i, cname in enumerate(d.class_names):
            print(f"  {i:3d} {cname:<16} train {train_counts[i]:6d}  test {test_counts[i]:6d}")
    for msg in failures:
        print(f"error: {msg}", file=sys.stderr)
    return 2 if failures else 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import TrainConfig, load_config
    from .pipeline import train_on_dataset

    flags = {"data.dataset": args.dataset, "data.data_root": args.data_root, "data.zca": args.zca,
             "data.download": args.download, "data.classes": _int_list(args.classes, "--classes"),
             "model.arch": args.arch, "model.width": args.width, "model.depth": args.depth,
             "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "dsa": args.dsa,
             "seed": args.seed, "device": args.device}
    cfg = load_config(TrainConfig, args.config, flags, args.set)
    result = train_on_dataset(cfg, progress=True)
    print(f"test accuracy {result.test_accuracy:.4f} after {cfg.epochs} epochs "
          f"({result.seconds:.1f} s, {result.images_per_second:.0f} images/s)")
    return 0


def _distill_flags(args: argparse.Namespace) -> dict:
    """Command-line flags of experts/distill as dotted DistillConfig keys (None = not given)."""
    return {"data.dataset": args.dataset, "data.data_root": args.data_root,
            "data.classes": _int_list(args.classes, "--classes"), "data.zca": args.zca,
            "data.download": args.download, "model.width": args.width, "model.depth": args.depth,
            "experts.num_experts": args.num_experts, "experts.store": args.experts,
            "expert_epochs": args.expert_epochs, "max_start_epoch": args.max_start_epoch,
            "seed": args.seed, "device": args.device,
            **{k: getattr(args, k, None) for k in ("method", "ipc", "rank", "groups", "iterations",
                                                   "syn_steps", "out", "labels", "progressive")}}


def _load_distill_config(args: argparse.Namespace):
    from .config import DistillConfig, load_config

    cfg = load_config(DistillConfig, args.config, _distill_flags(args), args.set)
    if cfg.context_batch:
        raise ConfigError(f"context_batch: got {cfg.context_batch}; earlier memories exist only in "
                          "`lss-cl run` (set distill.context_batch in a scenario), so use 0 here")
    return cfg


def cmd_experts(args: argparse.Namespace) -> int:
    from .experts import ExpertSpec, train_experts
    from .pipeline import prepare_data
    from .runtime import resolve_device

    cfg = _load_distill_config(args)
    epochs = args.epochs or cfg.max_start_epoch + cfg.expert_epochs
    data = prepare_data(cfg.data, progress=True)
    spec = ExpertSpec.from_configs(cfg.data, cfg.model, cfg.experts)
    paths = train_experts(data, cfg.model, cfg.experts, spec, epochs, resolve_device(cfg.device))
    print(f"{len(paths)} expert trajectories ({epochs} epochs each) in {paths[0].parent}")
    return 0


def cmd_budget(args: argparse.Namespace) -> int:
    from .budget import DTYPE_BYTES, Shape, budget_from_bytes, ipc_budget_floats, solve_lowrank
    from .data import KNOWN_DATASETS

    if args.dataset not in KNOWN_DATASETS:
        raise LssError(f"--dataset: got {args.dataset!r}; allowed: {', '.join(KNOWN_DATASETS)}")
    shape = Shape(3, 32, 32, len(KNOWN_DATASETS[args.dataset].classes))
    if args.bytes is not None:
        budget, what = budget_from_bytes(args.bytes, args.dtype), f"{args.bytes} bytes as {args.dtype}"
    elif args.floats is not None:
        budget, what = args.floats, f"{args.floats} floats"
    else:
        budget, what = ipc_budget_floats(shape, args.ipc), f"IPC={args.ipc:g}"
    if args.rank is None and args.groups is None:
        pairs = list(PAPER_TABLE2)
    else:
        pairs = [(r, k) for r in args.rank or [8] for k in args.groups or [4]]
    plans = [solve_lowrank(shape, budget, r, k, args.soft, args.dtype) for r, k in pairs]
    print(f"{args.dataset}: budget {budget} floats ({what}); soft labels {'on' if args.soft else 'off'}")
    print(f"| r | k | m | images | floats | bytes ({args.dtype}) | raw uint8 images in those bytes |")
    print("|---|---|---|---|---|---|---|")
    for p in plans:
        print(f"| {p.rank} | {p.groups} | {p.per_group} | {p.images} | {p.floats} | {p.bytes} | "
              f"{p.raw_images_same_bytes:.1f} |")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from .distill import Distiller, write_outputs
    from .evaluation import evaluate_memory
    from .memory import load_memory

    cfg = _load_distill_config(args)
    result = Distiller(cfg).run(resume=args.resume)
    path = write_outputs(cfg, result)
    print(f"memory: {path} ({result.plan.images} images, {result.plan.floats} floats, "
          f"{result.plan.bytes} bytes as {cfg.storage_dtype}); learned lr {result.syn_lr:.4g}")
    if args.eval_runs:
        ev = evaluate_memory(load_memory(path), result.data, cfg.model, runs=args.eval_runs,
                             epochs=args.eval_epochs, device=Distiller(cfg).device, progress=True)
        write_outputs(cfg, result, ev)
        print(f"test accuracy {ev['mean']:.4f} ± {ev['std']:.4f} over {ev['runs']} runs")
    return 0


def cmd_eval_memory(args: argparse.Namespace) -> int:
    import json

    from .config import DataConfig, ModelConfig, from_dict
    from .evaluation import evaluate_memory
    from .memory import load_memory
    from .pipeline import prepare_data
    from .runtime import atomic_write_json, resolve_device

    mem = load_memory(args.file)
    zca = mem.meta.get("zca") or False
    data = prepare_data(from_dict(DataConfig, {
        "dataset": mem.meta["dataset"], "data_root": args.data_root, "classes": mem.classes,
        "zca": bool(zca), "zca_eps": float(zca["eps"]) if zca else 0.1}), progress=True)
    model = from_dict(ModelConfig, {"arch": args.arch, "width": args.width or (128 if args.arch == "convnet" else 64)})
    ev = evaluate_memory(mem, data, model, runs=args.runs, epochs=args.epochs, lr=args.lr,
                         device=resolve_device(args.device), seed=args.seed, progress=True)
    print(f"{args.file}: {mem.kind}, {mem.num_images} images, {args.arch}-{model.width}: "
          f"test accuracy {ev['mean']:.4f} ± {ev['std']:.4f} over {ev['runs']} runs")
    if args.out:
        atomic_write_json(args.out, ev)
    else:
        print(json.dumps(ev))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_scenario
    from .scenario import load_scenario

    flags = {"strategies": args.strategy, "seeds": args.seeds, "device": args.device,
             "data.data_root": args.data_root}
    cfg = load_scenario(args.scenario, args.set, flags)
    for strategy in cfg.strategies:
        for seed in cfg.seeds:
            m = run_scenario(cfg, strategy, seed, args.out, resume=args.resume)
            print(f"{cfg.name} {cfg.protocol}-{strategy} seed {seed}: final average accuracy "
                  f"{m['final_average_accuracy']:.4f}, forgetting {m['average_forgetting']:.4f}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import load_runs, table

    print(table(load_runs(args.paths)))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import os
    import subprocess
    from pathlib import Path

    app = Path(__file__).resolve().parent.parent / "app" / "dashboard.py"
    if not app.is_file():
        raise LssError(f"dashboard: {app} not found; run from a source checkout of lss-cl")
    env = {**os.environ, "LSS_CL_RUNS": str(Path(args.runs).resolve())}
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", args.address,
           "--server.port", str(args.port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    return subprocess.call(cmd, env=env)


def _int_list(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise LssError(f"{flag}: got {text!r}; expected comma-separated class ids like 0,1,2") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lss-cl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    info = data.add_parser("info", help="where each dataset was found, counts per class, cache path")
    info.add_argument("--dataset", action="append", help="cifar10, cifar100 or imagefolder:<path> "
                      "(repeatable; default: cifar10 and cifar100)")
    _add_data_args(info)
    info.set_defaults(func=cmd_data_info)

    train = sub.add_parser("train", help="train one network and print its test accuracy")
    train.add_argument("--config", help="YAML file with TrainConfig fields; flags override it")
    train.add_argument("--dataset")
    train.add_argument("--classes", help="comma-separated class ids (default: all)")
    train.add_argument("--arch", choices=("convnet", "resnet18"))
    train.add_argument("--width", type=int)
    train.add_argument("--depth", type=int)
    train.add_argument("--epochs", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--dsa", action=argparse.BooleanOptionalAction, default=None)
    train.add_argument("--zca", action=argparse.BooleanOptionalAction, default=None)
    train.add_argument("--seed", type=int)
    train.add_argument("--device", help="auto (default), cpu, cuda")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any config field, e.g. --set momentum=0.5")
    _add_data_args(train)
    train.set_defaults(func=cmd_train)

    for name, func, help_ in (("experts", cmd_experts, "train expert trajectories into the store"),
                              ("distill", cmd_distill, "distil a dataset or class subset (MTT / MTT-LSS)")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", help="YAML file with DistillConfig fields; flags override it")
        p.add_argument("--dataset")
        p.add_argument("--classes", help="comma-separated class ids (default: all)")
        p.add_argument("--width", type=int)
        p.add_argument("--depth", type=int)
        p.add_argument("--zca", action=argparse.BooleanOptionalAction, default=None)
        p.add_argument("--num-experts", type=int)
        p.add_argument("--experts", help="expert store folder (default: ./experts)")
        p.add_argument("--expert-epochs", type=int)
        p.add_argument("--max-start-epoch", type=int)
        p.add_argument("--seed", type=int)
        p.add_argument("--device", help="auto (default), cpu, cuda")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        _add_data_args(p)
        p.set_defaults(func=func)
        if name == "experts":
            p.add_argument("--epochs", type=int, help="default: max_start_epoch + expert_epochs")
            continue
        p.add_argument("--method", choices=("lss", "mtt"))
        p.add_argument("--ipc", type=float, help="budget in images per class (IPC·classes·C·H·W floats)")
        p.add_argument("--rank", type=int)
        p.add_argument("--groups", type=int)
        p.add_argument("--labels", choices=("soft", "hard"))
        p.add_argument("--progressive", action=argparse.BooleanOptionalAction, default=None)
        p.add_argument("--iterations", type=int)
        p.add_argument("--syn-steps", type=int)
        p.add_argument("--out", help="run folder (memory.safetensors, report.json, checkpoint.pt)")
        p.add_argument("--resume", action="store_true", help="continue the run in --out")
        p.add_argument("--eval-runs", type=int, default=0, help="evaluate the memory after distilling")
        p.add_argument("--eval-epochs", type=int, default=300)

    run = sub.add_parser("run", help="run a continual-learning scenario (one folder per strategy × seed)")
    run.add_argument("scenario", help="scenario YAML, e.g. scenarios/split_cifar10_quick.yaml")
    run.add_argument("--strategy", nargs="+", help="naive joint replay mtt lss (default: the scenario's)")
    run.add_argument("--seeds", type=int, nargs="+")
    run.add_argument("--out", default="runs", help="runs folder (default: ./runs)")
    run.add_argument("--resume", action="store_true", help="continue killed runs from their last experience")
    run.add_argument("--device")
    run.add_argument("--data-root")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a scenario field, e.g. --set learner.epochs=1")
    run.set_defaults(func=cmd_run)

    cmp_ = sub.add_parser("compare", help="Markdown table of mean ± std over seeds per strategy")
    cmp_.add_argument("paths", nargs="+", help="run folders or metrics.json files")
    cmp_.set_defaults(func=cmd_compare)

    dash = sub.add_parser("dashboard", help="Streamlit dashboard over run folders")
    dash.add_argument("--runs", default="runs")
    dash.add_argument("--port", type=int, default=8501)
    dash.add_argument("--address", default="127.0.0.1")
    dash.set_defaults(func=cmd_dashboard)

    budget = sub.add_parser("budget", help="storage accounting: images per group m for rank r and groups k")
    budget.add_argument("--dataset", default="cifar10")
    budget.add_argument("--ipc", type=float, default=1.0)
    budget.add_argument("--floats", type=int, help="budget in floats (instead of --ipc)")
    budget.add_argument("--bytes", type=int, help="budget in bytes for --dtype (instead of --ipc)")
    budget.add_argument("--rank", type=int, nargs="+", help="default: the paper's Table 2 settings")
    budget.add_argument("--groups", type=int, nargs="+")
    budget.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    budget.add_argument("--soft", action=argparse.BooleanOptionalAction, default=True)
    budget.set_defaults(func=cmd_budget)

    ev = sub.add_parser("eval-memory", help="train fresh networks on a memory file, report test accuracy")
    ev.add_argument("file")
    ev.add_argument("--runs", type=int, default=3)
    ev.add_argument("--epochs", type=int, default=1000)
    ev.add_argument("--arch", choices=("convnet", "resnet18"), default="convnet")
    ev.add_argument("--width", type=int)
    ev.add_argument("--lr", type=float, help="default: the learned step size stored in the memory")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--out", help="write the result JSON here")
    ev.add_argument("--data-root")
    ev.set_defaults(func=cmd_eval_memory)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LssError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
