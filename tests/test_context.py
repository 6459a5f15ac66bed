"""Past-aware distillation: earlier memories in the experts' data and in every student step."""

import hashlib
import json
from dataclasses import asdict

import pytest
import torch
from safetensors.torch import load_file

from lss_cl.config import DataConfig, ExpertConfig, ModelConfig
from lss_cl.context import Context, as_head_targets, context_targets, expert_training_set
from lss_cl.distill import Distiller, unroll, write_outputs
from lss_cl.experts import ExpertSpec, ExpertStore
from lss_cl.memory import load_memory
from lss_cl.models import ConvNet, FlatParams

from .test_distill import tiny_cfg, tree8  # noqa: F401  (fixture)


def context(n: int = 4, classes=(5, 7), seed: int = 0) -> Context:
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(n, len(classes), generator=g), 1)
    return Context(torch.randn(n, 3, 8, 8, generator=g), probs, list(classes))


def test_current_and_earlier_targets_share_one_head():
    hard = as_head_targets(torch.tensor([1, 0]), 2, 5)
    assert hard.tolist() == [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    soft = as_head_targets(torch.tensor([[0.25, 0.75]]), 2, 4)
    assert soft.tolist() == [[0.25, 0.75, 0.0, 0.0]]
    ctx = context()
    placed = context_targets(ctx, 3)
    assert placed.shape == (4, 5) and placed[:, :3].abs().sum() == 0
    torch.testing.assert_close(placed[:, 3:], ctx.targets)
    with pytest.raises(ValueError, match="do not agree"):
        Context(ctx.images, ctx.targets, [5])


def test_experts_see_the_context_at_an_equal_share():
    ctx = context(n=4)
    x, y = expert_training_set(torch.zeros(12, 3, 8, 8), torch.tensor([0, 1] * 6), ctx, current=2)
    assert x.shape[0] == 12 + 12 and y.shape == (24, 4)  # context repeated 3× to match 12 real
    torch.testing.assert_close(x[12:16], ctx.images)
    torch.testing.assert_close(x[20:24], ctx.images)
    torch.testing.assert_close(y[12:16, 2:], ctx.targets)
    assert y[:12].tolist() == [[1, 0, 0, 0], [0, 1, 0, 0]] * 6


def test_student_steps_mix_in_the_fixed_samples():
    torch.manual_seed(0)
    net = FlatParams(ConvNet(4, width=4, depth=1, im_size=(8, 8)))
    theta0 = net.flatten()
    x = torch.randn(6, 3, 8, 8, requires_grad=True)
    y = as_head_targets(torch.tensor([0, 1] * 3), 2, 4)
    ctx = context()
    lr = torch.tensor(0.05)
    # full batches: the only difference between the two students is the fixed samples
    plain = unroll(net, theta0, x, y, lr, 3, 6, None, torch.Generator().manual_seed(0), None)
    mixed = unroll(net, theta0, x, y, lr, 3, 6, None, torch.Generator().manual_seed(0), None,
                   (ctx.images, context_targets(ctx, 2), 2))
    assert not torch.allclose(plain, mixed)
    (grad,) = torch.autograd.grad(mixed.sum(), x)
    assert grad.abs().sum() > 0  # the synthetic images still shape the mixed steps


def test_spec_key_unchanged_without_context_and_distinct_with_it():
    spec = ExpertSpec.from_configs(DataConfig(), ModelConfig(), ExpertConfig())
    before = {k: v for k, v in asdict(spec).items() if k != "context"}  # stores written before
    assert spec.key() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    a = ExpertSpec.from_configs(DataConfig(), ModelConfig(), ExpertConfig(), context(seed=0))
    b = ExpertSpec.from_configs(DataConfig(), ModelConfig(), ExpertConfig(), context(seed=1))
    assert len({spec.key(), a.key(), b.key()}) == 3 and "earlier memories" in a.describe()


def test_past_aware_distillation_end_to_end(tree8, tmp_path):  # noqa: F811
    cfg = tiny_cfg(tree8, tmp_path, context_batch=2, labels="soft")
    ctx = context(n=4, classes=(5, 7))
    result = Distiller(cfg, progress=False, context=ctx).run()
    spec = ExpertSpec.from_configs(cfg.data, cfg.model, cfg.experts, ctx)
    trajectory = load_file(str(ExpertStore(cfg.experts.store).path(spec, 0)))["trajectory"]
    widened = FlatParams(ConvNet(2 + 2, width=4, depth=1, im_size=(8, 8))).flatten().numel()
    assert trajectory.shape[1] == widened  # one head over 2 current + 2 earlier classes
    assert len(result.history["loss"]) == cfg.iterations
    mem = load_memory(write_outputs(cfg, result))
    assert mem.labels().shape[1] == 2  # the stored labels cover this experience's classes only
    with pytest.raises(ValueError, match="context_batch > 0"):
        Distiller(tiny_cfg(tree8, tmp_path / "b"), progress=False, context=ctx)
