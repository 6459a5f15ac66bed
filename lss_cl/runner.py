"""``lss-cl run``: one (scenario, strategy, protocol, seed) continual-learning run.

Protocol ``replay``: an Avalanche strategy (``Naive``; ``Cumulative`` for ``joint``) learns each
experience on its data plus the replayed memory of earlier ones. Protocol ``retrain``: after each
experience a fresh learner is trained only on all memories so far. After every experience the
run folder gets the accuracy-matrix row, memory files, ``progress.json`` and a checkpoint
(state_dicts, RNG states), so ``--resume`` continues after a kill with the same final metrics.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
from avalanche.benchmarks.utils.classification_dataset import _make_taskaware_tensor_classification_dataset
from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
from avalanche.logging import CSVLogger, TensorboardLogger
from avalanche.training.plugins import EvaluationPlugin, LwFPlugin
from avalanche.training.supervised import Cumulative, Naive

from .augment import DSA
from .avalanche import DistilledBuffer, DSAPlugin, PerExperienceMemoryBuffer, RandomExemplarBuffer, SoftReplayPlugin
from .data import split_classes
from .errors import ConfigError
from .models import build_model
from .pipeline import PreparedData, prepare_data
from .runtime import atomic_write_json, atomic_write_text, resolve_device, seed_everything
from .scenario import ScenarioConfig
from .train import evaluate, train_model

MEMORY_STRATEGIES = ("replay", "mtt", "lss")


def run_dir(root: str | Path, cfg: ScenarioConfig, strategy: str, seed: int) -> Path:
    return Path(root) / cfg.name / f"{cfg.protocol}-{strategy}-seed{seed}"


def budget_bytes(cfg: ScenarioConfig, data: PreparedData) -> int:
    c, h, w = data.arrays.image_shape
    if cfg.memory.budget_bytes is not None:
        return cfg.memory.budget_bytes
    return int(round((cfg.memory.budget_images or 0) * c * h * w))


def _rng_state() -> dict:
    """Global RNG states as plain tensors/tuples, so the checkpoint loads with weights_only."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
            "numpy_rest": (kind, int(pos), int(has_gauss), float(gauss)), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, pos, has_gauss, gauss = state["numpy_rest"]
    np.random.set_state((kind, state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])


class Run:
    """State of one run; ``execute()`` walks the experiences from wherever it left off."""

    def __init__(self, cfg: ScenarioConfig, strategy: str, seed: int, out_root: str | Path,
                 progress: bool = True):
        if strategy not in ("naive", "joint", *MEMORY_STRATEGIES):
            raise ConfigError(f"--strategy: got {strategy!r}; allowed: naive, joint, replay, mtt, lss")
        self.cfg, self.strategy_name, self.seed, self.progress = cfg, strategy, seed, progress
        self.dir = run_dir(out_root, cfg, strategy, seed)
        self.experts_root = Path(out_root) / cfg.name / "experts"
        self.device = resolve_device(cfg.device)
        self.seconds = {"train": 0.0, "experts": 0.0, "distill": 0.0, "eval": 0.0, "total": 0.0}
        self.matrix: list[list[float]] = []

    # ------------------------------------------------------------------ set-up
    def _progress(self, status: str, phase: str, experience: int, **extra: Any) -> None:
        atomic_write_json(self.dir / "progress.json", {
            "status": status, "phase": phase, "experience": experience,
            "experiences": self.cfg.experiences, "scenario": self.cfg.name,
            "strategy": self.strategy_name, "protocol": self.cfg.protocol, "seed": self.seed,
            "updated": time.time(), **extra})

    def _build(self) -> None:
        """Global label space: the learner's head covers every class of the dataset, and a
        scenario restricted to ``data.classes`` splits only those (global ids) into experiences."""
        cfg = self.cfg
        seed_everything(self.seed)
        self.data = prepare_data(dataclasses.replace(cfg.data, classes=None), progress=self.progress)
        pool = list(cfg.data.classes) if cfg.data.classes is not None else list(range(self.data.num_classes))
        local = split_classes(len(pool), cfg.experiences, seed=cfg.class_order_seed, order=cfg.class_order)
        self.splits = [[pool[c] for c in exp] for exp in local]
        order = [c for exp in self.splits for c in exp]
        part = self.data.subset(sorted(pool)) if cfg.data.classes is not None else self.data
        ids = torch.tensor(sorted(pool))

        def dataset(x: torch.Tensor, y: torch.Tensor) -> Any:
            y = ids[y] if cfg.data.classes is not None else y  # back to global ids
            return _make_taskaware_tensor_classification_dataset(x, y, targets=y.tolist(), task_labels=0)

        self.benchmark = nc_benchmark(dataset(part.train_x, part.train_y), dataset(part.test_x, part.test_y),
                                      cfg.experiences, task_labels=False, shuffle=False,
                                      fixed_class_order=order)
        self.budget = budget_bytes(cfg, self.data)
        self.policy = self._policy()
        self.model = self._model()
        self.strategy = self._strategy() if cfg.protocol == "replay" else None

    def _model(self) -> torch.nn.Module:
        c, h, w = self.data.arrays.image_shape
        lc = self.cfg.learner
        return build_model(lc.arch, self.data.num_classes, c, lc.width, lc.depth, None, (h, w))

    def _policy(self) -> PerExperienceMemoryBuffer | None:
        name, cfg = self.strategy_name, self.cfg
        if name not in MEMORY_STRATEGIES:
            return None
        memory_dir = self.dir / "memory"
        if name == "replay":
            c, h, w = self.data.arrays.image_shape
            return RandomExemplarBuffer(self.budget, memory_dir, self.data.normalizer,
                                        self.data.num_classes, c * h * w, self.data.subset)
        distill = dataclasses.replace(
            cfg.distill, method=name, data=cfg.data, device=cfg.device, storage_dtype=cfg.memory.storage_dtype,
            experts=dataclasses.replace(cfg.distill.experts, store=str(self.experts_root), seed=self.seed),
            labels="hard" if name == "mtt" else cfg.distill.labels)
        return DistilledBuffer(self.budget, memory_dir, self.data.normalizer, self.data.num_classes,
                               distill, self.data.subset, self.dir / "distill", progress=self.progress)

    def _strategy(self) -> Any:
        lc = self.cfg.learner
        plugins: list[Any] = []
        criterion: Any = torch.nn.CrossEntropyLoss()
        if self.policy is not None:
            replay = SoftReplayPlugin(self.policy, lc.replay_batch_size, seed=self.seed, loss=lc.replay_loss)
            plugins.append(replay)
            criterion = replay.criterion
        if lc.dsa:
            plugins.append(DSAPlugin(seed=self.seed))
        if lc.regularizer == "lwf":
            plugins.append(LwFPlugin(alpha=lc.lwf_alpha, temperature=lc.lwf_temperature))
        logs = self.dir / "logs"
        evaluator = EvaluationPlugin(accuracy_metrics(epoch=True), loss_metrics(epoch=True),
                                     loggers=[CSVLogger(str(logs / "csv")), TensorboardLogger(str(logs / "tb"))])
        cls = Cumulative if self.strategy_name == "joint" else Naive
        optimizer = torch.optim.SGD(self.model.parameters(), lr=lc.lr, momentum=lc.momentum,
                                    weight_decay=lc.weight_decay)
        return cls(model=self.model, optimizer=optimizer, criterion=criterion,
                   train_mb_size=lc.batch_size, train_epochs=lc.epochs, eval_mb_size=self.cfg.eval_batch_size,
                   device=self.device, plugins=plugins, evaluator=evaluator)

    # ------------------------------------------------------------------ phases
    def _learn_replay_protocol(self, i: int) -> None:
        exp = self.benchmark.train_stream[i]
        start = time.perf_counter()
        self.strategy.train(exp, num_workers=0)
        elapsed = time.perf_counter() - start
        self._account_memory_time(elapsed)

    def _account_memory_time(self, elapsed: float) -> None:
        spent = getattr(self.policy, "last_seconds", {}) if self.policy is not None else {}
        experts, distill = spent.get("experts", 0.0), spent.get("distill", 0.0) + spent.get("data", 0.0)
        self.seconds["experts"] += experts
        self.seconds["distill"] += distill
        self.seconds["train"] += max(elapsed - experts - distill, 0.0)
        if self.policy is not None:
            self.policy.last_seconds = {}

    def _learn_retrain_protocol(self, i: int) -> None:
        exp = self.benchmark.train_stream[i]
        start = time.perf_counter()
        if self.policy is not None:
            self._progress("running", "memory", i)
            self.policy.post_adapt(None, exp)
            x, y = self.policy.replay_tensors()
        else:
            seen = [c for s in self.splits[: i + 1] for c in s] if self.strategy_name == "joint" else self.splits[i]
            part = self.data.subset(seen)
            x, y = part.train_x, torch.tensor(seen)[part.train_y]
        self._account_memory_time(time.perf_counter() - start)
        self._progress("running", "train", i)
        rc = self.cfg.retrain
        torch.manual_seed(self.seed * 1000 + i)
        self.model = self._model()
        t0 = time.perf_counter()
        train_model(self.model, x, y, epochs=rc.epochs, lr=rc.lr or 0.01, batch_size=rc.batch_size,
                    momentum=0.9, weight_decay=5e-4, dsa=DSA(seed=self.seed + i) if self.cfg.learner.dsa else None,
                    device=self.device, seed=self.seed + i, progress=f"retrain {i}" if self.progress else False)
        self.seconds["train"] += time.perf_counter() - t0

    def _evaluate(self) -> list[float]:
        row = []
        for classes in self.splits:
            row.append(evaluate(self.model, self.data.test_x, self.data.test_y, classes=classes,
                                batch_size=self.cfg.eval_batch_size, device=self.device))
        return row

    # ------------------------------------------------------------------ checkpoint
    def _save_state(self, done: int) -> None:
        state = {"done": done, "model": self.model.state_dict(), "matrix": self.matrix,
                 "seconds": self.seconds, "rng": _rng_state(),
                 "memory_files": [str(f) for f in (self.policy.files if self.policy else [])]}
        if self.strategy is not None:
            state["optimizer"] = self.strategy.optimizer.state_dict()
            for p in self.strategy.plugins:
                if isinstance(p, SoftReplayPlugin):
                    state["replay_gen"] = p.gen.get_state()
                if isinstance(p, DSAPlugin):
                    state["dsa_gen"] = p.dsa.generator(self.device).get_state()
        tmp = self.dir / "state.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.dir / "state.pt")

    def _load_state(self) -> int:
        state = torch.load(self.dir / "state.pt", map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.matrix, self.seconds = state["matrix"], state["seconds"]
        if self.policy is not None:
            for f in state["memory_files"]:
                self.policy.add_file(Path(f))
        done = int(state["done"])
        if self.strategy is not None:
            self.strategy.optimizer.load_state_dict(state["optimizer"])
            # Avalanche resets the optimizer state the first time a fresh strategy sees an
            # experience; mark the parameters as known so the restored momentum survives.
            self.strategy.optimized_param_id = dict(self.model.named_parameters())
            for p in self.strategy.plugins:
                if isinstance(p, SoftReplayPlugin) and "replay_gen" in state:
                    p.gen.set_state(state["replay_gen"])
                if isinstance(p, DSAPlugin) and "dsa_gen" in state:
                    p.dsa.generator(self.device).set_state(state["dsa_gen"])
                if isinstance(p, LwFPlugin) and done:
                    p.lwf.prev_model = copy.deepcopy(self.model).to(self.device)
                    p.lwf.prev_classes_by_task[0] = {c for s in self.splits[:done] for c in s}
            if isinstance(self.strategy, Cumulative) and done:
                from avalanche.benchmarks.utils.utils import concat_datasets
                self.strategy.dataset = concat_datasets(
                    [self.benchmark.train_stream[i].dataset for i in range(done)])
        _set_rng_state(state["rng"])
        return done

    # ------------------------------------------------------------------ main
    def execute(self, resume: bool = False) -> dict:
        if (self.dir / "state.pt").exists() and not resume:
            raise ConfigError(f"--out: {self.dir} already holds this run; pass --resume to continue it "
                              "or choose another --out")
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.dir / "config.yaml", yaml.safe_dump(
            {**dataclasses.asdict(self.cfg), "strategy": self.strategy_name, "seed": self.seed},
            sort_keys=False))
        total0 = time.perf_counter()
        self._progress("running", "setup", 0)
        try:
            self._build()
            first = self._load_state() if resume and (self.dir / "state.pt").exists() else 0
            base_total = self.seconds["total"]
            for i in range(first, self.cfg.experiences):
                self._progress("running", "train", i)
                if self.cfg.protocol == "replay":
                    self._learn_replay_protocol(i)
                else:
                    self._learn_retrain_protocol(i)
                self._progress("running", "eval", i)
                t0 = time.perf_counter()
                self.matrix.append(self._evaluate())
                self.seconds["eval"] += time.perf_counter() - t0
                self.seconds["total"] = base_total + time.perf_counter() - total0
                self._save_state(i + 1)
                self._progress("running", "train", i + 1, average_accuracy=self._average(i))
        except BaseException as exc:
            self._progress("failed", "error", len(self.matrix), error=f"{type(exc).__name__}: {exc}")
            raise
        metrics = self.metrics()
        atomic_write_json(self.dir / "metrics.json", metrics)
        self._progress("finished", "done", self.cfg.experiences,
                       final_average_accuracy=metrics["final_average_accuracy"])
        return metrics

    def _average(self, i: int) -> float:
        return float(np.mean(self.matrix[i][: i + 1]))

    def metrics(self) -> dict:
        n = len(self.matrix)
        avg = [self._average(i) for i in range(n)]
        forgetting = [max(self.matrix[l][j] for l in range(n - 1)) - self.matrix[-1][j]
                      for j in range(n - 1)] if n > 1 else []
        return {"scenario": self.cfg.name, "strategy": self.strategy_name, "protocol": self.cfg.protocol,
                "seed": self.seed, "classes_per_experience": self.splits,
                "accuracy_matrix": self.matrix, "average_accuracy": avg,
                "final_average_accuracy": avg[-1] if avg else 0.0,
                "average_forgetting": float(np.mean(forgetting)) if forgetting else 0.0,
                "memory": self.policy.records() if self.policy is not None else [],
                "budget_bytes_per_experience": self.budget if self.policy is not None else 0,
                "seconds": self.seconds}


def run_scenario(cfg: ScenarioConfig, strategy: str, seed: int, out_root: str | Path,
                 resume: bool = False, progress: bool = True) -> dict:
    return Run(cfg, strategy, seed, out_root, progress).execute(resume)
