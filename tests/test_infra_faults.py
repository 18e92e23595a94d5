"""Faults (slow, kept in CI), each with real processes on a local Ray:
* a trial's worker is killed mid-way: Tune retries it from its checkpoint and the grid completes;
* the driver is killed mid-grid: resubmitting the grid finishes the rest, the interrupted cells resuming from the
  states the killed launch saved, with one MLflow run per cell and the cells finished before the kill left alone;
  a cell whose run is then deleted runs again, from scratch, on the next launch;
* an Optuna study with a median pruner over a half-hopeless space has its driver killed: the rerun ends with
  exactly its budget of COMPLETE + PRUNED trials (the pruned ones KILLED in MLflow and tagged pruned=true),
  the trials the dead driver left RUNNING failed and re-queued, nothing RUNNING, and the winner written back.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import textwrap

import pytest

pytest.importorskip("ray")
optuna = pytest.importorskip("optuna")

from infra_services import base_env, start_driver, stop_group, wait_for  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from proex.infra.tracker import Tracker, is_finished  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_env():
    """The drivers' environment, with a Ray temp folder of this test's own (short: socket paths are limited)."""
    tmp = tempfile.mkdtemp(prefix="pxt", dir="/tmp")
    yield {**base_env(), "RAY_TMPDIR": tmp}
    shutil.rmtree(tmp, ignore_errors=True)


def test_killed_trial_is_retried_and_killed_driver_resumes_without_duplicates(tmp_path, ray_env):
    grid = tmp_path / "faults.yaml"
    grid.write_text(
        textwrap.dedent("""
        name: faults
        axes: {model: [lightgcn], plugin: [base], dataset: [synthetic], seed: [0, 1, 2, 3]}
        fixed: {train: {epochs: 150, eval_every: 3, patience: 100}}
        resources: {cpu: 1}
        max_failures: 2
    """)
    )
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    args = ["ray_jobs/grid.py", str(grid), "--address", "local", "--num-cpus", "2", "--tracking-uri", uri]
    log1, log2 = str(tmp_path / "driver1.log"), str(tmp_path / "driver2.log")
    driver = start_driver(args, log1, ray_env)
    try:
        wait_for(
            lambda: "grid faults: 4 cells" in open(log1).read(),
            180,
            "the driver's MLflow store",
            proc=driver,
            log_path=log1,
        )
        tracker = Tracker(uri, "proex-faults")

        def running_with_history():
            for run in tracker.find(kind="cell"):
                hist = tracker.client.get_metric_history(run.info.run_id, "val_recall_at_20")
                if run.info.status == "RUNNING" and len(hist) >= 3 and "pid" in run.data.tags:
                    return run
            return None

        victim = wait_for(running_with_history, 300, "a trial with 3 validations", proc=driver, log_path=log1)
        os.kill(int(victim.data.tags["pid"]), signal.SIGKILL)  # the trial's worker dies mid-training
        cell = victim.data.tags["cell_id"]
        last_before_kill = max(
            m.step for m in tracker.client.get_metric_history(victim.info.run_id, "val_recall_at_20")
        )

        def resumed_and_one_finished():
            run = tracker.find(kind="cell", key=cell)[0]
            return int(run.data.tags.get("resumes", 0)) >= 1 and len(tracker.finished()) >= 1

        wait_for(
            resumed_and_one_finished, 300, "the retried trial to resume from its checkpoint", proc=driver, log_path=log1
        )
        before = {k: r.info.end_time for k, r in tracker.finished().items()}
        assert len(before) < 4, "the grid finished before the driver could be killed"
    finally:
        stop_group(driver, signal.SIGKILL, wait_s=30)  # the driver and its local Ray die mid-grid

    def curve(run, key="val_recall_at_20"):
        return tracker.client.get_metric_history(run.info.run_id, key)

    # Cells cut off with two validations or more: the first one's state was on storage before the second was logged.
    cut = {
        r.data.tags["cell_id"]: max(m.step for m in curve(r))
        for r in tracker.find(kind="cell")
        if not is_finished(r) and len(curve(r)) >= 2
    }
    driver2 = start_driver(args, log2, ray_env)
    try:
        assert driver2.wait(480) == 0, open(log2).read()[-4000:]
    finally:
        stop_group(driver2, wait_s=30)
    # The rerun is a fresh Tune experiment whose unfinished cells resume from the states the killed launch saved
    # (not Tune's restore, whose snapshot may name a checkpoint replaced since: its trials then fail every retry).
    assert "from the trainer state an earlier launch saved" in open(log2).read()
    for cid, step in cut.items():  # ... and went on from there, not from epoch 0
        run = tracker.find(kind="cell", key=cid)[0]
        assert [m.value for m in curve(run, "fit_start_epoch") if m.step > step] and all(
            m.value >= 1 for m in curve(run, "fit_start_epoch") if m.step > step
        ), (cid, step, curve(run, "fit_start_epoch"))
    runs = tracker.find(kind="cell")
    assert len(runs) == 4 and len({r.data.tags["cell_id"] for r in runs}) == 4  # no duplicate runs
    finished = tracker.finished()
    assert len(finished) == 4
    assert all(finished[k].info.end_time == t for k, t in before.items())  # finished cells were not rerun
    assert int(finished[cell].data.tags["resumes"]) >= 1
    # The killed trial's run continues after its last logged step, from its saved state: every point past that
    # step was logged by a fit that started at a saved epoch (>= 1; at most the epoch after the next validation,
    # had the state been saved but the point not yet logged when the worker died), not by a retrain from epoch 0
    # whose repeated early points the recorder would drop unseen.
    starts = {m.step: m.value for m in tracker.client.get_metric_history(finished[cell].info.run_id, "fit_start_epoch")}
    after = sorted(step for step in starts if step > last_before_kill)
    assert after and after[0] in (last_before_kill + 3, last_before_kill + 6), (last_before_kill, starts)
    assert 1 <= starts[after[0]] <= last_before_kill + 4, (last_before_kill, starts)
    assert all(starts[a] >= 1 for a in after), (last_before_kill, starts)
    for run in runs:
        steps = [m.step for m in tracker.client.get_metric_history(run.info.run_id, "val_recall_at_20")]
        assert len(steps) == len(set(steps))  # a resumed curve has no duplicate points

    # MLflow's done tag, not Tune's saved experiment, decides what is finished: a run deleted to recompute its
    # cell runs again on the next launch, although the restored Tune experiment counts its trial as ended.
    redo = next(k for k in finished if k != cell)
    tracker.client.delete_run(finished[redo].info.run_id)
    driver3 = start_driver(args, str(tmp_path / "driver3.log"), ray_env)
    try:
        assert driver3.wait(480) == 0, open(tmp_path / "driver3.log").read()[-4000:]
    finally:
        stop_group(driver3, wait_s=30)
    log3 = open(tmp_path / "driver3.log").read()
    assert "earlier launch saved" not in log3  # the deleted run's final state is not resumed from
    again = tracker.finished()
    assert set(again) == set(finished) and again[redo].info.run_id != finished[redo].info.run_id
    redo_starts = tracker.client.get_metric_history(again[redo].info.run_id, "fit_start_epoch")
    assert redo_starts and all(m.value == 0 for m in redo_starts)  # recomputed from scratch
    assert all(again[k].info.end_time == finished[k].info.end_time for k in finished if k != redo)


def test_interrupted_pruned_study_ends_with_its_budget_and_nothing_running(tmp_path, ray_env):
    grid = tmp_path / "study.yaml"
    grid.write_text(
        textwrap.dedent("""
        name: study
        axes: {model: [lightgcn], plugin: [base], dataset: [synthetic], seed: [0]}
        fixed: {train: {epochs: 400, eval_every: 3, patience: 200}}  # long enough that the trial killed
        hparams: hp                                                        # mid-training cannot finish after it
        resources: {cpu: 1}
        study:
          n_trials: 5
          concurrency: 2
          heartbeat_s: 1
          grace_s: 5
          pruner: {type: median, n_startup_trials: 1, n_warmup_steps: 3}
          sampler_seed: 9  # its draws: good, hopeless, good, hopeless, good, good: the first hopeless one is
          space:           # pruned (or completes) beside the first good one, the second is pruned at epoch 3
            train.lr: {type: categorical, choices: [1.0e-9, 1.0e-2]}  # half of the trials are hopeless
    """)
    )
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    storage = f"sqlite:///{tmp_path}/mlruns/optuna.db"
    args = ["ray_jobs/tune.py", str(grid), "--address", "local", "--num-cpus", "2", "--tracking-uri", uri]
    log1, log2 = str(tmp_path / "tune1.log"), str(tmp_path / "tune2.log")

    def names():
        return optuna.study.get_all_study_names(storage) if os.path.exists(storage[len("sqlite:///") :]) else []

    def trials():
        return optuna.load_study(study_name=names()[0], storage=storage).get_trials() if names() else []

    tracker = None

    def one_complete_one_pruned_and_one_mid_training():
        nonlocal tracker
        ts = trials()
        if not any(t.state == TrialState.COMPLETE for t in ts) or not any(t.state == TrialState.PRUNED for t in ts):
            return False
        tracker = tracker or Tracker(uri, "proex-study")
        for t in ts:
            if t.state == TrialState.RUNNING:
                for run in tracker.find(kind="trial", key=f"{names()[0]}#{t.number}"):
                    if run.info.status == "RUNNING" and tracker.client.get_metric_history(
                        run.info.run_id, "val_recall_at_20"
                    ):
                        return True
        return False

    driver = start_driver(args, log1, ray_env)
    try:
        wait_for(
            one_complete_one_pruned_and_one_mid_training,
            400,
            "a complete, a pruned and a mid-training trial",
            proc=driver,
            log_path=log1,
        )
    finally:
        stop_group(driver, signal.SIGKILL, wait_s=30)
    stale = [t.number for t in trials() if t.state == TrialState.RUNNING]
    assert stale  # left behind by the dead driver
    driver2 = start_driver(args, log2, ray_env)
    try:
        assert driver2.wait(480) == 0, open(log2).read()[-4000:]
    finally:
        stop_group(driver2, wait_s=30)
    final = {t.number: t for t in trials()}
    complete = sum(t.state == TrialState.COMPLETE for t in final.values())
    pruned = [n for n, t in final.items() if t.state == TrialState.PRUNED]
    assert complete + len(pruned) == 5 and pruned  # the budget, exactly, pruned trials included
    assert not [t for t in final.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    failed = [n for n in stale if final[n].state == TrialState.FAIL]
    assert failed  # the trial killed mid-training failed ...
    for n in stale:  # ... and was retried with its parameters; one finished before the kill was recovered
        assert final[n].state == TrialState.COMPLETE or any(t.user_attrs.get("retry_of") == n for t in final.values())
    hp = tmp_path / "hp" / "lightgcn-base-synthetic.yaml"
    assert hp.exists() and f"complete_trials: {complete}\n" in hp.read_text()
    assert f"pruned_trials: {len(pruned)}\n" in hp.read_text()
    runs = {r.data.tags["key"]: r for r in Tracker(uri, "proex-study").find(kind="trial")}
    status = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}
    for n, t in final.items():  # every trial is an MLflow run whose status matches the study's record
        run = runs[f"{names()[0]}#{n}"]
        assert run.info.status == status[t.state]
        assert (run.data.tags.get("pruned") == "true") == (t.state == TrialState.PRUNED)
