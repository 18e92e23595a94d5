"""Optuna studies, one per cell of a grid file with a `study` section, resumable, with trials as Ray tasks.

Design: Optuna drives and Ray executes. The driver asks a persistent study for parameters (ask/tell), runs
each trial as a Ray task (`num_cpus` / fractional `num_gpus` from the grid's resources), and tells the value.
We chose this over Ray Tune's `OptunaSearch` because the study storage must be the single source of truth
for resuming: with OptunaSearch, Tune keeps its own copy of the searcher in its experiment folder, counts
Tune trials rather than COMPLETE Optuna trials, and a driver crash leaves RUNNING trials in the Optuna storage
that nothing ever tells, so "rerun continues up to the budget" does not hold. Here:
  * budget: the study stops when it holds `n_trials` finished trials, COMPLETE or PRUNED; a rerun asks only
    for the rest;
  * pruning: each trial's worker reports every validation to the shared storage and stops when the study's
    pruner says so (`pruning`); the trial is told PRUNED and its MLflow run ends KILLED with tag pruned=true;
  * arms: with `study.arms` (e.g. [base, proex]) each plug-in of a comparison gets its own study with the same
    space (plus its `arm_space`), budget, pruner and sampler seed, and its winner file records all four;
  * stale trials: the driver stamps its running trials with a heartbeat (user attr) every `heartbeat_s`; a
    RUNNING trial whose heartbeat is older than `grace_s` belonged to a dead driver: told its value (or PRUNED)
    if its MLflow run got that far, else marked FAIL, its MLflow run FAILED, and its parameters enqueued
    again. Optuna's own heartbeat only exists for RDB storages; this one also works with JournalStorage (a
    journal file on a cluster's NFS);
  * storage: SQLite under mlruns/ by default (`sqlite:///mlruns/optuna.db`), any RDB URL (PostgreSQL on a
    cluster), or a journal file (`journal:/shared/optuna.log`);
  * every trial is an MLflow run (kind=trial) under a study run (kind=study); the best parameters are written
    back as the cell's hyperparameter file (`<grid hparams>/<model>-<plugin>-<dataset>.yaml`) that the
    paper grids read; the study's report (`study_report`) goes on the study run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import optuna
import ray
from optuna.trial import TrialState

from ..config import ConfigError
from ..experiment import resolve
from ..grid import GridCell, GridSpec, apply_params
from ..hparams import HParams, hparams_path, load_hparams, save_hparams
from ..study_spec import StudySpec
from .pruning import PruneTarget, describe_pruner, make_pruner, pruning_hook
from .study_report import dashboard_command, publish_study_report
from .tracked_cell import TrackedCell, TrialContext, run_tracked_cell, was_stopped
from .tracker import Tracker, absolute_sqlite, git_commit, is_finished, local_root, metric_key, redact

log = logging.getLogger("proex.infra.studies")


def open_storage(url: str):
    """An Optuna storage: 'journal:<file>' -> JournalStorage on a file, else an RDB URL (sqlite, postgresql)."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len("journal:") :]).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    url = absolute_sqlite(url)
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def arm_space(spec: StudySpec, plugin: str) -> dict:
    """The parameters one arm's study searches: the shared space plus the arm's own (`arm_space`)."""
    return {**spec.space, **spec.arm_space.get(plugin, {})}


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what the budget counts


def study_name(grid: GridSpec, gc: GridCell) -> str:
    """<grid>/<model>-<plugin>-<dataset>[-<variant>]-<hash of the cell and the space>: a changed space or
    base config starts a new study instead of mixing incompatible trials. The searched parameters are left out
    of the cell's hash, so the winner the study writes into the cell's hparams file keeps the study's name and a
    rerun of a finished study finds it finished."""
    searched = arm_space(grid.study, gc.config.plugin)
    space = json.dumps({k: dataclasses.asdict(v) for k, v in searched.items()}, sort_keys=True)
    cell = gc.resolved.config_hash(leave_out=tuple(searched))
    digest = hashlib.sha256((cell + space).encode()).hexdigest()[:8]
    return f"{grid.name}/{gc.run_name(seed=False)}-{digest}"


def suggest(trial: optuna.Trial, space: dict) -> dict:
    out = {}
    for key, p in space.items():
        if p.type == "categorical":
            out[key] = trial.suggest_categorical(key, p.choices)
        elif p.type == "int":
            out[key] = trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            out[key] = trial.suggest_float(key, float(p.low), float(p.high), step=p.step, log=p.log)
    return out


def reap_stale(
    study: optuna.Study, grace_s: float, tracker: Tracker | None = None, select: str = "recall@20"
) -> list[int]:
    """Settle RUNNING trials whose heartbeat (or start, if none) is older than `grace_s`: a trial whose MLflow
    run finished (the driver died between the run and `tell`) is told its value, one whose run was pruned is
    told PRUNED; any other is marked FAIL,
    its run FAILED, and its parameters enqueued again. Returns the numbers of the trials failed."""
    now, failed = time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.user_attrs.get("heartbeat") or t.datetime_start.timestamp()
        if now - beat <= grace_s:
            continue
        runs = tracker.find(kind="trial", key=f"{study.study_name}#{t.number}") if tracker is not None else []
        done = [r for r in runs if is_finished(r)]
        try:
            if done:
                study.tell(t.number, done[0].data.metrics[metric_key(f"best_val_{select}")])
                log.warning(
                    "study %s: trial %d finished in MLflow but was never told: recovered", study.study_name, t.number
                )
                continue
            if any(was_stopped(r) for r in runs):
                study.tell(t.number, state=TrialState.PRUNED)
                log.warning("study %s: trial %d was pruned but never told: recovered", study.study_name, t.number)
                continue
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # settled meanwhile by another driver
            continue
        failed.append(t.number)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        for run in runs:
            if run.info.status == "RUNNING":
                tracker.finish(run.info.run_id, "FAILED")
        log.warning(
            "study %s: trial %d was RUNNING without a heartbeat for %.0f s: failed, parameters re-queued",
            study.study_name,
            t.number,
            now - beat,
        )
    return failed


def over_budget(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether trial `number`, just asked, would exceed the budget: `n_trials` trials that are COMPLETE, PRUNED,
    RUNNING or WAITING (re-queued) already have lower numbers. Several drivers (workers) may share a study
    (an RDB storage such as PostgreSQL); each counts before asking, but two can count at once. The storage
    numbers trials in order, so ranking by number after the ask lets exactly one of them go on."""
    live = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
    ahead = sum(1 for t in study.get_trials(deepcopy=False, states=live) if t.number < number)
    return ahead >= n_trials


def _run_trial(ctx: TrialContext, tc: TrackedCell, workdir: str, target: PruneTarget) -> dict:
    """One study trial (a Ray task): `run_tracked_cell` into the trial's MLflow run, with the trainer state in
    `workdir` so a retried task resumes, reporting every validation to the trial (`pruning_hook`). Returns
    {"value": best validation value of the selection metric} or {"pruned": why}."""
    work = os.path.join(workdir, tc.key.replace("/", "_").replace("#", "_"))
    os.makedirs(work, exist_ok=True)
    out = run_tracked_cell(ctx, tc, os.path.join(work, "train_state.pt"), work, pruning_hook(target, open_storage))
    shutil.rmtree(work, ignore_errors=True)  # the checkpoint and results (or the curve so far) are in MLflow now
    return {"pruned": out.stopped} if out.stopped else {"value": float(out.best_val[ctx.select])}


def open_study(name: str, storage: str, spec: StudySpec) -> optuna.Study:
    """The study `name` in `storage` (created if missing) with the spec's TPE seed and pruner."""
    return optuna.create_study(
        study_name=name,
        storage=open_storage(storage),
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=spec.sampler_seed),
        pruner=make_pruner(spec.pruner),
        load_if_exists=True,
    )


def run_study(grid: GridSpec, gc: GridCell, tracker: Tracker, storage: str, parent_run_id: str) -> dict:
    """Run (or continue) the study of one cell until it holds its budget of finished (COMPLETE or PRUNED)
    trials, write the winner, and put the study's report on its run."""
    spec, r = grid.study, grid.resources
    name = study_name(grid, gc)
    space = arm_space(spec, gc.config.plugin)
    study = open_study(name, storage, spec)
    srun, _ = tracker.run_for(
        "study",
        name,
        parent_run_id,
        {**gc.labels, "study": name, "storage": redact(storage)},
        {
            "space": {k: dataclasses.asdict(v) for k, v in space.items()},
            "n_trials": spec.n_trials,
            "sampler_seed": spec.sampler_seed,
            "pruner": describe_pruner(spec.pruner),
            "cell": gc.resolved.to_dict(),
        },
        name=name,
        shared=True,
    )
    tracker.reopen(srun.info.run_id)
    task = ray.remote(num_cpus=r.cpu, num_gpus=r.gpu, max_retries=spec.max_failures)(_run_trial)
    ctx = TrialContext(
        tracker.uri,
        tracker.experiment,
        srun.info.run_id,
        "trial",
        grid.name,
        grid.select,
        r.cpu,
        git_commit(),
        os.getcwd(),
    )
    workdir = str((local_root(tracker.uri) or Path("mlruns").resolve()) / "studies")
    tags = {**gc.labels, "study": name}
    inflight: dict = {}
    failures = 0
    while True:
        reap_stale(study, spec.grace_s, tracker, grid.select)
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in trials)
        mine = {t.number for t in inflight.values()}
        others = [t for t in trials if t.state == TrialState.RUNNING and t.number not in mine]
        if finished >= spec.n_trials and not inflight and not others:
            break
        while len(inflight) < spec.concurrency and finished + len(inflight) + len(others) < spec.n_trials:
            trial = study.ask()
            if over_budget(study, trial.number, spec.n_trials):  # another driver asked in the meantime
                trial.set_user_attr("over_budget", True)
                study.tell(trial, state=TrialState.FAIL)
                log.info(
                    "study %s: trial %d is over the budget of %d (another worker asked first): not run",
                    name,
                    trial.number,
                    spec.n_trials,
                )
                break
            trial.set_user_attr("heartbeat", time.time())
            params = suggest(trial, space)
            key = f"{name}#{trial.number}"
            resolved = resolve(apply_params(gc.config, params, f"study trial: {key}"), where=key)
            trial_cell = dataclasses.replace(gc, cell_id=resolved.config_hash(), resolved=resolved)
            tc = TrackedCell(trial_cell, key, key, {**tags, **params, "trial": trial.number})
            target = PruneTarget(storage, name, trial._trial_id, spec.pruner, grid.select)
            ref = task.remote(ctx, tc, workdir, target)
            inflight[ref] = trial
        if not inflight:
            time.sleep(min(spec.heartbeat_s, spec.grace_s / 2))  # others' trials: wait until done or stale
            continue
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=spec.heartbeat_s)
        for ref in ready:
            trial = inflight.pop(ref)
            try:
                out = ray.get(ref)
                if "pruned" in out:
                    study.tell(trial.number, state=TrialState.PRUNED)
                    log.info("study %s: trial %d %s", name, trial.number, out["pruned"])
                else:
                    study.tell(trial, out["value"])
            except (ray.exceptions.RayError, ValueError) as exc:
                study.tell(trial, state=TrialState.FAIL)
                for run in tracker.find(kind="trial", key=f"{name}#{trial.number}"):
                    tracker.finish(run.info.run_id, "FAILED")
                failures += 1
                log.error("study %s: trial %d failed: %s", name, trial.number, exc)
                if failures > spec.max_failures:
                    raise RuntimeError(
                        f"study {name}: {failures} trials failed (max_failures {spec.max_failures})"
                    ) from exc
        for trial in inflight.values():
            trial.set_user_attr("heartbeat", time.time())
    trials = study.get_trials(deepcopy=False)
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    if not complete:
        raise RuntimeError(
            f"study {name}: all {pruned} finished trials were pruned, so there is no winner; "
            f"raise pruner.n_startup_trials or use pruner: {{type: none}} in {grid.path}"
        )
    best = study.best_trial
    arms = spec.arms or list(grid.axes.plugin)
    written = write_hparams(
        grid,
        gc,
        best.params,
        {
            "study": name,
            "arm": gc.config.plugin,
            "arms": arms,
            "n_trials": spec.n_trials,
            "sampler": "TPE",
            "sampler_seed": spec.sampler_seed,
            "pruner": describe_pruner(spec.pruner),
            "storage": redact(storage),
            "trial": best.number,
            "value": best.value,
            "metric": f"val/{grid.select}",
            "complete_trials": complete,
            "pruned_trials": pruned,
            "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
    )
    tracker.log_metrics(
        srun.info.run_id, {f"best_val_{grid.select}": best.value, "complete_trials": complete, "pruned_trials": pruned}
    )
    tracker.set_tags(srun.info.run_id, {"best_params": json.dumps(best.params), "hparams_file": str(written)})
    report = publish_study_report(study, tracker, srun.info.run_id, report_dir(tracker, name), grid.select)
    tracker.finish(srun.info.run_id)
    command = dashboard_command(storage)
    log.info("study %s: %d complete + %d pruned trials; open it with: %s", name, complete, pruned, command)
    return {
        "study": name,
        "arm": gc.config.plugin,
        "best_value": best.value,
        "best_params": best.params,
        "complete": complete,
        "pruned": pruned,
        "hparams_file": str(written),
        "report": report,
        "dashboard": command,
    }


def write_hparams(grid: GridSpec, gc: GridCell, params: dict, source: dict) -> Path:
    """Merge the best parameters into the cell's hyperparameter file (creating it), atomically."""
    path = hparams_path(
        grid.path,
        grid.hparams or "hparams",
        gc.config.model,
        gc.config.plugin,
        gc.config.dataset,
    )
    hp = load_hparams(path) if path.exists() else HParams()
    for key, value in params.items():
        section, _, field = key.partition(".")
        getattr(hp, section)[field] = value
    hp.source = source
    save_hparams(path, hp)
    return path


def study_cells(grid: GridSpec) -> list[GridCell]:
    """The cells a study file tunes: its grid's cells, with `study.arms` as the plug-in axis when given."""
    if grid.study is None:
        raise ConfigError(f"{grid.path}: no study section; add study: {{space: ..., n_trials: ...}}")
    arms = grid.study.arms
    if arms is None:
        return grid.expand()
    extra = sorted(set(grid.axes.plugin) - set(arms))
    if extra:
        raise ConfigError(
            f"{grid.path}: axes.plugin lists {extra}, which study.arms {arms} does not tune; "
            f"set axes.plugin to {arms} (or add them to study.arms)"
        )
    return dataclasses.replace(grid, axes=dataclasses.replace(grid.axes, plugin=list(arms))).expand()


def default_storage(grid: GridSpec, tracker: Tracker) -> str:
    """The grid's study.storage, else SQLite beside the MLflow store (mlruns/optuna.db)."""
    return grid.study.storage or f"sqlite:///{(local_root(tracker.uri) or Path('mlruns').resolve()) / 'optuna.db'}"


def report_dir(tracker: Tracker, name: str) -> str:
    """Where a study's report files go: <MLflow root>/reports/<study name with '/' as '_'>."""
    return str((local_root(tracker.uri) or Path("mlruns").resolve()) / "reports" / name.replace("/", "_"))


def written_by(grid: GridSpec, gc: GridCell) -> str | None:
    """The study that wrote the cell's hparams file (its `source.study`), if any: the report's fallback for a
    study named by an older `study_name`, whose hash still held the winner it wrote."""
    path = hparams_path(
        grid.path,
        grid.hparams or "hparams",
        gc.config.model,
        gc.config.plugin,
        gc.config.dataset,
    )
    return load_hparams(path).source.get("study") if path.exists() else None


def report_studies(
    grid: GridSpec,
    tracking_uri: str | None = None,
    storage: str | None = None,
    out_dir: str | None = None,
    log_files: bool = True,
) -> list[dict]:
    """The report of each study of a study file (finished or not), written again from its storage and MLflow
    runs; with `log_files`, put on its study run. Returns [{study, arm, files}]."""
    from .study_report import write_study_report

    tracker = Tracker(tracking_uri, f"proex-{grid.name}")
    storage = storage or default_storage(grid, tracker)
    out, names = [], optuna.study.get_all_study_names(open_storage(storage))
    for gc in study_cells(grid):
        name = study_name(grid, gc)
        if name not in names:  # a study named before its winner stopped renaming it: the one that wrote the file
            name = written_by(grid, gc) or name
        if name not in names:
            raise ConfigError(
                f"{grid.path}: no study {name} in {redact(storage)}; run it first "
                f"(python ray_jobs/tune.py {grid.path}) or pass the storage it used (--storage)"
            )
        study = open_study(name, storage, grid.study)
        where = os.path.join(out_dir, name.replace("/", "_")) if out_dir else report_dir(tracker, name)
        runs = tracker.find(kind="study", key=name)
        if log_files and runs:
            files = publish_study_report(study, tracker, runs[0].info.run_id, where, grid.select)
        else:
            files = write_study_report(study, tracker, where, grid.select)
        out.append({"study": name, "arm": gc.config.plugin, "files": files, "dashboard": dashboard_command(storage)})
    return out


def run_studies(grid: GridSpec, tracking_uri: str | None = None, storage: str | None = None) -> list[dict]:
    """One study per cell of `grid` (per arm with `study.arms`; its seed axis must hold one seed), one after
    another, each with the same budget, pruner and sampler seed."""
    cells = study_cells(grid)
    if len(grid.axes.seed) != 1:
        raise ConfigError(f"{grid.path}: axes.seed: a study tunes on one seed; give exactly one")
    tracker = Tracker(tracking_uri, f"proex-{grid.name}")
    storage = storage or default_storage(grid, tracker)
    parent, _ = tracker.run_for("grid", grid.name, tags={"grid": grid.name}, name=grid.name, shared=True)
    tracker.reopen(parent.info.run_id)
    out = [run_study(grid, gc, tracker, storage, parent.info.run_id) for gc in cells]
    tracker.finish(parent.info.run_id)
    return out
