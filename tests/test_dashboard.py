"""Dashboard: every page renders over generated run folders (finished, running, failed,
corrupt), shows the right numbers, and a real browser renders it."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from lss_cl.memory import save_memory

from .conftest import make_tree

APP = str(Path(__file__).parent.parent / "app" / "dashboard.py")


def _write_run(root: Path, strategy: str, seed: int, *, status="finished", metrics=True, tree=None):
    run = root / "demo" / f"replay-{strategy}-seed{seed}"
    (run / "memory").mkdir(parents=True)
    progress = {"status": status, "phase": "distill" if status == "running" else "done", "experience": 1,
                "experiences": 2, "scenario": "demo", "strategy": strategy, "protocol": "replay", "seed": seed}
    if status == "failed":
        progress["error"] = "RuntimeError: boom"
    (run / "progress.json").write_text(json.dumps(progress))
    if not metrics:
        return run
    g = torch.Generator().manual_seed(seed)
    meta = {"dataset": f"imagefolder:{tree}", "classes": [0, 1], "class_names": ["cat", "dog"],
            "mean": [0.5] * 3, "std": [0.25] * 3, "zca": False}
    records = []
    for e in range(2):
        f = run / "memory" / f"exp_{e:02d}.safetensors"
        if strategy == "lss":
            save_memory(f, "lowrank", {"U": torch.randn(2, 3, 8, 2, generator=g), "V": torch.randn(2, 3, 8, 2, generator=g),
                                       "S": torch.randn(2, 3, 3, 2, 2, generator=g),
                                       "label_logits": torch.randn(6, 2, generator=g)},
                        {**meta, "rank": 2, "groups": 2, "per_group": 3, "floats": 228, "bytes": 456}, "float16")
            rec = {"kind": "lowrank", "rank": 2, "groups": 2, "per_group": 3, "images": 6, "floats": 228, "bytes": 456}
        else:
            save_memory(f, "raw", {"images_uint8": torch.randint(0, 255, (2, 8, 8, 3), dtype=torch.uint8, generator=g),
                                   "labels": torch.tensor([0, 1])},
                        {**meta, "rank": 0, "groups": 0, "per_group": 0, "floats": 384, "bytes": 384})
            rec = {"kind": "raw", "rank": 0, "groups": 0, "per_group": 0, "images": 2, "floats": 384, "bytes": 384}
        records.append({"experience": e, "classes": [0, 1], "budget_bytes": 500, "file": str(f), **rec})
    acc = [[0.9, 0.0], [0.5, 0.8]] if strategy == "lss" else [[0.9, 0.0], [0.3, 0.7]]
    m = {"scenario": "demo", "strategy": strategy, "protocol": "replay", "seed": seed,
         "classes_per_experience": [[0], [1]], "accuracy_matrix": acc,
         "average_accuracy": [acc[0][0], (acc[1][0] + acc[1][1]) / 2],
         "final_average_accuracy": (acc[1][0] + acc[1][1]) / 2, "average_forgetting": acc[0][0] - acc[1][0],
         "memory": records, "seconds": {"train": 1, "experts": 1, "distill": 1, "eval": 1, "total": 42}}
    (run / "metrics.json").write_text(json.dumps(m))
    return run


@pytest.fixture
def runs_root(tmp_path):
    tree = make_tree(tmp_path / "data", size=8)
    root = tmp_path / "runs"
    _write_run(root, "lss", 0, tree=tree)
    _write_run(root, "lss", 1, tree=tree)
    _write_run(root, "replay", 0, tree=tree)
    _write_run(root, "mtt", 0, status="running", metrics=False)
    _write_run(root, "naive", 0, status="failed", metrics=False)
    bad = _write_run(root, "joint", 0, status="finished", metrics=False)
    (bad / "metrics.json").write_text("{not json")
    return root


def test_every_page_renders_right_numbers_and_reports_corrupt(runs_root, monkeypatch):
    monkeypatch.setenv("LSS_CL_RUNS", str(runs_root))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    lss = table[table["run"] == "demo/replay-lss-seed0"].iloc[0]
    assert lss["final avg acc (%)"] == 65.0 and lss["forgetting (%)"] == 40.0 and lss["memory bytes"] == 912
    statuses = dict(zip(table["run"], table["status"]))
    assert statuses["demo/replay-mtt-seed0"] == "running: distill, experience 2/2"
    assert statuses["demo/replay-naive-seed0"] == "failed: RuntimeError: boom"
    assert statuses["demo/replay-joint-seed0"].startswith("corrupt: metrics.json")
    assert any("corrupt run" in e.value and "replay-joint-seed0" in e.value for e in at.error)
    budgets = at.dataframe[1].value
    row = budgets[(budgets["strategy"] == "lss") & (budgets["seed"] == 0) & (budgets["experience"] == 0)].iloc[0]
    # float16: U, V 2·3·8·2 values each, S 2·3·3·2·2, logits 6·2 — two bytes each
    assert (row["mappers"], row["bases"], row["labels"], row["bytes"]) == (384, 144, 24, 456)
    assert row["raw images in same bytes"] == round(456 / 3072, 1)
    subheaders = [h.value for h in at.subheader]
    assert "experience 0: lowrank, 6 images, classes cat, dog" in subheaders
    assert "dimension mappers U (H×r) and V (W×r), per channel" in subheaders
    assert "real images of the same classes" in subheaders
    assert len(at.get("image")) >= 4  # samples, mappers, bases, real images


def test_dashboard_renders_in_headless_chromium(runs_root, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium missing in CI: .ci/run must install Debian's chromium package")
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "lss_cl", "dashboard", "--runs", str(runs_root),
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("dashboard did not start")
        shot = tmp_path / "dashboard.png"
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:  # drives Debian's chromium; downloads no browser
            browser = pw.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.get_by_text("lss-cl: distilled memories").wait_for(timeout=120_000)
            page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=120_000)
            page.wait_for_timeout(1500)  # let the grid paint
            page.screenshot(path=str(shot))
            browser.close()
        from PIL import Image
        img = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
        assert img.shape == (900, 1280)
        assert img.std() > 10 and len(np.unique(img)) > 50, "screenshot is blank"
    finally:
        server.terminate()
        server.wait(timeout=30)
