"""Datasets by name (``cifar10``, ``cifar100``, ``imagefolder:<path>``) as cached uint8 arrays.

Sources, tried in order for a named dataset under the data root: torchvision's own pickled
batches, an image-folder tree ``<name>/{train,test}/<class>/*``, or an archive of such a tree
(``.tar``, ``.tar.gz``, ``.zip``). Decoding happens once; the arrays are cached in
``$LSS_CL_CACHE`` (else ``$XDG_CACHE_HOME/lss-cl``, else ``~/.cache/lss-cl``) under a key made
of the source's paths, sizes and modification times, so a changed source is re-read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from .errors import DataError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = tuple("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile
cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp
lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom
oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor
train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split())

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tar", ".zip")
CACHE_FORMAT = 1


@dataclass(frozen=True)
class KnownDataset:
    """What we know about a named dataset: class order, torchvision class, MTT normalisation."""

    name: str
    classes: tuple[str, ...]
    torchvision_dir: str
    torchvision_class: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


KNOWN_DATASETS = {
    "cifar10": KnownDataset("cifar10", CIFAR10_CLASSES, "cifar-10-batches-py", "CIFAR10",
                            (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": KnownDataset("cifar100", CIFAR100_CLASSES, "cifar-100-python", "CIFAR100",
                             (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass(frozen=True)
class ArraySplit:
    """One split: ``images`` uint8 (N, H, W, C) and ``labels`` int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)

    def select(self, class_ids: Sequence[int]) -> "ArraySplit":
        """Samples of ``class_ids`` only, labels re-indexed to 0..len(class_ids)-1."""
        remap = np.full(int(self.labels.max(initial=0)) + 1, -1, dtype=np.int64)
        remap[np.asarray(class_ids, dtype=np.int64)] = np.arange(len(class_ids))
        keep = np.isin(self.labels, class_ids)
        return ArraySplit(self.images[keep], remap[self.labels[keep]])


@dataclass(frozen=True)
class DatasetArrays:
    """A dataset as arrays, with where it came from; ``class_ids`` are the global ids kept."""

    name: str
    class_names: tuple[str, ...]
    train: ArraySplit
    test: ArraySplit
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""
    cache_file: str = ""
    class_ids: tuple[int, ...] = field(default=())

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, h, w, c = self.train.images.shape
        return c, h, w

    def subset(self, class_ids: Sequence[int]) -> "DatasetArrays":
        """Only ``class_ids`` (global ids), relabelled 0..n-1 in the given order."""
        ids = [int(c) for c in class_ids]
        base_ids = self.class_ids or tuple(range(self.num_classes))
        bad = [c for c in ids if c not in base_ids]
        if bad or len(set(ids)) != len(ids):
            raise DataError(f"classes: got {ids}; each must be a distinct class id of {self.name} "
                            f"(0..{self.num_classes - 1})")
        local = [base_ids.index(c) for c in ids]
        return DatasetArrays(self.name, tuple(self.class_names[i] for i in local),
                             self.train.select(local), self.test.select(local), self.mean,
                             self.std, self.source, self.cache_file, tuple(ids))


def split_classes(num_classes: int, n_experiences: int, seed: int | None = None,
                  order: Sequence[int] | None = None) -> list[list[int]]:
    """Class-incremental split: ``order`` if given, else a seeded permutation, else 0..n-1."""
    if order is not None:
        order = [int(c) for c in order]
        if sorted(order) != list(range(num_classes)):
            raise DataError(f"class_order: got {order}; must be a permutation of 0..{num_classes - 1}")
    elif seed is None:
        order = list(range(num_classes))
    else:
        order = [int(c) for c in np.random.default_rng(seed).permutation(num_classes)]
    if not 1 <= n_experiences <= num_classes or num_classes % n_experiences:
        raise DataError(f"n_experiences: got {n_experiences}; must divide the {num_classes} classes")
    per = num_classes // n_experiences
    return [order[i * per:(i + 1) * per] for i in range(n_experiences)]


# --------------------------------------------------------------------------- locating sources


def resolve_root(data_root: str | os.PathLike | None) -> tuple[Path, str]:
    """Data root and where it came from: ``--data-root``, else ``$LSS_CL_DATA``, else ./data."""
    if data_root:
        return Path(data_root), "--data-root"
    if os.environ.get("LSS_CL_DATA"):
        return Path(os.environ["LSS_CL_DATA"]), "$LSS_CL_DATA"
    return Path("data"), "default ./data"


def cache_dir() -> Path:
    env = os.environ.get("LSS_CL_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "lss-cl"


@dataclass(frozen=True)
class Source:
    """A concrete place holding a dataset: kind is torchvision | tree | archive."""

    kind: str
    path: Path

    def fingerprint(self) -> str:
        """Hash of file paths, sizes and mtimes: changes whenever the source changes."""
        h = hashlib.sha256(f"{CACHE_FORMAT}|{self.kind}|{self.path.resolve()}".encode())
        files = [self.path] if self.path.is_file() else sorted(
            p for p in self.path.rglob("*") if p.is_file())
        for p in files:
            st = p.stat()
            h.update(f"|{p.relative_to(self.path) if p != self.path else p.name}:{st.st_size}:"
                     f"{st.st_mtime_ns}".encode())
        return h.hexdigest()[:20]


def candidate_sources(name: str, root: Path) -> list[Source]:
    """Every place a dataset called ``name`` may live, in the order we try them."""
    if name.startswith("imagefolder:"):
        path = Path(name.split(":", 1)[1]).expanduser()
        if not path.is_absolute() and not path.exists():
            path = root / path
        kind = "archive" if path.name.endswith(ARCHIVE_SUFFIXES) else "tree"
        return [Source(kind, path)]
    known = KNOWN_DATASETS[name]
    out = [Source("torchvision", root / known.torchvision_dir), Source("tree", root / name)]
    for stem in (f"{name}-jpeg", name):
        out += [Source("archive", root / f"{stem}{suf}") for suf in ARCHIVE_SUFFIXES]
    return out


def _exists(src: Source) -> bool:
    if src.kind == "archive":
        return src.path.is_file()
    if src.kind == "torchvision":
        return src.path.is_dir()
    return any((base / "train").is_dir() for base in _tree_bases(src.path))


def _tree_bases(path: Path) -> list[Path]:
    """A tree is ``path/{train,test}`` or, one level down, ``path/<name>/{train,test}``."""
    if not path.is_dir():
        return []
    return [path] + sorted(p for p in path.iterdir() if p.is_dir())


# --------------------------------------------------------------------------- reading sources

Sample = tuple[str, str, str, bytes]  # split, class name, member name, encoded image


def _split_member(member: str) -> tuple[str, str] | None:
    parts = member.replace("\\", "/").split("/")
    if len(parts) >= 3 and parts[-3] in ("train", "test") and parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return parts[-3], parts[-2]
    return None


def _iter_archive(path: Path) -> Iterator[Sample]:
    member = "<start of archive>"
    try:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    member = info.filename
                    where = _split_member(member)
                    if where and not info.is_dir():
                        yield (*where, member, zf.read(info))
        else:
            with tarfile.open(path, "r:*") as tf:
                for info in tf:
                    member = info.name
                    where = _split_member(member)
                    if where and info.isfile():
                        fh = tf.extractfile(info)
                        yield (*where, member, fh.read() if fh else b"")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{path}: corrupt or truncated archive near member {member!r} ({exc}); "
                        "re-copy the file") from None


def _iter_tree(path: Path) -> Iterator[Sample]:
    for base in _tree_bases(path):
        if not (base / "train").is_dir():
            continue
        for split in ("train", "test"):
            for cls_dir in sorted(p for p in (base / split).iterdir() if p.is_dir()):
                for f in sorted(cls_dir.iterdir()):
                    if f.suffix.lower() in IMAGE_SUFFIXES:
                        yield split, cls_dir.name, str(f), f.read_bytes()
        return


def _decode(sample: Sample, origin: Path) -> np.ndarray:
    split, _, member, data = sample
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # PIL raises many types for bad files
        raise DataError(f"{origin}: cannot decode image {member!r} ({exc.__class__.__name__}: {exc});"
                        " replace or remove it") from None


def _read_images(src: Source, class_names: Sequence[str] | None) -> tuple[tuple[str, ...], dict[str, ArraySplit]]:
    samples = list(_iter_archive(src.path) if src.kind == "archive" else _iter_tree(src.path))
    if not samples:
        raise DataError(f"{src.path}: no images found under */train/<class>/ or */test/<class>/")
    found = sorted({s[1] for s in samples})
    if class_names is None:
        class_names = tuple(found)
    elif set(found) != set(class_names):
        extra = sorted(set(found) - set(class_names))[:3]
        missing = sorted(set(class_names) - set(found))[:3]
        raise DataError(f"{src.path}: class folders do not match the dataset (unexpected {extra}, "
                        f"missing {missing})")
    index = {c: i for i, c in enumerate(class_names)}
    samples.sort(key=lambda s: (s[0], index[s[1]], s[2]))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # PIL releases the GIL
        images = list(pool.map(lambda s: _decode(s, src.path), samples))
    shape = images[0].shape
    for img, s in zip(images, samples):
        if img.shape != shape:
            raise DataError(f"{src.path}: image {s[2]!r} is {img.shape[1]}x{img.shape[0]}, "
                            f"expected {shape[1]}x{shape[0]} like the others")
    splits = {}
    for split in ("train", "test"):
        idx = [i for i, s in enumerate(samples) if s[0] == split]
        if not idx:
            raise DataError(f"{src.path}: no {split} images (expected */{split}/<class>/*)")
        splits[split] = ArraySplit(np.stack([images[i] for i in idx]),
                                   np.array([index[samples[i][1]] for i in idx], dtype=np.int64))
    return tuple(class_names), splits


def _read_torchvision(known: KnownDataset, root: Path, download: bool) -> dict[str, ArraySplit]:
    import torchvision.datasets as tvd

    cls = getattr(tvd, known.torchvision_class)
    out = {}
    for split in ("train", "test"):
        try:
            ds = cls(str(root), train=split == "train", download=download)
        except RuntimeError as exc:
            raise DataError(f"{root / known.torchvision_dir}: {exc}") from None
        out[split] = ArraySplit(np.asarray(ds.data, dtype=np.uint8),
                                np.asarray(ds.targets, dtype=np.int64))
    return out


# --------------------------------------------------------------------------- cache


def _save_cache(path: Path, class_names: Sequence[str], splits: dict[str, ArraySplit]) -> None:
    """Atomic write: a killed process never leaves a half-written cache behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, classes=np.array(json.dumps(list(class_names))),
                 train_x=splits["train"].images, train_y=splits["train"].labels,
                 test_x=splits["test"].images, test_y=splits["test"].labels)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_cache(path: Path) -> tuple[tuple[str, ...], dict[str, ArraySplit]] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            names = tuple(json.loads(str(z["classes"])))
            return names, {"train": ArraySplit(z["train_x"], z["train_y"]),
                           "test": ArraySplit(z["test_x"], z["test_y"])}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None  # unreadable cache: rebuild it from the source


# --------------------------------------------------------------------------- public entry


def load_dataset(name: str, data_root: str | os.PathLike | None = None,
                 download: bool = False, progress: bool = False) -> DatasetArrays:
    """Load ``name`` (cifar10 | cifar100 | imagefolder:<path>) as uint8 arrays, cached."""
    if name not in KNOWN_DATASETS and not name.startswith("imagefolder:"):
        raise DataError(f"dataset: got {name!r}; allowed: cifar10, cifar100, imagefolder:<path>")
    root, root_from = resolve_root(data_root)
    known = KNOWN_DATASETS.get(name)
    if download and known is not None and not (root / known.torchvision_dir).is_dir():
        _read_torchvision(known, root, download=True)
    sources = candidate_sources(name, root)
    src = next((s for s in sources if _exists(s)), None)
    if src is None:
        tried = "; ".join(f"{s.path} ({s.kind})" for s in sources)
        hint = (" or pass --download to fetch it with torchvision" if known else "")
        raise DataError(f"{name} not found (data root {root} from {root_from}). Looked at: {tried}. "
                        f"Point --data-root or LSS_CL_DATA at a folder holding one of these{hint}.")
    cache = cache_dir() / f"{name.replace(':', '_').replace('/', '_')}-{src.fingerprint()}.npz"
    loaded = _load_cache(cache) if cache.is_file() else None
    if loaded is None:
        if progress:
            print(f"decoding {name} from {src.path} (once; cached in {cache})", flush=True)
        if src.kind == "torchvision":
            assert known is not None
            class_names, splits = known.classes, _read_torchvision(known, root, download=False)
        else:
            class_names, splits = _read_images(src, known.classes if known else None)
        _save_cache(cache, class_names, splits)
    else:
        class_names, splits = loaded
    if known:
        mean, std = known.mean, known.std
    else:
        imgs = splits["train"].images
        mean = tuple((imgs.mean(axis=(0, 1, 2)) / 255.0).tolist())
        std = tuple((imgs.std(axis=(0, 1, 2)) / 255.0).tolist())
    return DatasetArrays(name, tuple(class_names), splits["train"], splits["test"], mean, std,
                         source=f"{src.path} ({src.kind})", cache_file=str(cache))
