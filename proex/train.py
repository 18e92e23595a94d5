"""The training loop shared by every model and plug-in (HKUDS/RLMRec encoder/trainer/trainer.py).

Adam, one pass over the training batches per epoch; validation after epochs 0, 3, 6, ... (eval_every; with
eval_offset 1 after epochs 4, 9, 14, ... as AlphaRec's (epoch + 1) % verbose == 0);
selection on validation Recall@20 (strictly greater improves); patience counted in validations; the best
state is restored, validated once more and tested once. A callback sees every validation (the grid hangs
Ray and MLflow on it) and may end the fit at once by raising `StopTraining` (a pruned study trial). With
`state_path` set, the full loop state (model, optimizer, best state, counters, RNG) is written at every
validation, and a later `fit` with the same path resumes from it.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace

import torch

from .data.tensors import TrainData
from .metrics import RankingEvaluator
from .plugins.base import Plugin
from .runtime import cuda_matmul_precision, deterministic_algorithms, reference_kernels, rng_state, set_rng_state

log = logging.getLogger("proex.train")


@dataclass
class TrainConfig:
    # None: the reference configuration of the cell's model and plug-in (proex.reference) decides.
    epochs: int | None = None  # max epochs (3000 pairwise, 1000 generative)
    batch_size: int | None = None  # 4096 edges pairwise, 1024 users generative
    lr: float | None = None  # Adam learning rate (1e-3 in every reference yml)
    eval_every: int = 3  # validate after epochs e with e % eval_every == 0 (test_step)
    patience: int | None = None  # validations without improvement before stopping (5 RLMRec, 20 ProEx/DMRec)
    ks: tuple[int, ...] = (10, 20)  # cut-offs reported
    select: str = "recall@20"  # validation metric that selects the best epoch (never a test metric)
    eval_batch_size: int | None = None  # users per evaluation batch; None = 256 on CPU, 4096 on CUDA
    seed: int | None = None  # 2023 RLMRec, 2025 ProEx, 2024 generative
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"
    compile: bool = False  # torch.compile the training loss; off by default (why: `training_loss`)
    tf32: bool = False  # CUDA float32 matmuls on TF32 tensor cores (runtime.cuda_matmul_precision); off = exact fp32
    deterministic: bool = False  # deterministic kernels: bit-identical reruns (runtime.deterministic_algorithms)
    reference_kernels: bool = False  # the plain reference versions of the fast paths (runtime.reference_kernels)
    min_epochs: int = 0  # warm-up: validations before this epoch never count against patience; 0 = off (why: FIRST_DIP)
    eval_offset: int = 0  # validate after epochs e with (e + eval_offset) % eval_every == 0 (0 RLMRec, 1 AlphaRec)


# A run whose best validation is its first one. Every official config (ProRec, RLMRec yml files) stops on
# patience alone, so the defaults do too (min_epochs = 0); a run whose validation stays below its first value
# for `patience` validations ends with its epoch-0 state. Such a run is flagged (FitResult.first_dip: console,
# metrics.json, MLflow tag, report) so that its test metrics are not read as the method's.
FIRST_DIP = (
    "best validation is the first one (epoch {epoch}); the {later} later validations never beat it, so "
    "the run may have stopped in an early dip instead of converging (e.g. RLMRec-Con while its kd term "
    "dominates the first epochs). Fix: a warm-up (--train min_epochs=N; train.min_epochs in a grid) or "
    "more patience (--train patience=N)."
)


class StopTraining(Exception):
    """Raised by a validation callback to end the fit at once, e.g. a study trial its pruner stopped: the loop
    state of the last validation is already saved (`state_path`), nothing is tested, and the exception reaches
    the caller of `Trainer.fit` with its reason as the message."""


@dataclass
class ValidationReport:
    """What the callback receives after every validation."""

    epoch: int
    metrics: dict[str, float]  # validation metrics
    losses: dict[str, float]  # mean training loss terms of the last epoch
    best_epoch: int
    best: float
    patience_left: int
    train_seconds: float  # training time since the previous validation
    eval_seconds: float
    start_epoch: int = 0  # the epoch this fit started at: 0, or the saved state's next epoch when it resumed


@dataclass
class FitResult:
    best_epoch: int
    val: dict[str, float]
    test: dict[str, float]
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    first_dip: str = ""  # FIRST_DIP filled in when the best validation is the first of several, else ""

    def to_dict(self) -> dict:
        return asdict(self)


def fill_train_defaults(cfg: TrainConfig, model: str, plugin: str) -> TrainConfig:
    """cfg with every unset (None) field taken from the reference configuration of (model, plugin), for a
    TrainConfig built by hand; `proex.experiment.resolve` fills them (with their sources) for every cell."""
    from .reference import settings

    ref = settings(model, plugin, "amazon")["train"]  # the training protocol does not depend on the dataset
    return replace(cfg, **{k: v for k, (v, _) in ref.items() if getattr(cfg, k) is None})


def make_optimizer(system: Plugin, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam over the model's parameter groups plus the plug-in's own parameters (at `lr`).

    The reference penalty reg_weight · Σ‖θ‖² over ALL trainable parameters (whole tables and MLPs, not scaled
    by the batch; HKUDS/RLMRec loss_utils.py reg_params) is applied as Adam's coupled weight decay 2·reg_weight:
    Adam adds wd·θ to the gradient before its moments, which is exactly the gradient of (wd/2)·‖θ‖², with no extra
    operators per batch. The penalty's value is therefore not part of the logged losses.
    Fused on CUDA: one kernel per step instead of several per tensor (these small models are launch-bound there).
    """
    groups = list(system.model.param_groups(lr))
    own = {id(p) for g in groups for p in g["params"]}
    extra = [p for p in system.parameters() if p.requires_grad and id(p) not in own]
    if extra:
        groups.append({"params": extra, "lr": lr})
    decay = 2.0 * max(system.model.reg_weight, 0.0)
    for g in groups:
        g.setdefault("weight_decay", decay)
    return torch.optim.Adam(groups, lr=lr, fused=device.type == "cuda")


def training_loss(system: Plugin, compile: bool = False) -> Callable:
    """The per-batch loss function, `system.loss_terms`, or its `torch.compile`d version.

    Why: on a GPU a small model's step is bound by launching hundreds of tiny operators from Python
    (docs/results/speed.md); TorchInductor fuses the element-wise chains (Ω's normalise/exp/log, the BPR,
    the KLs) forward and backward, and on a CPU it also fuses the [K, n, n] exp-and-sum of Ω. Shapes are
    marked dynamic because the batch's unique users and items change every batch (one compile, not one per
    batch); `torch.unique` and the sparse graph product stay eager (graph breaks). The same arithmetic, but
    not bit-identical (fused reductions round differently, and compiled random ops draw other numbers).
    Off by default: compiling costs tens of seconds per process, and the GPU gain is not measured yet.
    """
    return torch.compile(system.loss_terms, dynamic=True) if compile else system.loss_terms


def training_batches(system: Plugin, data: TrainData, batch_size: int) -> Iterable:
    """One epoch of training batches in the model family's form: BPR triples or user rows."""
    return system.model.training_batches(data, batch_size, distinct=system.uses_distinct)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        callback: Callable[[ValidationReport], None] | None = None,
        state_path: str | None = None,
    ):
        self.cfg, self.callback, self.state_path = cfg, callback, state_path

    def fit(self, system: Plugin, data: TrainData) -> FitResult:
        # Training and evaluation alike.
        with (
            cuda_matmul_precision(self.cfg.tf32),
            deterministic_algorithms(self.cfg.deterministic),
            reference_kernels(self.cfg.reference_kernels),
        ):
            return self._fit(system, data)

    def _fit(self, system: Plugin, data: TrainData) -> FitResult:
        cfg = fill_train_defaults(self.cfg, system.model.name, system.name)  # a hand-built TrainConfig may leave gaps
        opt = make_optimizer(system, cfg.lr, data.device)
        loss_terms = training_loss(system, cfg.compile)
        val_eval = RankingEvaluator(data, "val", cfg.ks, cfg.eval_batch_size)
        if cfg.select not in {f"{m}@{k}" for m in ("recall", "ndcg") for k in cfg.ks}:
            raise ValueError(f"select metric {cfg.select!r} is not computed; use recall@K or ndcg@K with K in {cfg.ks}")
        resuming = self.state_path is not None and os.path.exists(self.state_path)
        state = LoopState.load(self.state_path, system, opt) if resuming else LoopState()
        since_eval, epoch = 0.0, state.epoch
        start_epoch = state.epoch
        while epoch < cfg.epochs and state.bad < cfg.patience:
            losses, seconds = self._train_epoch(system, data, cfg, opt, loss_terms)
            system.model.on_epoch_end(epoch)
            state.train_s += seconds
            since_eval += seconds
            if (epoch + cfg.eval_offset) % cfg.eval_every == 0:
                report = self._validate(system, val_eval, cfg, state, epoch, losses, since_eval)
                report.start_epoch = start_epoch
                since_eval, state.epoch = 0.0, epoch + 1
                if self.state_path:
                    state.save(self.state_path, system, opt)
                if self.callback:
                    self.callback(report)
            epoch += 1
        if state.best_state is not None:
            system.load_state_dict(state.best_state)
        val = self._evaluate(system, val_eval)
        test = self._evaluate(system, RankingEvaluator(data, "test", cfg.ks, cfg.eval_batch_size))
        log.info(
            "best epoch %d | val %s | test %s",
            state.best_epoch,
            " ".join(f"{k} {v:.4f}" for k, v in val.items()),
            " ".join(f"{k} {v:.4f}" for k, v in test.items()),
        )
        dip = ""
        if len(state.history) > 1 and state.best_epoch == state.history[0]["epoch"]:
            dip = FIRST_DIP.format(epoch=state.best_epoch, later=len(state.history) - 1)
            log.warning("%s", dip)
        return FitResult(state.best_epoch, val, test, epoch, state.history, state.train_s, state.eval_s, dip)

    @staticmethod
    def _train_epoch(system: Plugin, data: TrainData, cfg: TrainConfig, opt, loss_terms) -> tuple[dict, float]:
        """One pass over the training batches: (mean loss terms of the epoch, seconds)."""
        system.train()
        t0 = time.perf_counter()
        total, names, n = None, [], 0  # the per-term loss sums of the epoch, [n_terms], on the device
        for batch in training_batches(system, data, cfg.batch_size):
            terms = loss_terms(batch)
            stacked = torch.stack(list(terms.values()))
            opt.zero_grad(set_to_none=True)
            stacked.sum().backward()
            opt.step()
            total = stacked.detach() if total is None else total + stacked.detach()
            names, n = list(terms), n + 1
        losses = dict(zip(names, (total / n).tolist())) if total is not None else {}  # one host read per epoch
        return losses, time.perf_counter() - t0

    def _validate(
        self,
        system: Plugin,
        evaluator: RankingEvaluator,
        cfg: TrainConfig,
        state: LoopState,
        epoch: int,
        losses: dict,
        since_eval: float,
    ) -> ValidationReport:
        """Validate after `epoch`, update the best state and patience, log, and say what happened."""
        t0 = time.perf_counter()
        metrics = self._evaluate(system, evaluator)
        seconds = time.perf_counter() - t0
        state.eval_s += seconds
        if metrics[cfg.select] > state.best:  # strictly greater improves (the official trainer)
            state.best, state.best_epoch, state.bad = metrics[cfg.select], epoch, 0
            state.best_state = copy.deepcopy(system.state_dict())
        elif epoch >= cfg.min_epochs:  # warm-up: no patience spent before min_epochs
            state.bad += 1
        state.history.append(
            {
                "epoch": epoch,
                **{f"val_{k}": v for k, v in metrics.items()},
                **{f"loss_{k}": v for k, v in losses.items()},
            }
        )
        log.info(
            "epoch %4d | %s | val %s | best %.4f @ %d | %.2fs train, %.2fs eval",
            epoch,
            " ".join(f"{k} {v:.4f}" for k, v in losses.items()),
            " ".join(f"{k} {v:.4f}" for k, v in metrics.items()),
            state.best,
            state.best_epoch,
            since_eval,
            seconds,
        )
        return ValidationReport(
            epoch, metrics, losses, state.best_epoch, state.best, cfg.patience - state.bad, since_eval, seconds
        )

    @staticmethod
    def _evaluate(system: Plugin, evaluator: RankingEvaluator) -> dict[str, float]:
        system.eval()
        with torch.no_grad():
            return evaluator(system.scorer(), needs_rows=system.model.scores_need_rows)


def read_state(path: str) -> dict:
    """The trainer state file at `path`, loaded with `torch.load(weights_only=True)`: tensors and plain
    containers only, so a state file from elsewhere cannot run code (a pickle names any callable to rebuild)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path}: refusing to load this trainer state: it holds objects other than tensors and "
            f"plain containers, so loading it could run code ({str(exc).splitlines()[0]}). A state "
            f"written by proex never does; delete the file to train this run from the start."
        ) from None


@dataclass
class LoopState:
    """What the training loop carries from one validation to the next; saved at every validation (with the
    model, the optimizer and the RNG) so that a fit given the same `state_path` resumes where it stopped."""

    epoch: int = 0  # the next epoch to train
    best: float = float("-inf")  # best validation value of the selection metric so far
    best_epoch: int = -1
    bad: int = 0  # validations since the last improvement (patience spent)
    history: list[dict] = field(default_factory=list)  # one row per validation: epoch, val_*, loss_*
    best_state: dict | None = None  # the system's state_dict at best_epoch
    train_s: float = 0.0
    eval_s: float = 0.0

    def save(self, path: str, system: Plugin, opt: torch.optim.Optimizer) -> None:
        tmp = f"{path}.tmp"
        loop = {f.name: getattr(self, f.name) for f in fields(self)}  # not asdict: no deep copy of best_state
        torch.save(
            {"system": system.state_dict(), "optimizer": opt.state_dict(), "loop": loop, "rng": rng_state()}, tmp
        )
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written state

    @classmethod
    def load(cls, path: str, system: Plugin, opt: torch.optim.Optimizer) -> LoopState:
        saved = read_state(path)
        system.load_state_dict(saved["system"])
        opt.load_state_dict(saved["optimizer"])
        set_rng_state(saved["rng"])
        state = cls(**saved["loop"])
        log.info("resumed from %s at epoch %d (best %.4f @ %d)", path, state.epoch, state.best, state.best_epoch)
        return state
