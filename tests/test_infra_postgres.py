"""The cluster's shared parts on one CPU machine (slow, kept in CI), with a real PostgreSQL (tests/pg_service.py)
behind a real MLflow server with proxied artifacts, and real Ray:
* the smoke grid on a Ray head declaring 1 logical GPU, at `gpu: 0.25`: four cells at a time, each run
  records the GPU Ray assigned and trains on the CPU with one warning line; a cell demanding `cuda` fails
  clearly and leaves no RUNNING run;
* an Optuna study on the same PostgreSQL driven by 3 concurrent workers, killed, and resumed by 3 workers to
  exactly its budget of COMPLETE + PRUNED trials (the workers' trials report to the shared storage and the
  median pruner compares them there);
* two grids submitted at once (`ray job submit`) sharing the tracking server without mixing runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("ray")
pytest.importorskip("mlflow")
optuna = pytest.importorskip("optuna")

from infra_services import REPO, RayHead, base_env, start_driver, stop_group, wait_for  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from proex.grid import load_grid  # noqa: E402
from proex.infra.tracker import Tracker  # noqa: E402

pytestmark = pytest.mark.slow

FRACTIONAL = textwrap.dedent("""
    import dataclasses, json, sys
    import ray
    ray.init(address="local", num_cpus=8, num_gpus=1, include_dashboard=False)  # 8 CPUs: only the GPU limits
    from proex.grid import Resources, load_grid
    from proex.infra.tune_grid import run_grid
    smoke = load_grid("grids/smoke.yaml")
    grids = [dataclasses.replace(smoke, name="smoke_gpu", resources=Resources(cpu=1, gpu=0.25)), load_grid(sys.argv[3])]
    for grid in grids:
        out = run_grid(grid, sys.argv[1], sys.argv[2] + "/" + grid.name, sys.argv[2] + "/rep", verbose=0)
        print("OUTCOME", json.dumps({"grid": out.grid, "finished": out.finished, "failed": out.failed}), flush=True)
""")


def peak_overlap(runs) -> int:
    """The most runs that were RUNNING at one instant (from their MLflow start and end times)."""
    events = sorted(
        [(r.info.start_time, 1) for r in runs] + [(r.info.end_time, -1) for r in runs], key=lambda e: (e[0], e[1])
    )
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def test_fractional_gpus_pack_four_cells_record_the_device_and_fall_back_to_cpu(pg_mlflow, tmp_path):
    uri, artifacts = pg_mlflow
    cuda_grid = tmp_path / "cuda_demanded.yaml"
    cuda_grid.write_text(
        textwrap.dedent("""
        name: cuda_demanded
        axes: {model: [lightgcn], plugin: [base], dataset: [synthetic], seed: [0]}
        fixed: {train: {epochs: 3, eval_every: 3, device: cuda}}
        resources: {cpu: 1, gpu: 0.25}
        max_failures: 0
    """)
    )
    script = tmp_path / "fractional.py"
    script.write_text(FRACTIONAL)
    ray_tmp = tempfile.mkdtemp(prefix="pxg", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**base_env(), "RAY_TMPDIR": ray_tmp, "RAY_DEDUP_LOGS": "0"}
    try:
        done = subprocess.run(
            [sys.executable, str(script), uri, str(tmp_path), str(cuda_grid)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            start_new_session=True,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    out = done.stdout + done.stderr
    outcomes = [json.loads(ln[len("OUTCOME") :]) for ln in done.stdout.splitlines() if ln.startswith("OUTCOME")]
    assert len(outcomes) == 2, out[-5000:]
    cells = load_grid(os.path.join(REPO, "grids", "smoke.yaml")).expand()
    assert outcomes[0] == {"grid": "smoke_gpu", "finished": len(cells), "failed": []}

    tracker = Tracker(uri, "proex-smoke_gpu")
    runs = tracker.find(kind="cell")
    assert len(runs) == len(cells) and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:  # the GPU Ray assigned, and the CPU that trained since this node has no CUDA
        tags = run.data.tags
        assert (tags["ray_gpu_ids"], tags["cuda_visible_devices"], tags["device"]) == ("0", "0", "cpu"), tags
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # through the server, not a local path
    assert peak_overlap(runs) == 4  # 1 GPU / 0.25: four cells at a time, never more (CPUs allow eight)
    fallback = [ln for ln in out.splitlines() if "torch finds no CUDA on this node: training on the CPU" in ln]
    # Every cell warns, naming itself, once per attempt: a trial Tune retried (max_failures) warns again.
    warned = [ln.split("cell ")[1].split(" ")[0] for ln in fallback]
    retries = [ln for ln in out.splitlines() if "failed, retrying" in ln]
    assert set(warned) == {c.cell_id for c in cells} and max(map(warned.count, warned)) <= 2, (fallback, retries)
    assert any(p.name == "checkpoint.pt" for p in artifacts.rglob("*"))  # stored by the server

    failed = outcomes[1]
    assert failed["finished"] == 0 and len(failed["failed"]) == 1
    run = Tracker(uri, "proex-cuda_demanded").find(kind="cell")[0]
    assert run.info.status == "FAILED"  # not left RUNNING
    assert "train.device is 'cuda'" in run.data.tags["error"] and "set train.device: auto" in run.data.tags["error"]
    assert "torch finds no CUDA" in out  # and the user sees why


@pytest.fixture(scope="module")
def ray_head():
    head = RayHead(num_cpus=3)
    yield head
    head.stop()


STUDY = """
name: shared_study
axes: {model: [lightgcn], plugin: [base], dataset: [synthetic], seed: [0]}
fixed: {train: {epochs: 12, eval_every: 3, patience: 100}}
hparams: hp
resources: {cpu: 1}
study:
  n_trials: 7
  concurrency: 1
  heartbeat_s: 1
  grace_s: 6
  pruner: {type: median, n_startup_trials: 2, n_warmup_steps: 3}
  space:
    train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
"""


def test_study_with_three_workers_on_postgres_resumes_to_exactly_its_budget(postgres, pg_mlflow, ray_head, tmp_path):
    uri, _ = pg_mlflow
    storage = postgres.create_database("optuna_shared")
    grid = tmp_path / "study.yaml"
    grid.write_text(STUDY)
    args = ["ray_jobs/tune.py", str(grid), "--address", ray_head.address, "--tracking-uri", uri, "--storage", storage]

    def trials():
        names = optuna.study.get_all_study_names(storage)
        return optuna.load_study(study_name=names[0], storage=storage).get_trials() if names else []

    def start(tag: str) -> list:
        return [start_driver(args, str(tmp_path / f"{tag}{i}.log"), ray_head.env) for i in range(3)]

    first = start("first")
    try:  # three workers ask and tell at once; kill them all once trials are both done and in flight
        wait_for(
            lambda: (
                sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials()) >= 2
                and any(t.state == TrialState.RUNNING for t in trials())
            ),
            300,
            "2 complete trials and 1 running",
            proc=first[0],
            log_path=str(tmp_path / "first0.log"),
        )
    finally:
        for proc in first:
            stop_group(proc, signal.SIGKILL, wait_s=30)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials()) < 7, "finished before the kill"
    second = start("second")
    try:
        for i, proc in enumerate(second):
            assert proc.wait(480) == 0, open(tmp_path / f"second{i}.log").read()[-4000:]
    finally:
        for proc in second:
            stop_group(proc, wait_s=30)
    final = trials()
    complete = sum(t.state == TrialState.COMPLETE for t in final)
    assert complete + sum(t.state == TrialState.PRUNED for t in final) == 7  # the budget, exactly
    assert not [t for t in final if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    tracker = Tracker(uri, "proex-shared_study")
    name = optuna.study.get_all_study_names(storage)[0]
    runs = {}
    for run in tracker.find(kind="trial"):
        assert run.data.tags["key"] not in runs, "two MLflow runs for one trial"
        runs[run.data.tags["key"]] = run
    for t in final:  # every trial that ran is one run whose status matches the study's record
        key = f"{name}#{t.number}"
        if t.user_attrs.get("over_budget"):
            assert key not in runs
        elif t.state == TrialState.COMPLETE:
            assert runs[key].info.status == "FINISHED"
        elif t.state == TrialState.PRUNED:
            assert runs[key].info.status == "KILLED" and runs[key].data.tags["pruned"] == "true"
        elif key in runs:  # a trial asked just before the kill, whose task never started, has no run
            assert runs[key].info.status == "FAILED"
    assert set(runs) <= {f"{name}#{t.number}" for t in final}  # no run without its trial
    assert len(tracker.find(kind="study")) == 1  # the three workers share one study run
    assert f"complete_trials: {complete}" in (tmp_path / "hp" / "lightgcn-base-synthetic.yaml").read_text()


TWO_GRIDS = {
    "grid_a": "axes: {model: [lightgcn], plugin: [base, proex], dataset: [synthetic], seed: [0, 1]}",
    "grid_b": "axes: {model: [multvae], plugin: [base, proex], dataset: [synthetic], seed: [0, 1]}",
}


def test_two_grids_submitted_at_once_share_the_server_without_mixing(pg_mlflow, ray_head, tmp_path):
    uri, _ = pg_mlflow
    paths = {}
    for name, axes in TWO_GRIDS.items():
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(
            f"name: {name}\n{axes}\nfixed: {{profiles: synthetic-latent, train: {{epochs: 6, "
            f"eval_every: 3}}}}\nresources: {{cpu: 1}}\n"
        )
    env_vars = {"MLFLOW_TRACKING_URI": uri, "PROEX_TUNE_STORAGE": str(tmp_path / "tune"), "OMP_NUM_THREADS": "1"}
    with ThreadPoolExecutor(2) as pool:
        jobs = {n: pool.submit(ray_head.submit, ["ray_jobs/grid.py", str(p)], env_vars) for n, p in paths.items()}
        results = {n: j.result() for n, j in jobs.items()}
    for done in results.values():
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        assert "4/4 cells finished" in done.stdout
    for name, path in paths.items():
        tracker = Tracker(uri, f"proex-{name}")
        cells = {c.cell_id for c in load_grid(str(path)).expand()}
        parents = tracker.find(kind="grid")
        assert [p.data.tags["key"] for p in parents] == [name] and parents[0].info.status == "FINISHED"
        runs = tracker.find(kind="cell")
        assert sorted(r.data.tags["cell_id"] for r in runs) == sorted(cells)  # its own cells, each once
        for run in runs:
            assert run.data.tags["grid"] == name and run.info.status == "FINISHED"
            assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
