"""Continual learning: storage policies, replay plugin, runner, resume, scenario validation.

Most tests run scenarios/smoke.yaml (2 experiences × 2 CIFAR-10 classes) on real data."""

import json
import math
from pathlib import Path

import pytest
import torch

from lss_cl.avalanche import SoftReplayPlugin, shrink
from lss_cl.cli import main
from lss_cl.memory import load_memory
from lss_cl.runner import Run
from lss_cl.scenario import load_scenario

SMOKE = Path(__file__).parent.parent / "scenarios" / "smoke.yaml"


def smoke(**over):
    return load_scenario(SMOKE, [f"{k}={v}" for k, v in over.items()])


@pytest.fixture(scope="module")
def lss_run(tmp_path_factory):
    import os
    if not os.environ.get("LSS_CL_DATA"):
        pytest.skip("real CIFAR data: set LSS_CL_DATA (CI does)")
    root = tmp_path_factory.mktemp("runs")
    metrics = Run(smoke(**{"learner.regularizer": "lwf"}), "lss", 0, root, progress=False).execute()
    return root, metrics


def test_lss_run_writes_run_folder_with_budgeted_soft_memories(lss_run, real_data_root):
    root, m = lss_run
    run = root / "smoke" / "replay-lss-seed0"
    for name in ("metrics.json", "progress.json", "config.yaml", "memory/exp_00.safetensors",
                 "memory/exp_01.safetensors", "logs/csv/training_results.csv"):
        assert (run / name).exists(), name
    assert list((run / "logs" / "tb").iterdir())
    assert json.loads((run / "progress.json").read_text())["status"] == "finished"
    assert len(m["accuracy_matrix"]) == 2 and len(m["accuracy_matrix"][0]) == 2
    assert m["classes_per_experience"] == [[0, 1], [2, 3]]
    for rec in m["memory"]:
        assert rec["kind"] == "lowrank" and 0 < rec["bytes"] <= rec["budget_bytes"] == 12288
        mem = load_memory(rec["file"])
        probs = mem.labels()
        assert probs.is_floating_point() and torch.allclose(probs.sum(1), torch.ones(len(probs)))
        assert mem.meta["storage_dtype"] == "float16" and mem.meta["bytes"] == rec["bytes"]
    assert set(m["seconds"]) == {"train", "experts", "distill", "eval", "total"}
    assert m["seconds"]["distill"] > 0 and m["seconds"]["experts"] > 0


def test_policy_replays_soft_labels_and_shrinks_to_budget(lss_run, real_data_root):
    root, m = lss_run
    mem = load_memory(m["memory"][1]["file"])
    half = shrink(mem, 6200)  # one group of r=4 factors costs 6,136 bytes in float16
    assert half.meta["bytes"] == 6136 and half.meta["groups"] == 1
    assert half.images().shape[0] == half.labels().shape[0] == mem.num_images // 2
    torch.testing.assert_close(half.images(), mem.images()[: mem.num_images // 2])
    assert shrink(mem, 6000).num_images == 0


def test_distilled_buffer_hands_earlier_memories_to_the_distiller(lss_run, tmp_path, real_data_root):
    import dataclasses

    from lss_cl.avalanche import DistilledBuffer
    from lss_cl.transforms import Normalizer

    _, m = lss_run
    cfg = smoke().distill
    norm = Normalizer((0.5,) * 3, (0.25,) * 3)
    off = DistilledBuffer(12288, tmp_path, norm, 10, cfg, data_for=None, work_dir=tmp_path)
    on = DistilledBuffer(12288, tmp_path, norm, 10, dataclasses.replace(cfg, context_batch=8),
                         data_for=None, work_dir=tmp_path)
    assert on.context() is None  # nothing earlier at the first experience
    for buf in (off, on):
        for rec in m["memory"]:
            buf.add_file(Path(rec["file"]))
    assert off.context() is None
    ctx = on.context()
    x, p = on.replay_tensors()
    assert ctx.classes == [0, 1, 2, 3] and ctx.targets.shape == (x.shape[0], 4)
    torch.testing.assert_close(ctx.images, x)
    torch.testing.assert_close(ctx.targets, p[:, :4])
    assert p[:, 4:].abs().sum() == 0


def test_resume_after_kill_between_experiences_gives_same_metrics(lss_run, tmp_path, monkeypatch,
                                                                   real_data_root):
    _, full = lss_run
    original = Run._save_state

    def save_then_die(self, done):
        original(self, done)
        if done == 1:
            raise KeyboardInterrupt

    cfg = smoke(**{"learner.regularizer": "lwf"})
    monkeypatch.setattr(Run, "_save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        Run(cfg, "lss", 0, tmp_path, progress=False).execute()
    progress = json.loads((tmp_path / "smoke" / "replay-lss-seed0" / "progress.json").read_text())
    assert progress["status"] == "failed"
    monkeypatch.setattr(Run, "_save_state", original)
    assert main(["run", str(SMOKE), "--strategy", "lss", "--out", str(tmp_path),
                 "--set", "learner.regularizer=lwf"]) == 2  # refuses to overwrite without --resume
    resumed = Run(cfg, "lss", 0, tmp_path, progress=False).execute(resume=True)
    assert resumed["accuracy_matrix"] == full["accuracy_matrix"]
    assert resumed["final_average_accuracy"] == full["final_average_accuracy"]


def test_replay_batches_mix_current_and_memory_samples():
    class Policy:
        def replay_tensors(self):
            return torch.full((5, 3, 4, 4), 7.0), torch.tensor([[0.0, 0.2, 0.8]] * 5)

    class Strategy:
        device = torch.device("cpu")
        mbatch = [torch.zeros(4, 3, 4, 4), torch.tensor([0, 1, 0, 1]), torch.zeros(4, dtype=torch.long)]

    plugin, s = SoftReplayPlugin(Policy(), batch_size_mem=3), Strategy()
    plugin.before_training_exp(s)
    plugin.before_training_iteration(s)
    x, y, t = s.mbatch
    assert x.shape[0] == 7 and (x[:4] == 0).all() and (x[4:] == 7).all()
    assert torch.equal(y[:4], torch.eye(3)[[0, 1, 0, 1]])
    assert torch.allclose(y[4:], torch.tensor([0.0, 0.2, 0.8]).expand(3, 3))
    assert t.shape[0] == 7


def test_ace_loss_keeps_current_samples_off_old_logits():
    class Policy:
        memories = ["experience 0"]

        def replay_tensors(self):
            return torch.full((6, 3, 4, 4), 7.0), torch.eye(4)[[0, 1, 0, 1, 0, 1]]

    class Strategy:
        device = torch.device("cpu")
        mbatch = [torch.zeros(4, 3, 4, 4), torch.tensor([2, 3, 2, 3]), torch.zeros(4, dtype=torch.long)]

    plugin, s = SoftReplayPlugin(Policy(), batch_size_mem=4, loss="ace"), Strategy()
    plugin.before_training_exp(s)
    plugin.before_training_iteration(s)
    x, y, _ = s.mbatch
    # replayed part: one earlier experience + the current one, 2 samples each
    assert x.shape[0] == 8 and (x[4:6] == 7).all() and (x[6:] == 0).all()
    assert torch.equal(y[6:], y[:2]) and torch.equal(y[:4].argmax(1), torch.tensor([2, 3, 2, 3]))
    out = torch.zeros(8, 4, requires_grad=True)
    loss = plugin.criterion(out, y)
    loss.backward()
    assert (out.grad[:4, :2] == 0).all() and (out.grad[:4, 2:] != 0).all()  # current: own classes only
    assert (out.grad[4:] != 0).all()  # replayed: all classes
    torch.testing.assert_close(loss, torch.tensor((math.log(2) + math.log(4)) / 2))
    plugin.after_training_iteration(s)  # outside training iterations: plain cross-entropy
    torch.testing.assert_close(plugin.criterion(out, y), torch.tensor(math.log(4)))
    with pytest.raises(ValueError, match="loss: got 'mse'"):
        SoftReplayPlugin(Policy(), loss="mse")


def test_runner_gives_the_replay_criterion_to_the_strategy(tmp_path, real_data_root):
    run = Run(smoke(**{"learner.replay_loss": "ace"}), "lss", 0, tmp_path, progress=False)
    run._build()
    replay = next(p for p in run.strategy.plugins if isinstance(p, SoftReplayPlugin))
    assert replay.criterion.loss == "ace" and run.strategy._criterion is replay.criterion


@pytest.mark.parametrize("strategy,protocol,loss", [("replay", "replay", "ace"), ("naive", "replay", "ce"),
                                                    ("replay", "retrain", "ce"), ("mtt", "retrain", "ce")])
def test_other_strategies_and_protocols(tmp_path, real_data_root, strategy, protocol, loss):
    m = Run(smoke(protocol=protocol, **{"learner.replay_loss": loss}), strategy, 0, tmp_path,
            progress=False).execute()
    assert m["protocol"] == protocol and len(m["average_accuracy"]) == 2
    for rec in m["memory"]:
        assert rec["bytes"] <= rec["budget_bytes"]
    if strategy == "replay":
        assert [r["images"] for r in m["memory"]] == [4, 4] and m["memory"][0]["bytes"] == 4 * 3072


def test_memory_buffer_works_with_avalanche_replay_plugin(tmp_path, real_data_root):
    from avalanche.training.plugins import ReplayPlugin

    run = Run(smoke(), "replay", 0, tmp_path, progress=False)
    run._build()
    plugin = ReplayPlugin(mem_size=run.policy.max_size, storage_policy=run.policy)
    run.strategy.plugins = [p for p in run.strategy.plugins if not isinstance(p, SoftReplayPlugin)] + [plugin]
    for exp in run.benchmark.train_stream:
        run.strategy.train(exp)
    assert len(run.policy.buffer) == 8 and len(run.policy.files) == 2


@pytest.mark.parametrize("override,msg", [("strategies=[sgd]", "strategies: got ['sgd']"),
                                          ("memory.budget_bytes=0", "memory.budget_bytes: got 0"),
                                          ("experiences=5", "experiences: got 5")])
def test_scenario_validation_one_line_exit_2(capsys, override, msg):
    argv = ["run", str(SMOKE), "--set", override]
    if override.startswith("memory"):
        argv += ["--set", "memory.budget_images=null"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err


def test_compare_prints_mean_std_table(lss_run, capsys, real_data_root):
    root, m = lss_run
    assert main(["compare", str(root)]) == 0
    out = capsys.readouterr().out
    acc = f"{100 * m['final_average_accuracy']:.2f} ± 0.00"
    assert "| smoke | replay | lss | 1 | " + acc in out
    assert main(["compare", str(root / "nothing-here")]) == 2
