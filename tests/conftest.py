"""Shared fixtures: tiny image-folder datasets built in temp dirs, and the real data root."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch, request):
    """Tiny datasets cache in a temp dir; real-data tests keep the user cache (decoding is slow)."""
    if "real_data_root" not in request.fixturenames:
        monkeypatch.setenv("LSS_CL_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def real_data_root() -> Path:
    root = os.environ.get("LSS_CL_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("real CIFAR data: set LSS_CL_DATA to the folder with cifar10-jpeg.tar.gz (CI does)")
    return Path(root)


def make_tree(root: Path, classes=("cat", "dog"), n_train=3, n_test=2, size=8, seed=0) -> Path:
    """``root/tiny/{train,test}/<class>/NNNN.png`` with random lossless images."""
    rng = np.random.default_rng(seed)
    base = root / "tiny"
    for split, n in (("train", n_train), ("test", n_test)):
        for cls in classes:
            d = base / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i:04d}.png")
    return base


@pytest.fixture
def tiny_tree(tmp_path) -> Path:
    return make_tree(tmp_path)
