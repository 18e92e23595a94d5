"""One tracked cell: the single trial body that grids (`tune_grid`) and studies (`studies`) both run.

`run_tracked_cell(ctx, cell)` runs in a Ray worker. It
  1. finds or creates the cell's MLflow run by (kind, key); a run that already finished (`is_finished`: status
     FINISHED and tag done=1, which only `CellRecorder.final` sets) returns its logged results and trains nothing;
  2. reopens an unfinished run (a retry, a resumed grid) and counts the resume when a state file is there;
  3. picks the device from what Ray assigned (`devices.assign`) and tags the run with it;
  4. trains with `experiment.run_cell`, logging every validation (and passing it to the caller's hook, which
     Tune uses to report and checkpoint), resuming from `state_path` if it holds a trainer state;
  5. logs the final metrics, the best checkpoint and its config, and marks the run done; any exception marks
     the run FAILED with the error as a tag, then propagates (a retry reopens the run);
  6. a hook that raises `StopTraining` (a study's pruner) ends the run KILLED with tags pruned=true and
     stop_reason, its validation curve so far logged; the outcome says `stopped`, and a later call on the same
     key returns that outcome again without training.

The MLflow `done` tag is the one answer to "is this cell finished?": Tune's experiment folder and Optuna's
trial states only save work (a Tune checkpoint to resume from, a trial to tell), they never decide it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..grid import GridCell
from ..train import StopTraining
from . import devices
from .cell_recorder import CellRecorder
from .tracker import Tracker, is_finished, logged_metrics
from .ui import log_dataset


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one grid or study shares, sent from the driver to the Ray workers."""

    tracking_uri: str
    experiment: str
    parent_run_id: str  # the grid's run (grid cells) or the study's run (study trials)
    kind: str  # the runs' `kind` tag: "cell" (a grid's cell) or "trial" (a study's trial)
    grid: str  # the grid file's name, tagged on every run
    select: str  # selection metric without its split, e.g. "recall@20"
    cpu: float  # CPUs Ray gives a trial; torch uses as many threads
    git_commit: str
    cwd: str = ""  # the driver's working folder: relative dataset / profile paths mean what they meant there


@dataclass(frozen=True)
class TrackedCell:
    """One run to make: the resolved cell, the key its run is found by, its display name and its tags."""

    grid_cell: GridCell
    key: str  # cell id (grid) or '<study>#<trial number>' (study)
    name: str  # the MLflow run name, e.g. 'lightgcn-proex-synthetic-s0'
    tags: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CellOutcome:
    run_id: str
    already_finished: bool  # True: nothing was trained, the results are the run's logged ones
    test: dict  # metric name ('recall@20') -> test value
    best_val: dict  # metric name -> validation value at the best epoch
    first_dip: bool = False  # the best validation was the first one (`proex.train.FIRST_DIP`)
    stopped: str = ""  # why a hook stopped the training (a pruned study trial), else "": nothing was tested


def was_stopped(run) -> bool:
    """Whether `run` was ended by a `StopTraining` hook (a pruned study trial): KILLED with tag pruned=true."""
    return run.info.status == "KILLED" and run.data.tags.get("pruned") == "true"


def run_tracked_cell(
    ctx: TrialContext, tc: TrackedCell, state_path: str, workdir: str, on_validation: Callable | None = None
) -> CellOutcome:
    """Train `tc.grid_cell` into its MLflow run (see the module docstring); `state_path` is the trainer state to
    resume from and keep up to date, `workdir` a folder for the checkpoint files before they are logged."""
    import torch

    from ..data.registry import load_dataset
    from ..experiment import run_cell

    if ctx.cwd and os.path.isdir(ctx.cwd):
        os.chdir(ctx.cwd)
    torch.set_num_threads(max(1, int(ctx.cpu)))
    tracker = Tracker(ctx.tracking_uri, ctx.experiment)
    gc = tc.grid_cell
    tags = {
        **{k: str(v) for k, v in tc.tags.items()},
        "grid": ctx.grid,
        "git_commit": ctx.git_commit,
        "cell_id": gc.cell_id,
        "config_hash": gc.cell_id,
    }
    run, created = tracker.run_for(ctx.kind, tc.key, ctx.parent_run_id, tags, gc.resolved.to_dict(), name=tc.name)
    run_id = run.info.run_id
    if was_stopped(run):
        return CellOutcome(run_id, True, {}, {}, stopped=run.data.tags.get("stop_reason", "stopped"))
    if is_finished(run):
        return CellOutcome(
            run_id,
            True,
            logged_metrics(run, "test_"),
            logged_metrics(run, "best_val_"),
            run.data.tags.get("first_dip") == "yes",
        )
    resumes = int(run.data.tags.get("resumes", "0")) + (1 if os.path.exists(state_path) else 0)
    if not created:
        tracker.reopen(run_id)
    tracker.set_tags(run_id, {"resumes": resumes, "pid": os.getpid(), **attempt_tags(run, state_path)})
    attempts = int(run.data.metrics.get("attempt", -1)) + 1
    tracker.log_metrics(run_id, {"attempt": attempts}, step=attempts)  # its timestamp: when this attempt began
    recorder = CellRecorder(tracker, run_id, ctx.select)

    def validation(report) -> None:
        recorder.validation(report.epoch, report.metrics, report.losses, report.start_epoch)
        if on_validation is not None:
            on_validation(report)

    try:
        device, device_tags = devices.assign(gc.resolved.train_cfg.device, f"{ctx.kind} {tc.key} ({ctx.grid})")
        tracker.set_tags(run_id, device_tags)
        inter = load_dataset(gc.config.dataset)
        if created or not tracker.client.get_run(run_id).inputs.dataset_inputs:
            log_dataset(tracker, run_id, inter, gc.labels["dataset"])
        result, system = run_cell(
            gc.resolved,
            inter,
            callback=validation,
            state_path=state_path,
            device=device,
            profiles=gc.runnable().profiles,
        )
        recorder.final(tc.key, result, system, inter, workdir)
    except StopTraining as stop:  # not a failure: the run ends KILLED, marked pruned, with its curve so far
        tracker.set_tags(run_id, {"pruned": "true", "stop_reason": str(stop)[:5000]})
        tracker.finish(run_id, "KILLED")
        return CellOutcome(run_id, False, {}, {}, stopped=str(stop) or "stopped")
    except SystemExit:  # the trial's actor told to exit mid-training: a stopped grid (proex.infra.grid_stop)
        tracker.set_tags(run_id, {"interrupted": "true", "interrupted_at_ms": int(time.time() * 1000)})
        tracker.finish(run_id, "KILLED")
        raise
    except BaseException as exc:  # KeyboardInterrupt / a cancelled task too: no run is left RUNNING by us
        tracker.set_tags(run_id, {"error": f"{type(exc).__name__}: {exc}"[:5000]})
        tracker.finish(run_id, "FAILED")
        raise
    return CellOutcome(run_id, False, dict(result.test), dict(result.val), result.first_dip)


def attempt_tags(run, state_path: str) -> dict:
    """Tags of a new attempt at a run: the epoch its trainer state resumes from (`resumed_from_epoch`, the next
    epoch to train; absent when it starts from scratch) and, for a run a stopped grid marked interrupted,
    interrupted=false with the time it sat stopped added to `paused_s` (the report's device time leaves it out)."""
    tags = {}
    if os.path.exists(state_path):
        from ..train import read_state

        tags["resumed_from_epoch"] = read_state(state_path)["loop"]["epoch"]
    if run.data.tags.get("interrupted") == "true":
        stopped_ms = int(run.data.tags.get("interrupted_at_ms", "0") or 0)
        paused = float(run.data.tags.get("paused_s", "0")) + max(time.time() - stopped_ms / 1000, 0) * (stopped_ms > 0)
        tags.update({"interrupted": "false", "paused_s": f"{paused:.1f}"})
    return tags
