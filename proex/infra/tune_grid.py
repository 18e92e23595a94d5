"""A grid's cells as Ray Tune trials: fractional GPUs, retries, checkpoints, resume, MLflow logging.

`run_grid(grid)` builds one `Tuner` whose `param_space` is `grid_search` over every cell of the grid (a small record per
cell: its id, its run name and the `GridCell` itself, resolved once when the grid expanded), wrapped in
`tune.with_resources` ({"cpu", "gpu"} per trial; a fractional GPU lets small models share one) and run with
`FailureConfig(max_failures)`. A trial is the one trial body `tracked_cell.run_tracked_cell` (skip a finished run,
train, log, mark done or FAILED) with Tune's checkpoint as the trainer state it resumes from, and each validation
reported to Tune with that state as checkpoint. `close_orphans` fails the runs of cells whose retries ran out, so no run
is left RUNNING after the grid returns.
Rerunning the same grid runs its unfinished cells (MLflow's `done` tag decides) in a fresh Tune experiment of its
own, named by the grid, a hash of its cell ids and the launch time; a cell an earlier launch left unfinished
resumes from the newest trainer state that launch saved (`saved_states`), a cell whose run was deleted to
recompute it starts over.
A slice (`only`) runs the matching cells in a Tune experiment of their own (named by their ids). The grid's
totals go to the console and the parent run while it runs (`grid_progress`); a stop signal ends it cleanly
(`grid_stop`), its cells' runs marked interrupted for the rerun to resume.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import ray
from ray import tune

from ..grid import GridCell, GridSpec, grid_digest, start_lines
from ..grid_slice import slice_cells
from .grid_progress import GridProgress
from .grid_stop import StopSignals, mark_interrupted
from .model_registry import register_best
from .publishing import publish_report
from .saved_states import STATE_FILE, newest_states
from .tracked_cell import TrackedCell, TrialContext, run_tracked_cell
from .tracker import Tracker, git_commit, is_finished, local_root, metric_key
from .ui import save_comparison_view

log = logging.getLogger("proex.infra.tune_grid")


@dataclass
class GridOutcome:
    grid: str
    n_cells: int
    finished: int
    failed: list = field(default_factory=list)  # cell ids without a finished run
    parent_run_id: str = ""
    tracking_uri: str = ""
    experiment_id: str = ""
    storage: str = ""  # Ray Tune experiment folder
    report_files: dict = field(default_factory=dict)
    registered: list = field(default_factory=list)  # model_registry.Registration of each (model, plug-in, dataset)
    interrupted: int | None = None  # the stop signal (SIGINT, SIGTERM) that ended the grid early, else None
    marked: list = field(default_factory=list)  # cell ids whose runs were marked interrupted


def connect(address: str | None = None, num_cpus: int | None = None, worker_logs: bool = False) -> None:
    """Attach to Ray: `address` ("auto", "ray://...", "host:port"), or $RAY_ADDRESS (set inside `ray job
    submit`), else a new local instance ("local"). For a local instance on loopback only, the caller sets
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray is imported (ray_jobs/_driver.py does).

    worker_logs: stream the workers' stdout/stderr to this console. Off by default: a trial's result and
    failure reach the console through `grid_progress.GridProgress` (and Tune's error files), while the raw stream also
    carries Ray's own noise, such as the `SystemExit` traceback an actor prints when Tune ends it after a
    successful trial. The workers' logs stay in Ray's session folder (logs/worker-*.err)."""
    if ray.is_initialized():
        return
    if address in (None, "local") and not os.environ.get("RAY_ADDRESS"):
        ray.init(address="local", num_cpus=num_cpus, dashboard_host="127.0.0.1", log_to_driver=worker_logs)
    else:
        ray.init(address=address, log_to_driver=worker_logs)


def experiment_name(grid: GridSpec) -> str:
    return f"proex-{grid.name}"


def default_storage(tracker: Tracker) -> str:
    """Tune state beside a local sqlite store (mlruns/tune), else ~/ray_results/proex (pass a shared path or
    bucket on a multi-node cluster)."""
    root = local_root(tracker.uri)
    return str(root / "tune") if root else os.path.expanduser("~/ray_results/proex")


def cell_record(gc: GridCell, resume_from: tune.Checkpoint | None = None) -> dict:
    """A trial's config: the cell id (names its folder), its run name, the resolved cell it runs, and the state an
    earlier launch saved for it (`saved_states.newest_states`), if any."""
    return {"id": gc.cell_id, "name": gc.run_name(), "grid_cell": gc, "resume_from": resume_from}


def _trial(config: dict, ctx: TrialContext) -> None:
    """One cell as a Tune function trainable (runs in a Ray worker): `run_tracked_cell` resuming from Tune's
    checkpoint (a retry in this launch) or else the state an earlier launch saved, each validation reported to Tune
    with the trainer state as checkpoint."""
    rec = config["cell"]
    work = tempfile.mkdtemp(prefix=f"proex-{rec['id']}-")
    state_dir = os.path.join(work, "state")
    os.makedirs(state_dir)
    state = os.path.join(state_dir, STATE_FILE)
    ckpt = tune.get_checkpoint() or rec.get("resume_from")
    if ckpt is not None:
        with ckpt.as_directory() as d:
            shutil.copy(os.path.join(d, STATE_FILE), state)

    def report(r) -> None:
        metrics = {metric_key(f"val_{k}"): v for k, v in r.metrics.items()}
        tune.report({**metrics, "epoch": r.epoch}, checkpoint=tune.Checkpoint.from_directory(state_dir))

    gc = rec["grid_cell"]
    try:
        out = run_tracked_cell(
            ctx,
            TrackedCell(gc, gc.cell_id, rec["name"], gc.labels),
            state,
            os.path.join(work, "out"),
            on_validation=report,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tune.report(
        {
            "skipped" if out.already_finished else "done": 1,
            "first_dip": out.first_dip,
            **{metric_key(f"test_{k}"): v for k, v in out.test.items()},
        }
    )


def _trial_dirname(trial) -> str:
    return f"cell-{trial.config['cell']['id']}"


def trial_name(rec: dict) -> str:
    """'lightgcn-proex-synthetic-s0' (+ '-<variant>'): the cell's readable name, as its MLflow run is named."""
    return rec["name"]


def close_orphans(tracker: Tracker, cell_ids: list[str]) -> None:
    """Mark FAILED the runs of cells whose trials are over without finishing (retries exhausted, a worker
    killed outright, a node lost for good), so that no run stays RUNNING after its grid has returned."""
    for cid in cell_ids:
        for run in tracker.find(kind="cell", key=cid):
            if run.info.status == "RUNNING":
                tracker.finish(run.info.run_id, "FAILED")


def _tuner(
    trainable,
    grid: GridSpec,
    cells: list[GridCell],
    states: dict,
    storage: str,
    name: str,
    verbose: int,
    progress: GridProgress,
) -> tune.Tuner:
    """A fresh Tune experiment `name` with one trial per cell (a grid search over the cells' records), each
    resuming from its entry in `states` ({cell id: tune.Checkpoint}) if it has one."""
    return tune.Tuner(
        trainable,
        param_space={"cell": tune.grid_search([cell_record(c, states.get(c.cell_id)) for c in cells])},
        # reuse_actors: a trial runs in the worker process of the trial before it (same resources), not a new one
        # that imports torch, proex and MLflow again: ~20 s per cell on a loaded 2-core machine (docs/results).
        tune_config=tune.TuneConfig(
            max_concurrent_trials=grid.max_concurrent,
            trial_dirname_creator=_trial_dirname,
            reuse_actors=True,
            trial_name_creator=lambda t: trial_name(t.config["cell"]),
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            verbose=verbose,
            callbacks=[progress],
            failure_config=tune.FailureConfig(max_failures=grid.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )


def run_grid(
    grid: GridSpec,
    tracking_uri: str | None = None,
    storage: str | None = None,
    report_dir: str | None = None,
    verbose: int = 0,
    address: str | None = None,
    num_cpus: int | None = None,
    worker_logs: bool = False,
    only: dict | None = None,
) -> GridOutcome:
    """Run every unfinished cell of `grid` (of its slice `only`, {label: values}: `proex.grid_slice.slice_cells`) on
    Ray (connected with `connect(address, num_cpus, worker_logs)` only when a cell is left to run), then write
    the report of what has finished and log it on the grid's parent run. A first SIGINT/SIGTERM stops the
    trials cleanly (`grid_stop`): their runs are marked interrupted and the outcome says which signal.
    Then registers the best cell of each (model, plug-in, dataset) on validation (`model_registry.register_best`).
    verbose: Tune's own console output (0 = none: `GridProgress` prints a line per cell; 1-3 = Tune's tables)."""
    every = grid.expand()
    cells = slice_cells(every, only) if only else every
    tracker = Tracker(tracking_uri, experiment_name(grid))
    commit = git_commit()
    parent_id = _open_parent(grid, tracker, len(every), commit)
    found = tracker.find(kind="cell")  # one search, shared with the report when nothing runs
    done = {r.data.tags["key"]: r for r in found if is_finished(r)}  # as tracker.finished
    todo = [c for c in cells if c.cell_id not in done]
    log.info(
        "grid %s: %d cells%s, %d finished before, %d to run",
        grid.name,
        len(every),
        f" ({len(cells)} in the slice)" if only else "",
        len(cells) - len(todo),
        len(todo),
    )
    for line in start_lines(grid, cells):  # protocol differences and borrowed settings, once per grid start
        log.info("grid %s: %s", grid.name, line)
    storage = storage or default_storage(tracker)
    name = f"{grid.name}-{grid_digest(cells)}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"  # this launch
    unfinished = {r.data.tags["key"]: r.info.start_time for r in found if not is_finished(r)}
    stop = StopSignals()
    with stop:
        if todo and not stop.stopped:
            connect(address, num_cpus, worker_logs)
            ctx = TrialContext(
                tracker.uri,
                tracker.experiment,
                parent_id,
                "cell",
                grid.name,
                grid.select,
                grid.resources.cpu,
                commit,
                os.getcwd(),
            )
            _fit_cells(grid, ctx, cells, todo, unfinished, tracker, storage, name, verbose, parent_id)
    marked = mark_interrupted(tracker, [c.cell_id for c in todo], stop.at_ms) if stop.stopped else []
    finished = tracker.finished("cell") if todo else done  # nothing ran: the store is as read (seconds at 360 runs)
    failed = [c.cell_id for c in cells if c.cell_id not in finished and c.cell_id not in marked]
    close_orphans(tracker, failed)
    out = report_dir or str((local_root(tracker.uri) or Path("mlruns").resolve()) / "reports" / grid.name)
    files = publish_report(grid, tracker, out, cells=every, found=None if todo else found)
    registered = [] if stop.stopped else register_best(grid, tracker, every, done=finished)  # winners on validation
    if stop.stopped:
        tracker.set_tags(parent_id, {"interrupted": "true"})
    tracker.finish(parent_id, "KILLED" if stop.stopped else "FAILED" if failed else "FINISHED")
    return GridOutcome(
        grid.name,
        len(cells),
        len(cells) - len(failed) - len(marked),
        failed,
        parent_id,
        tracker.uri,
        tracker.experiment_id,
        os.path.join(storage, name),
        files,
        registered=registered,
        interrupted=stop.signum,
        marked=marked,
    )


def _open_parent(grid: GridSpec, tracker: Tracker, n_cells: int, commit: str) -> str:
    """The grid's parent run, reopened, with its tags, grid file and the saved comparison view."""
    parent, _ = tracker.run_for("grid", grid.name, tags={"grid": grid.name, "git_commit": commit}, name=grid.name)
    parent_id = parent.info.run_id
    tracker.reopen(parent_id)
    tracker.set_tags(parent_id, {"n_cells": n_cells, "git_commit": commit, "interrupted": "false"})
    if grid.path:
        tracker.log_files(parent_id, [grid.path], "grid")
    save_comparison_view(tracker, list(grid.report.metrics))
    return parent_id


def _fit_cells(
    grid: GridSpec,
    ctx: TrialContext,
    cells: list[GridCell],
    todo: list[GridCell],
    unfinished: dict,
    tracker: Tracker,
    storage: str,
    name: str,
    verbose: int,
    parent_id: str,
) -> None:
    """This launch's Tune experiment over the cells `todo`, each cell with an unfinished run (`unfinished`: {cell
    id: its run's start in ms}) resuming from the newest state saved for it since that run started."""
    trainable = tune.with_resources(
        tune.with_parameters(_trial, ctx=ctx), {"cpu": grid.resources.cpu, "gpu": grid.resources.gpu}
    )
    states = newest_states(storage, {c.cell_id: unfinished[c.cell_id] for c in todo if c.cell_id in unfinished})
    if states:
        log.info("resuming %d cell(s) from the trainer state an earlier launch saved in %s", len(states), storage)
    progress = GridProgress(len(cells), len(cells) - len(todo), trial_name, tracker, parent_id)
    _tuner(trainable, grid, todo, states, storage, name, verbose, progress).fit()
