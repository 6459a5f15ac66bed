import pickle
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lss_cl import data as data_mod
from lss_cl.cli import main
from lss_cl.data import CIFAR10_CLASSES, CIFAR100_CLASSES, load_dataset, split_classes
from lss_cl.errors import DataError

from .conftest import make_tree


def _archive(tree: Path, dest: Path, kind: str) -> Path:
    if kind == "zip":
        path = dest / "tiny.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for f in sorted(tree.rglob("*.png")):
                zf.write(f, f.relative_to(tree.parent))
        return path
    path = dest / ("tiny.tar.gz" if kind == "tar.gz" else "tiny.tar")
    with tarfile.open(path, "w:gz" if kind == "tar.gz" else "w") as tf:
        tf.add(tree, arcname="tiny")
    return path


def test_image_folder_tree_round_trips_pixels(tiny_tree):
    d = load_dataset(f"imagefolder:{tiny_tree}")
    assert d.class_names == ("cat", "dog")
    assert d.train.images.shape == (6, 8, 8, 3) and d.train.images.dtype == np.uint8
    assert d.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(d.test) == 4
    from PIL import Image
    first = np.asarray(Image.open(tiny_tree / "train" / "cat" / "0000.png"))
    np.testing.assert_array_equal(d.train.images[0], first)


@pytest.mark.parametrize("kind", ["tar.gz", "tar", "zip"])
def test_archives_match_tree(tiny_tree, tmp_path, kind):
    ref = load_dataset(f"imagefolder:{tiny_tree}")
    arc = _archive(tiny_tree, tmp_path, kind)
    d = load_dataset(f"imagefolder:{arc}")
    np.testing.assert_array_equal(d.train.images, ref.train.images)
    np.testing.assert_array_equal(d.test.labels, ref.test.labels)
    assert "archive" in d.source


def test_named_dataset_found_as_archive_under_root(tmp_path):
    tree = make_tree(tmp_path / "src", classes=CIFAR10_CLASSES, n_train=1, n_test=1)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar10-jpeg.tar.gz", "w:gz") as tf:
        tf.add(tree, arcname="cifar10")
    d = load_dataset("cifar10", root)
    assert d.class_names == CIFAR10_CLASSES and len(d.train) == 10
    assert d.mean == (0.4914, 0.4822, 0.4465)


def test_torchvision_format(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tvd.cifar, "check_integrity", lambda *a, **k: True)
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    names = ["data_batch_%d" % i for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        with open(base / name, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
                         "labels": [i % 10, (i + 1) % 10]}, fh)
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": list(CIFAR10_CLASSES)}, fh)
    d = load_dataset("cifar10", tmp_path)
    assert "torchvision" in d.source
    assert len(d.train) == 10 and len(d.test) == 2
    assert d.train.images.shape == (10, 32, 32, 3)


def test_cache_reused_and_invalidated(tiny_tree, monkeypatch):
    first = load_dataset(f"imagefolder:{tiny_tree}")
    calls = []
    real_read = data_mod._read_images
    monkeypatch.setattr(data_mod, "_read_images", lambda *a: calls.append(1) or real_read(*a))
    again = load_dataset(f"imagefolder:{tiny_tree}")
    assert calls == [] and again.cache_file == first.cache_file
    # change one image: a new key, so the source is decoded again
    from PIL import Image
    img = tiny_tree / "train" / "dog" / "0001.png"
    Image.fromarray(np.full((8, 8, 3), 7, dtype=np.uint8)).save(img)
    changed = load_dataset(f"imagefolder:{tiny_tree}")
    assert calls == [1] and changed.cache_file != first.cache_file
    assert (changed.train.images[4] == 7).all()


def test_missing_data_lists_every_path(tmp_path, capsys):
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", tmp_path / "nowhere")
    msg = str(err.value)
    assert "cifar-10-batches-py" in msg and "cifar10-jpeg.tar.gz" in msg and "LSS_CL_DATA" in msg
    assert main(["data", "info", "--dataset", "cifar10", "--data-root", str(tmp_path / "x")]) == 2
    err_out = capsys.readouterr().err
    assert "Traceback" not in err_out and err_out.startswith("error: cifar10 not found")


def test_truncated_archive_names_member(tiny_tree, tmp_path):
    arc = _archive(tiny_tree, tmp_path, "tar.gz")
    raw = arc.read_bytes()
    arc.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="corrupt or truncated archive"):
        load_dataset(f"imagefolder:{arc}")


def test_corrupt_image_names_member(tiny_tree):
    bad = tiny_tree / "test" / "dog" / "0001.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"0001\.png"):
        load_dataset(f"imagefolder:{tiny_tree}")


def test_split_classes_determinism():
    assert split_classes(10, 5) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    a, b = split_classes(10, 5, seed=3), split_classes(10, 5, seed=3)
    assert a == b and sorted(sum(a, [])) == list(range(10))
    assert split_classes(10, 5, seed=4) != a
    assert split_classes(4, 2, order=[3, 1, 0, 2]) == [[3, 1], [0, 2]]
    with pytest.raises(DataError):
        split_classes(10, 3)
    with pytest.raises(DataError):
        split_classes(4, 2, order=[0, 0, 1, 2])


def test_subset_relabels(tiny_tree):
    d = load_dataset(f"imagefolder:{tiny_tree}").subset([1])
    assert d.class_names == ("dog",) and d.class_ids == (1,)
    assert set(d.train.labels.tolist()) == {0} and len(d.train) == 3
    with pytest.raises(DataError, match="classes"):
        d.subset([0])


def test_real_cifar(real_data_root):
    c10 = load_dataset("cifar10", real_data_root)
    assert (len(c10.train), len(c10.test)) == (50000, 10000)
    assert c10.class_names == CIFAR10_CLASSES
    assert c10.train.class_counts(10).tolist() == [5000] * 10
    assert c10.test.class_counts(10).tolist() == [1000] * 10
    c100 = load_dataset("cifar100", real_data_root)
    assert (len(c100.train), len(c100.test)) == (50000, 10000)
    assert c100.class_names == CIFAR100_CLASSES
    assert set(c100.train.class_counts(100).tolist()) == {500}
    assert set(c100.test.class_counts(100).tolist()) == {100}


def test_real_cifar_second_load_is_fast(real_data_root):
    import time

    load_dataset("cifar10", real_data_root)
    start = time.perf_counter()
    load_dataset("cifar10", real_data_root)
    assert time.perf_counter() - start < 2.0
