import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from lss_cl.cli import main
from lss_cl.config import DistillConfig, from_dict
from lss_cl.distill import Distiller, matching_loss, max_start_at, start_epoch, unroll, write_outputs
from lss_cl.errors import ConfigError, DataError
from lss_cl.experts import ExpertSpec, ExpertStore
from lss_cl.memory import load_memory
from lss_cl.models import ConvNet, FlatParams

from .conftest import make_tree


def tiny_cfg(tree: Path, tmp: Path, **over) -> DistillConfig:
    base = {"data": {"dataset": f"imagefolder:{tree}", "zca": False},
            "model": {"width": 4, "depth": 1},
            "experts": {"num_experts": 2, "store": str(tmp / "experts"), "batch_size": 4},
            "method": "lss", "ipc": 1, "rank": 2, "groups": 2, "iterations": 6, "syn_steps": 3,
            "expert_epochs": 1, "max_start_epoch": 1, "checkpoint_every": 1, "device": "cpu",
            "lr_img": 1.0, "lr_lr": 1e-4, "out": str(tmp / "run")}
    for k, v in over.items():
        if isinstance(v, dict):
            base[k] = {**base.get(k, {}), **v}
        else:
            base[k] = v
    return from_dict(DistillConfig, base)


@pytest.fixture
def tree8(tmp_path):
    return make_tree(tmp_path / "data", n_train=6, n_test=3)


def test_matching_loss_zero_when_student_reaches_expert():
    start, target = torch.zeros(10), torch.ones(10)
    assert float(matching_loss(target, start, target)) == 0.0
    assert float(matching_loss(start, start, target)) == pytest.approx(1.0)


def test_unroll_gradients_reach_images_labels_and_lr():
    torch.manual_seed(0)
    net = FlatParams(ConvNet(3, width=4, depth=1, im_size=(8, 8)))
    theta0 = net.flatten()
    x = torch.randn(6, 3, 8, 8, requires_grad=True)
    logits = torch.randn(6, 3, requires_grad=True)
    lr = torch.tensor(0.05, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    theta = unroll(net, theta0, x, torch.softmax(logits, 1), lr, 4, 3, None, g, None)
    matching_loss(theta, theta0, theta0 + 0.1).backward()
    for t in (x, logits, lr):
        assert t.grad is not None and t.grad.abs().sum() > 0
    same = unroll(net, theta0, x, torch.softmax(logits, 1), torch.tensor(0.0), 4, 3, None, g, None)
    torch.testing.assert_close(same.detach(), theta0)  # lr = 0: the student does not move


def test_progressive_schedule_bounds():
    cfg = from_dict(DistillConfig, {"iterations": 100, "max_start_epoch": 20, "delta": 2, "window": 3})
    g = torch.Generator().manual_seed(0)
    highs = [max_start_at(it, cfg) for it in range(100)]
    assert highs[0] == 2 and highs == sorted(highs) and max(highs) == 20
    for it in range(0, 100, 7):
        for _ in range(20):
            t = start_epoch(it, cfg, g)
            assert max(0, highs[it] - 3) <= t <= highs[it] <= 20
    flat = from_dict(DistillConfig, {"iterations": 100, "max_start_epoch": 5, "progressive": False})
    seen = {start_epoch(0, flat, g) for _ in range(300)}
    assert seen == set(range(6))


def test_expert_snapshots_are_copies_and_store_is_reused(tree8, tmp_path, monkeypatch):
    cfg = tiny_cfg(tree8, tmp_path, iterations=1)
    Distiller(cfg, progress=False).run()
    spec = ExpertSpec.from_configs(cfg.data, cfg.model, cfg.experts)
    store = ExpertStore(cfg.experts.store)
    traj = store.load(spec, 2, 2)
    assert traj.shape[:2] == (2, 3)
    for e in range(2):  # every epoch differs from the one before: no aliased storage
        assert all(not torch.equal(traj[e, i], traj[e, i + 1]) for i in range(2))
    assert not torch.equal(traj[0, 0], traj[1, 0])  # experts have their own seeds
    mtimes = [store.path(spec, i).stat().st_mtime_ns for i in range(2)]
    import lss_cl.experts as ex
    monkeypatch.setattr(ex, "train_model", lambda *a, **k: pytest.fail("retrained a stored expert"))
    Distiller(tiny_cfg(tree8, tmp_path, iterations=1, out=str(tmp_path / "run2")), progress=False).run()
    assert [store.path(spec, i).stat().st_mtime_ns for i in range(2)] == mtimes


def test_half_trained_expert_is_redone(tree8, tmp_path):
    cfg = tiny_cfg(tree8, tmp_path, iterations=1)
    Distiller(cfg, progress=False).run()
    spec = ExpertSpec.from_configs(cfg.data, cfg.model, cfg.experts)
    store = ExpertStore(cfg.experts.store)
    keep = store.path(spec, 0).stat().st_mtime_ns
    store.path(spec, 1).write_bytes(b"half written")  # a kill mid-write leaves junk at worst
    Distiller(tiny_cfg(tree8, tmp_path, iterations=1, out=str(tmp_path / "r2")), progress=False).run()
    assert store.path(spec, 0).stat().st_mtime_ns == keep
    assert store.epochs_stored(spec, 1) == 2


def test_expert_store_of_another_architecture_is_refused(tree8, tmp_path):
    cfg = tiny_cfg(tree8, tmp_path, iterations=1)
    Distiller(cfg, progress=False).run()
    spec = ExpertSpec.from_configs(cfg.data, cfg.model, cfg.experts)
    folder = ExpertStore(cfg.experts.store).folder(spec)
    other = tiny_cfg(tree8, tmp_path, iterations=1, model={"width": 6}, experts={"store": str(folder)},
                     out=str(tmp_path / "r3"))
    with pytest.raises(ConfigError, match="this run needs convnet-6x1"):
        Distiller(other, progress=False).run()


def test_resume_after_kill_matches_uninterrupted_run(tree8, tmp_path):
    full = Distiller(tiny_cfg(tree8, tmp_path, out=str(tmp_path / "a")), progress=False).run()

    def kill(it, loss):
        if it == 2:
            raise KeyboardInterrupt

    cfg_b = tiny_cfg(tree8, tmp_path, out=str(tmp_path / "b"))
    with pytest.raises(KeyboardInterrupt):
        Distiller(cfg_b, progress=False).run(on_iteration=kill)
    with pytest.raises(ConfigError, match="--resume"):
        Distiller(cfg_b, progress=False).run()
    resumed = Distiller(cfg_b, progress=False).run(resume=True)
    assert resumed.history["loss"] == full.history["loss"]
    for (n, a), (_, b) in zip(full.synthetic.state_dict().items(), resumed.synthetic.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=n)
    assert resumed.syn_lr == full.syn_lr


@pytest.mark.parametrize("method,labels", [("lss", "soft"), ("mtt", "hard")])
def test_memory_file_round_trip_and_validation(tree8, tmp_path, method, labels):
    cfg = tiny_cfg(tree8, tmp_path, method=method, labels=labels, storage_dtype="float16")
    res = Distiller(cfg, progress=False).run()
    path = write_outputs(cfg, res)
    mem = load_memory(path)
    assert mem.kind == ("lowrank" if method == "lss" else "fullrank")
    assert mem.meta["storage_dtype"] == "float16" and mem.meta["classes"] == [0, 1]
    assert mem.meta["bytes"] == mem.meta["floats"] * 2
    torch.testing.assert_close(mem.images(), res.synthetic.images().detach(), atol=2e-2, rtol=2e-2)
    assert mem.labels().shape == ((res.plan.images, 2) if labels == "soft" else (res.plan.images,))
    with safe_open(str(path), "pt") as fh:
        assert fh.metadata()["format"] == "lss-cl-memory/1"
    raw = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated or foreign"):
        load_memory(tmp_path / "cut.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(DataError, match="not an lss-cl memory"):
        load_memory(tmp_path / "foreign.safetensors")


@pytest.mark.parametrize("args,msg", [(["--rank", "40"], "rank: got 40"),
                                      (["--classes", "0,7"], "classes: got [0, 7]"),
                                      (["--ipc", "0.01"], "raise the budget"),
                                      (["--dataset", "mnist"], "dataset: got 'mnist'"),
                                      (["--set", "context_batch=4"], "context_batch: got 4")])
def test_distill_bad_input_exit_2_nothing_written(tree8, tmp_path, capsys, args, msg):
    out = tmp_path / "never"
    argv = ["distill", "--dataset", f"imagefolder:{tree8}", "--width", "4", "--depth", "1",
            "--experts", str(tmp_path / "ex"), "--out", str(out), "--device", "cpu", "--iterations", "1",
            *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]
    assert not out.exists() and not (tmp_path / "ex").exists()


def test_torchrun_two_cpu_processes_write_each_expert_once(tree8, tmp_path):
    store = tmp_path / "store"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LSS_CL_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "lss_cl", "experts", "--dataset", f"imagefolder:{tree8}", "--width", "4", "--depth", "1",
           "--num-experts", "4", "--experts", str(store), "--epochs", "1", "--device", "cpu", "--no-zca"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(store.rglob("expert_*.safetensors"))
    assert [f.name for f in files] == [f"expert_{i:03d}.safetensors" for i in range(4)]
    ranks = []
    for f in files:
        with safe_open(str(f), "pt") as fh:
            ranks.append(int(fh.metadata()["rank"]))
    assert ranks == [0, 1, 0, 1]
