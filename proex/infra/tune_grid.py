"""A grid's cells as Ray Tune trials: fractional GPUs, retries, checkpoints, resume, MLflow logging.

`run_grid(grid)` builds one `Tuner` whose `param_space` is `grid_search` over every cell of the grid (a small
record per cell: id, CellConfig, labels), wrapped in `tune.with_resources` ({"cpu", "gpu"} per trial; a
fractional GPU lets small models share one) and run with `FailureConfig(max_failures)`. A trial:
  1. finds or creates its MLflow child run by cell id; a run already finished -> reports it and returns;
  2. restores the trainer state from its Tune checkpoint if it has one (a retry after a crash, or a restored
     experiment), i.e. run_cell's `state_path` lives in the directory it checkpoints; picks the device from
     what Ray assigned (proex.infra.devices) and tags the run with it (device, ray_gpu_ids, node);
  3. at every validation logs the metrics to MLflow and reports them to Tune with that directory as checkpoint;
  4. at the end logs test metrics, the best checkpoint and its config, and marks the run finished; a trial
     that raises marks its run FAILED (a retry reopens it), and `close_orphans` fails the runs of cells whose
     retries ran out, so no run is left RUNNING after the grid returns.
Rerunning the same grid: if Tune's experiment folder exists, `Tuner.restore(..., resume_errored=True)`
continues it (finished trials are not started again, interrupted ones continue from their last checkpoint);
otherwise a fresh Tuner starts and each trial's MLflow check skips finished cells. The experiment folder is
named by the grid and a hash of its cell ids, so an edited grid starts a new one (finished cells still skip).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import ray
from ray import tune

from ..experiment import CellConfig, resolve
from ..grid import GridCell, GridSpec, grid_digest
from . import devices
from .cell_recorder import CellRecorder
from .publishing import publish_report
from .tracker import Tracker, git_commit, local_root, metric_key
from .ui import log_dataset, save_comparison_view

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


def connect(address: str | None = None, num_cpus: int | None = None, worker_logs: bool = False) -> None:
    """Attach to Ray: `address` ("auto", "ray://...", "host:port"), or $RAY_ADDRESS (set inside `ray job
    submit`), else a new local instance ("local"). For a local instance on loopback only, the caller sets
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray is imported (ray_jobs/_driver.py does).

    worker_logs: stream the workers' stdout/stderr to this console. Off by default: a trial's result and
    failure reach the console through `CellProgress` (and Tune's error files), while the raw stream also
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


def cell_record(gc: GridCell) -> dict:
    return {"id": gc.cell_id, "cell": dataclasses.asdict(gc.cell), "seed": gc.seed, "variants": list(gc.variants)}


def _grid_cell(rec: dict) -> GridCell:
    return GridCell(rec["id"], CellConfig(**rec["cell"]), rec["seed"], tuple(rec["variants"]))


def _trial(config: dict, ctx: dict) -> None:
    """One cell as a Tune function trainable (runs in a Ray worker)."""
    import torch

    from ..data.registry import load_dataset
    from ..experiment import run_cell

    gc = _grid_cell(config["cell"])
    if ctx.get("cwd") and os.path.isdir(ctx["cwd"]):
        os.chdir(ctx["cwd"])  # relative dataset / profile paths mean what they meant to the driver
    torch.set_num_threads(max(1, int(ctx["cpu"])))
    tracker = Tracker(ctx["tracking_uri"], ctx["experiment"])
    tags = {**gc.labels, "cell_id": gc.cell_id, "config_hash": gc.cell_id, "grid": ctx["grid"],
            "git_commit": ctx["git_commit"]}
    run, created = tracker.run_for("cell", gc.cell_id, ctx["parent_run_id"], tags, resolve(gc.cell).to_dict(),
                                   name=f"{gc.cell.model}-{gc.cell.plugin}-{tags['dataset']}-s{gc.seed}")
    run_id = run.info.run_id
    if run.info.status == "FINISHED" and run.data.tags.get("done") == "1":
        tune.report({"skipped": 1, **{k: v for k, v in run.data.metrics.items() if k.startswith("test_")}})
        return
    work = tempfile.mkdtemp(prefix=f"proex-{gc.cell_id}-")
    state_dir = os.path.join(work, "state")
    os.makedirs(state_dir)
    state = os.path.join(state_dir, "train_state.pt")
    resumes = int(run.data.tags.get("resumes", "0"))
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            shutil.copy(os.path.join(d, "train_state.pt"), state)
        resumes += 1
    if not created:
        tracker.reopen(run_id)
    tracker.set_tags(run_id, {"resumes": resumes, "pid": os.getpid()})
    try:
        device, device_tags = devices.assign(gc.cell.train.get("device", "auto"), f"cell {gc.cell_id} ({ctx['grid']})")
    except devices.DeviceError as exc:
        tracker.set_tags(run_id, {"error": str(exc)[:5000]})
        tracker.finish(run_id, "FAILED")
        raise
    tracker.set_tags(run_id, device_tags)
    recorder = CellRecorder(tracker, run_id, ctx["select"])

    def on_validation(report) -> None:
        recorder.validation(report.epoch, report.metrics, report.losses)
        metrics = {metric_key(f"val_{k}"): v for k, v in report.metrics.items()}
        tune.report({**metrics, "epoch": report.epoch}, checkpoint=tune.Checkpoint.from_directory(state_dir))

    cell = gc.runnable()
    cell = dataclasses.replace(cell, train={**cell.train, "device": device})
    inter = load_dataset(cell.dataset)
    if created or not tracker.client.get_run(run_id).inputs.dataset_inputs:
        log_dataset(tracker, run_id, inter, tags["dataset"])
    try:
        result, system = run_cell(cell, inter, callback=on_validation, state_path=state)
    except Exception as exc:  # a retry reopens the run; a worker killed outright is swept by run_grid
        tracker.set_tags(run_id, {"error": f"{type(exc).__name__}: {exc}"[:5000]})
        tracker.finish(run_id, "FAILED")
        raise
    recorder.final(gc.cell_id, result, system, inter, os.path.join(work, "out"))
    tune.report({"done": 1, "first_dip": result["first_dip"], **{metric_key(f"test_{k}"): v for k, v in result["test"].items()}})
    shutil.rmtree(work, ignore_errors=True)


def _trial_dirname(trial) -> str:
    return f"cell-{trial.config['cell']['id']}"


def trial_name(rec: dict) -> str:
    """'lightgcn-proex-synthetic-s0' (+ '-<variant>'): the cell's readable name, as its MLflow run is named."""
    gc = _grid_cell(rec)
    return "-".join([gc.cell.model, gc.cell.plugin, gc.labels["dataset"], f"s{gc.seed}"] + [v for v in gc.variants[:1] if v])


class CellProgress(tune.Callback):
    """One console line per finished, retried or failed cell (Tune's own status tables are off)."""

    def __init__(self, n_cells: int):
        self.n, self.ended = n_cells, 0

    def _line(self, trial, what: str) -> None:
        print(f"[{self.ended}/{self.n}] {trial_name(trial.config['cell'])} {what}", flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.ended += 1
        r = trial.last_result or {}
        metrics = "  ".join(f"{k[5:].replace('_at_', '@')} {v:.4f}" for k, v in r.items() if k.startswith("test_"))
        state = "already finished" if r.get("skipped") else f"done in {r.get('time_total_s', 0):.0f} s"
        dip = f"\n    WARNING: {r['first_dip']}" if r.get("first_dip") else ""
        self._line(trial, f"{state}: {metrics}{dip}")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._line(trial, f"failed, retrying (error: {trial.error_file or 'see the Tune folder'})")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.ended += 1
        self._line(trial, f"FAILED after its retries (error: {trial.error_file or 'see the Tune folder'})")


def close_orphans(tracker: Tracker, cell_ids: list[str]) -> None:
    """Mark FAILED the runs of cells whose trials are over without finishing (retries exhausted, a worker
    killed outright, a node lost for good), so that no run stays RUNNING after its grid has returned."""
    for cid in cell_ids:
        for run in tracker.find(kind="cell", key=cid):
            if run.info.status == "RUNNING":
                tracker.finish(run.info.run_id, "FAILED")


def run_grid(grid: GridSpec, tracking_uri: str | None = None, storage: str | None = None,
             report_dir: str | None = None, verbose: int = 0, address: str | None = None,
             num_cpus: int | None = None, worker_logs: bool = False) -> GridOutcome:
    """Run every unfinished cell of `grid` on Ray (connected with `connect(address, num_cpus, worker_logs)`
    only when a cell is left to run), then write the report and log it on the grid's parent run.
    verbose: Tune's own console output (0 = none: `CellProgress` prints a line per cell; 1-3 = Tune's tables)."""
    cells = grid.expand()
    tracker = Tracker(tracking_uri, experiment_name(grid))
    commit = git_commit()
    parent, _ = tracker.run_for("grid", grid.name, tags={"grid": grid.name, "git_commit": commit}, name=grid.name)
    parent_id = parent.info.run_id
    tracker.reopen(parent_id)
    tracker.set_tags(parent_id, {"n_cells": len(cells), "git_commit": commit})
    if grid.path:
        tracker.log_files(parent_id, [grid.path], "grid")
    save_comparison_view(tracker, list(grid.report.metrics))
    done = tracker.finished("cell")
    todo = [c for c in cells if c.cell_id not in done]
    log.info("grid %s: %d cells, %d finished before, %d to run", grid.name, len(cells), len(cells) - len(todo), len(todo))
    storage = storage or default_storage(tracker)
    name = f"{grid.name}-{grid_digest(cells)}"
    if todo:
        connect(address, num_cpus, worker_logs)
        ctx = {"tracking_uri": tracker.uri, "experiment": tracker.experiment, "parent_run_id": parent_id,
               "grid": grid.name, "git_commit": commit, "select": grid.select, "cpu": grid.resources.cpu,
               "cwd": os.getcwd()}
        trainable = tune.with_resources(tune.with_parameters(_trial, ctx=ctx),
                                        {"cpu": grid.resources.cpu, "gpu": grid.resources.gpu})
        path = os.path.join(storage, name) if "://" not in storage else f"{storage.rstrip('/')}/{name}"
        if tune.Tuner.can_restore(path):
            log.info("resuming the Tune experiment at %s", path)
            tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable, param_space={"cell": tune.grid_search([cell_record(c) for c in cells])},
                tune_config=tune.TuneConfig(max_concurrent_trials=grid.max_concurrent, trial_dirname_creator=_trial_dirname,
                                            trial_name_creator=lambda t: trial_name(t.config["cell"])),
                run_config=tune.RunConfig(name=name, storage_path=storage, verbose=verbose,
                                          callbacks=[CellProgress(len(cells))],
                                          failure_config=tune.FailureConfig(max_failures=grid.max_failures),
                                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
        tuner.fit()
    finished = tracker.finished("cell")
    failed = [c.cell_id for c in cells if c.cell_id not in finished]
    close_orphans(tracker, failed)
    out = report_dir or str((local_root(tracker.uri) or Path("mlruns").resolve()) / "reports" / grid.name)
    files = publish_report(grid, tracker, out, cells=cells)
    tracker.finish(parent_id, "FINISHED" if not failed else "FAILED")
    return GridOutcome(grid.name, len(cells), len(cells) - len(failed), failed, parent_id, tracker.uri,
                       tracker.experiment_id, os.path.join(storage, name), files)
