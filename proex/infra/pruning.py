"""Pruning of study trials that run as Ray tasks: the pruner a study file names, and the validation hook a trial
runs with in its worker.

The worker, not the driver, asks "prune?": after every validation it reports the selection metric to the
trial in the shared Optuna storage (step = the epoch) and asks the study's pruner, which compares it with the
other trials' values at that step read from the same storage (SQLite on one machine, PostgreSQL or a journal
file on a cluster). A prune raises `proex.train.StopTraining`, which ends the fit at once; `run_tracked_cell`
then ends the trial's MLflow run KILLED with tag pruned=true, and the driver tells the trial PRUNED (Optuna
keeps its last intermediate value). The library outside `infra` never sees Optuna: it only knows the exception.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import optuna

from ..study_spec import PrunerSpec
from ..train import StopTraining, ValidationReport


def make_pruner(p: PrunerSpec) -> optuna.pruners.BasePruner:
    """The Optuna pruner of a study file's `pruner` section (steps are epochs)."""
    if p.type == "none":
        return optuna.pruners.NopPruner()
    if p.type == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps, interval_steps=p.interval_steps
        )
    if p.type == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.min_resource,
            reduction_factor=p.reduction_factor,
            min_early_stopping_rate=p.min_early_stopping_rate,
        )
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1 if p.min_resource == "auto" else p.min_resource,
            max_resource=p.max_resource,
            reduction_factor=p.reduction_factor,
        )
    raise ValueError(f"unknown pruner type {p.type!r}")


def describe_pruner(p: PrunerSpec) -> dict:
    """The pruner's type and the settings that apply to it (what provenance records)."""
    from ..study_spec import PRUNER_KEYS

    return {"type": p.type, **{k: v for k, v in dataclasses.asdict(p).items() if k in PRUNER_KEYS[p.type]}}


@dataclass(frozen=True)
class PruneTarget:
    """Which Optuna trial a worker reports to (sent with the Ray task)."""

    storage: str  # the study's storage URL (as `studies.open_storage` reads it)
    study: str
    trial_id: int  # the storage's trial id (not its number)
    pruner: PrunerSpec
    select: str  # the selection metric, e.g. "recall@20"


def pruning_hook(target: PruneTarget, open_storage):
    """A validation callback for `run_tracked_cell` that reports each validation to the trial and raises
    StopTraining when the pruner says so. `open_storage`: url -> Optuna storage (studies.open_storage)."""
    study = optuna.load_study(
        study_name=target.study, storage=open_storage(target.storage), pruner=make_pruner(target.pruner)
    )
    trial = optuna.trial.Trial(study, target.trial_id)

    def on_validation(report: ValidationReport) -> None:
        value = float(report.metrics[target.select])
        trial.report(value, report.epoch)  # a step reported before (a resumed task) is ignored by Optuna
        if trial.should_prune():
            raise StopTraining(
                f"pruned by the {target.pruner.type} pruner after epoch {report.epoch} "
                f"(val {target.select} {value:.4f})"
            )

    return on_validation
