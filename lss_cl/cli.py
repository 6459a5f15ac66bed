"""``lss-cl`` command line. User errors print one line and exit with code 2."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from .errors import LssError

Handler = Callable[[argparse.Namespace], int]


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
