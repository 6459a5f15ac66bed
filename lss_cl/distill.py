"""The MTT / MTT-LSS distillation loop (Algorithm 1 of the paper).

Per iteration: pick an expert and a start epoch t (progressive schedule), start the student at
θ_t, take ``syn_steps`` SGD steps on minibatches of the (reconstructed) synthetic images (plus
fixed earlier-memory samples in a past-aware continual run, see :mod:`lss_cl.context`) with
DSA, soft-label cross-entropy and the learnable step size, then minimise
``||θ_N − θ_{t+M}||² / ||θ_t − θ_{t+M}||²`` w.r.t. the factors (or pixels), label logits and
step size. The student is a flat parameter vector run through ``torch.func.functional_call``;
the unrolled graph grows linearly with ``syn_steps``. Checkpoints make a killed run resume
exactly (same parameters as an uninterrupted run with the same seed).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import yaml
from tqdm.auto import tqdm

from .augment import DSA
from .budget import Shape, fullrank_floats, ipc_budget_floats, solve_lowrank
from .config import DistillConfig
from .context import Context, as_head_targets, context_targets
from .errors import ConfigError, LssError
from .experts import ExpertSpec, ExpertStore, train_experts
from .memory import memory_bytes, memory_metadata, save_memory
from .models import FlatParams
from .pipeline import PreparedData, make_model, prepare_data
from .runtime import atomic_write_json, atomic_write_text, resolve_device
from .synthetic import (FullRankSet, Labels, LowRankSet, SyntheticSet, balanced_classes, noise_init,
                        sample_real, svd_init)


class DistillDiverged(LssError):
    """The matching loss or step size kept coming out non-finite."""


def max_start_at(it: int, cfg: DistillConfig) -> int:
    """``MaxStart_it = min(MaxStart, it/Iterations·MaxStart + δ)`` (Eq. 9), floored."""
    if not cfg.progressive:
        return cfg.max_start_epoch
    frac = it / max(cfg.iterations, 1)
    return int(min(cfg.max_start_epoch, frac * cfg.max_start_epoch + cfg.delta))


def start_epoch(it: int, cfg: DistillConfig, gen: torch.Generator) -> int:
    """Progressive: uniform in [max(0, MaxStart_it − w), MaxStart_it] (Eq. 10); else MTT's
    ``randint(0, MaxStart)`` inclusive."""
    hi = max_start_at(it, cfg)
    lo = max(0, math.ceil(hi - cfg.window)) if cfg.progressive else 0
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


def unroll(net: FlatParams, theta0: torch.Tensor, images: torch.Tensor, targets: torch.Tensor,
           lr: torch.Tensor, steps: int, batch: int, dsa: DSA | None, gen: torch.Generator,
           dsa_gen: torch.Generator | None,
           fixed: tuple[torch.Tensor, torch.Tensor, int] | None = None) -> torch.Tensor:
    """θ_N after ``steps`` differentiable SGD steps from θ_0 on minibatches of the images;
    ``fixed`` = (images, targets, count) adds ``count`` random fixed samples to every step."""
    theta = theta0.detach().requires_grad_(True)
    n = images.shape[0]
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if batch >= n:
            x, y = images, targets
        else:
            if order.numel() < batch:
                order = torch.cat([order, torch.randperm(n, generator=gen)])
            idx, order = order[:batch].to(images.device), order[batch:]
            x, y = images[idx], targets[idx]
        if fixed is not None:
            fx, fy, count = fixed
            j = torch.randint(fx.shape[0], (count,), generator=gen).to(fx.device)
            x, y = torch.cat([x, fx[j]]), torch.cat([y, fy[j]])
        if dsa is not None:
            x = dsa(x, generator=dsa_gen)
        ce = F.cross_entropy(net(theta, x), y)
        (grad,) = torch.autograd.grad(ce, theta, create_graph=True)
        theta = theta - lr * grad
    return theta


def matching_loss(theta_n: torch.Tensor, start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (theta_n - target).pow(2).sum() / (start - target).pow(2).sum()


@dataclass
class Plan:
    """How many images the budget buys and what they cost."""

    method: str
    images: int
    floats: int
    budget_floats: int
    bytes: int
    rank: int | None = None
    groups: int | None = None
    per_group: int | None = None


def make_plan(cfg: DistillConfig, shape: Shape) -> Plan:
    budget = cfg.budget_floats if cfg.budget_floats is not None else ipc_budget_floats(shape, cfg.ipc or 0)
    soft = cfg.labels == "soft"
    if cfg.method == "lss":
        p = solve_lowrank(shape, budget, cfg.rank, cfg.groups, soft, cfg.storage_dtype)
        return Plan("lss", p.images, p.floats, budget, p.bytes, p.rank, p.groups, p.per_group)
    # plain MTT keeps IPC images per class (hard labels are free; soft ones are counted)
    n = int(round((cfg.ipc or 0) * shape.classes)) if cfg.ipc else budget // shape.pixels
    if n < 1:
        raise ConfigError(f"budget: got {budget} floats; less than one {shape.pixels}-float image")
    floats = fullrank_floats(shape, n, soft)
    return Plan("mtt", n, floats, budget, memory_bytes(floats, cfg.storage_dtype))


def build_synthetic(cfg: DistillConfig, plan: Plan, data: PreparedData, expert_final: torch.Tensor | None,
                    gen: torch.Generator, head: int | None = None) -> SyntheticSet:
    """Initialise from real images (rank-r projections for LSS) or noise; labels per config
    (expert logits come from a ``head``-way expert, of which the first columns are ours)."""
    c, h, w = data.arrays.image_shape
    shape = Shape(c, h, w, data.num_classes)
    classes = balanced_classes(plan.images, shape.classes)
    real = sample_real(data.train_x, data.train_y, classes, gen)
    if cfg.method == "lss":
        if cfg.init == "real":
            U, S, V = svd_init(real, plan.groups, plan.rank)
        else:
            U, S, V = noise_init(plan.images, shape, plan.groups, plan.rank, gen)
        init_images = LowRankSet(U, S, V, Labels(classes, shape.classes, False), shape).images().detach()
    else:
        init_images = real if cfg.init == "real" else torch.randn(real.shape, generator=gen)
    logits = None
    if cfg.labels == "soft":
        if cfg.label_init == "expert":
            if expert_final is None:
                raise ConfigError("label_init: 'expert' needs an expert trajectory")
            net = make_model(cfg.model, data, head)
            with torch.no_grad():
                logits = FlatParams(net)(expert_final, init_images)[:, : shape.classes]
        elif cfg.label_init == "random":
            logits = torch.randn(plan.images, shape.classes, generator=gen)
        else:  # "class": 0.9 on the sampled class
            logits = F.one_hot(classes, shape.classes).float() * math.log(0.9 * (shape.classes - 1) / 0.1)
    labels = Labels(classes, shape.classes, cfg.labels == "soft", logits)
    if cfg.method == "lss":
        return LowRankSet(U, S, V, labels, shape)
    return FullRankSet(init_images, labels, shape)


def _atomic_torch_save(obj: dict, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class DistillResult:
    synthetic: SyntheticSet
    syn_lr: float
    plan: Plan
    data: PreparedData
    out: Path
    history: dict[str, list] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    nonfinite: int = 0


class Distiller:
    """Runs one distillation described by a :class:`DistillConfig` into ``cfg.out``."""

    def __init__(self, cfg: DistillConfig, progress: bool = True, data: PreparedData | None = None,
                 context: Context | None = None):
        if context is not None and cfg.context_batch == 0:
            raise ValueError("a context needs distill.context_batch > 0 images per student step")
        self.cfg = cfg
        self.progress = progress
        self.device = resolve_device(cfg.device)
        self.data = data
        self.context = context

    def run(self, resume: bool = False,
            on_iteration: Callable[[int, float], None] | None = None) -> DistillResult:
        """Distil; the caller's global RNG state is left untouched (a CL run stays reproducible
        whether its experts were trained now or found in the store)."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return self._run(resume, on_iteration)

    def _run(self, resume: bool, on_iteration: Callable[[int, float], None] | None) -> DistillResult:
        cfg, device = self.cfg, self.device
        out = Path(cfg.out)
        ckpt_path = out / "checkpoint.pt"
        if ckpt_path.exists() and not resume:
            raise ConfigError(f"out: {out} already holds a distillation run; pass --resume to continue "
                              "it or choose another --out")
        torch.manual_seed(cfg.seed)
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        data = self.data or prepare_data(cfg.data, self.progress)
        times["data"] = time.perf_counter() - t0

        c, h, w = data.arrays.image_shape
        plan = make_plan(cfg, Shape(c, h, w, data.num_classes))  # bad budgets fail before any work

        epochs = cfg.max_start_epoch + cfg.expert_epochs
        context = self.context
        head = context.head(data.num_classes) if context is not None else None
        spec = ExpertSpec.from_configs(cfg.data, cfg.model, cfg.experts, context)
        t0 = time.perf_counter()
        train_experts(data, cfg.model, cfg.experts, spec, epochs, device, self.progress, context)
        trajectories = ExpertStore(cfg.experts.store).load(spec, cfg.experts.num_experts, epochs)
        times["experts"] = time.perf_counter() - t0
        gen = torch.Generator().manual_seed(cfg.seed)
        syn = build_synthetic(cfg, plan, data, trajectories[0, -1], gen, head).to(device)
        net = FlatParams(make_model(cfg.model, data, head).to(device))
        fixed = None if context is None else (
            context.images.to(device), context_targets(context, data.num_classes).to(device), cfg.context_batch)
        matcher = Matcher(cfg, syn, net, gen, device, fixed)
        history: dict[str, list] = {"loss": [], "syn_lr": [], "start_epoch": [], "expert": []}
        first, nonfinite, streak = 0, 0, 0
        if resume and ckpt_path.exists():
            state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            matcher.load_state_dict(state["matcher"])
            history, first, nonfinite = state["history"], int(state["iteration"]), int(state["nonfinite"])
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))

        def checkpoint(iteration: int) -> None:
            _atomic_torch_save({"iteration": iteration, "matcher": matcher.state_dict(),
                                "nonfinite": nonfinite, "history": history}, ckpt_path)

        t0 = time.perf_counter()
        bar = tqdm(range(first, cfg.iterations), desc=f"distill {cfg.method}", disable=not self.progress,
                   initial=first, total=cfg.iterations)
        for it in bar:
            loss, ok, t, e = matcher.iterate(it, trajectories)
            streak = 0 if ok else streak + 1
            nonfinite += 0 if ok else 1
            if streak >= cfg.max_nonfinite:
                checkpoint(it)
                raise DistillDiverged(f"distill: {streak} iterations in a row gave a non-finite loss or "
                                      f"step size (last loss {loss:.3g}); lower lr_img/lr_lr "
                                      f"(now {cfg.lr_img}, {cfg.lr_lr}) and --resume")
            history["loss"].append(loss)
            history["syn_lr"].append(matcher.lr)
            history["start_epoch"].append(t)
            history["expert"].append(e)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{matcher.lr:.4g}", start=t, skipped=nonfinite)
            if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations:
                checkpoint(it + 1)
            if on_iteration is not None:
                on_iteration(it, loss)
        times["distill"] = time.perf_counter() - t0
        if first >= cfg.iterations:
            checkpoint(cfg.iterations)
        return DistillResult(syn, matcher.lr, plan, data, out, history, times, nonfinite)


class Matcher:
    """The learnable state of one distillation and its update (Algorithm 1, lines 3–14)."""

    def __init__(self, cfg: DistillConfig, syn: SyntheticSet, net: FlatParams, gen: torch.Generator,
                 device: torch.device, fixed: tuple[torch.Tensor, torch.Tensor, int] | None = None):
        self.cfg, self.syn, self.net, self.gen, self.device = cfg, syn, net, gen, device
        self.fixed = fixed  # earlier memories mixed into every student step (past-aware)
        self.syn_lr = torch.tensor(cfg.lr_teacher, device=device, requires_grad=True)
        self.dsa = DSA() if cfg.experts.dsa else None
        self.dsa_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        self.batch = cfg.batch_syn or len(syn)
        mom = cfg.optimizer_momentum
        self.opts = {"lr": torch.optim.SGD([self.syn_lr], lr=cfg.lr_lr, momentum=mom)}
        if isinstance(syn, LowRankSet):
            basis_lr = cfg.lr_basis if cfg.lr_basis is not None else cfg.lr_img
            self.opts["basis"] = torch.optim.SGD([syn.S], lr=basis_lr, momentum=mom)
            mapper_lr = cfg.lr_mapper if cfg.lr_mapper is not None else basis_lr
            self.opts["mappers"] = torch.optim.SGD([syn.U, syn.V], lr=mapper_lr, momentum=mom)
        else:
            self.opts["images"] = torch.optim.SGD(syn.image_parameters(), lr=cfg.lr_img, momentum=mom)
        if syn.label_set.soft:
            self.opts["labels"] = torch.optim.SGD([syn.label_set.logits], lr=cfg.lr_label, momentum=mom)

    @property
    def lr(self) -> float:
        return float(self.syn_lr.detach())

    def iterate(self, it: int, trajectories: torch.Tensor) -> tuple[float, bool, int, int]:
        """One matching update; returns (loss, applied?, start epoch, expert index). A
        non-finite loss, gradient or step size skips the update."""
        cfg = self.cfg
        t = start_epoch(it, cfg, self.gen)
        e = int(torch.randint(trajectories.shape[0], (1,), generator=self.gen))
        start = trajectories[e, t].to(self.device)
        target = trajectories[e, t + cfg.expert_epochs].to(self.device)
        targets = self.syn.labels()
        if self.fixed is not None:
            targets = as_head_targets(targets, self.syn.shape.classes, self.fixed[1].shape[1])
        theta = unroll(self.net, start, self.syn.images(), targets, self.syn_lr,
                       cfg.syn_steps, self.batch, self.dsa, self.gen, self.dsa_gen, self.fixed)
        loss = matching_loss(theta, start, target)
        for opt in self.opts.values():
            opt.zero_grad(set_to_none=True)
        ok = bool(torch.isfinite(loss))
        if ok:
            loss.backward()
            params = [p for o in self.opts.values() for g in o.param_groups for p in g["params"]]
            ok = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)
        if ok:
            previous_lr = self.syn_lr.detach().clone()
            for opt in self.opts.values():
                opt.step()
            if not math.isfinite(self.lr) or self.lr <= 0:
                with torch.no_grad():  # a step size ≤ 0 would un-train the student
                    self.syn_lr.copy_(previous_lr)
                ok = False
        return float(loss.detach()), ok, t, e

    def state_dict(self) -> dict:
        return {"synthetic": self.syn.state_dict(), "syn_lr": self.syn_lr.detach(),
                "gen": self.gen.get_state(), "dsa_gen": self.dsa_gen.get_state(),
                "optimizers": {k: o.state_dict() for k, o in self.opts.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.syn.load_state_dict(state["synthetic"])
        with torch.no_grad():
            self.syn_lr.copy_(state["syn_lr"])
        for name, opt in self.opts.items():
            opt.load_state_dict(state["optimizers"][name])
        self.gen.set_state(state["gen"])
        self.dsa_gen.set_state(state["dsa_gen"])


def memory_tensors(result: DistillResult) -> tuple[str, dict[str, torch.Tensor]]:
    """The tensors of the memory format for a finished distillation."""
    syn = result.synthetic
    tensors: dict[str, torch.Tensor] = {"lr": torch.tensor(result.syn_lr)}
    if isinstance(syn, LowRankSet):
        tensors.update(U=syn.U, S=syn.S, V=syn.V)
    else:
        tensors["images"] = syn.images()
    if syn.label_set.soft:
        tensors["label_logits"] = syn.label_set.logits
    else:
        tensors["labels"] = syn.label_set.hard
    return syn.kind, tensors


def write_outputs(cfg: DistillConfig, result: DistillResult, evaluation: dict | None = None,
                  memory_path: Path | None = None) -> Path:
    """``memory.safetensors`` (or ``memory_path``) + ``report.json`` in the run folder."""
    kind, tensors = memory_tensors(result)
    plan = result.plan
    meta = memory_metadata(result.data, plan.floats, memory_bytes(plan.floats, cfg.storage_dtype),
                           plan.rank or 0, plan.groups or 0, plan.per_group or 0)
    path = save_memory(memory_path or result.out / "memory.safetensors", kind, tensors, meta,
                       cfg.storage_dtype)
    iters = len(result.history.get("loss", []))
    report = {"config": dataclasses.asdict(cfg), "plan": dataclasses.asdict(result.plan),
              "syn_lr": result.syn_lr, "nonfinite_skipped": result.nonfinite,
              "seconds": result.seconds,
              "seconds_per_iteration": result.seconds.get("distill", 0.0) / max(iters, 1),
              "history": result.history, "evaluation": evaluation}
    atomic_write_json(result.out / "report.json", report)
    return path
