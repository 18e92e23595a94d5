"""Grids on a two-node Ray cluster (`ray.cluster_utils.Cluster`, slow, kept in CI), tracked on the MLflow server
backed by PostgreSQL with proxied artifacts (conftest.pg_mlflow):
* 2 logical GPUs on 2 nodes: each run records its node and the GPU Ray gave it, and a GPU holds one trial at
  a time; the second node has its own scratch folders (TMPDIR, HOME), its trials' checkpoints reach the
  server's artifact store, and `proex recommend --run` finds them after that node's folders are gone;
* a worker node removed mid-grid: its trials are retried on the other node from their checkpoints, and MLflow
  ends with one run per cell, all FINISHED (no duplicate, none left RUNNING).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

pytest.importorskip("ray")
pytest.importorskip("mlflow")

from infra_services import REPO, base_env, stop_group  # noqa: E402

from proex.infra.tracker import Tracker  # noqa: E402

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent("""
    import json, os, sys, threading, time
    import ray
    from ray.cluster_utils import Cluster
    args = json.loads(sys.argv[1])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": args["gpus"],
                                                            "include_dashboard": False})
    scratch = args["scratch"]
    worker = cluster.add_node(num_cpus=2, num_gpus=args["gpus"], env_vars={"TMPDIR": scratch, "HOME": scratch})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    from proex.grid import load_grid
    from proex.infra.tracker import Tracker
    from proex.infra.tune_grid import experiment_name, run_grid
    grid = load_grid(args["grid"])
    removed = []

    def remove_worker_mid_trial():  # once a trial on the worker node has logged a validation
        tracker = Tracker(args["uri"], experiment_name(grid))
        while True:
            for run in tracker.find(kind="cell", node=worker.node_id):
                if run.info.status == "RUNNING" and tracker.client.get_metric_history(
                    run.info.run_id, "val_recall_at_20"
                ):
                    cluster.remove_node(worker)
                    removed.append(run.data.tags["cell_id"])
                    return
            time.sleep(0.5)

    if args["remove"]:
        threading.Thread(target=remove_worker_mid_trial, daemon=True).start()
    out = run_grid(grid, args["uri"], args["tune"], args["tune"] + "/rep", verbose=0)
    print("OUTCOME", json.dumps({"finished": out.finished, "failed": out.failed, "removed": removed,
                                 "head": cluster.head_node.node_id, "worker": worker.node_id}), flush=True)
    ray.shutdown()
    cluster.shutdown()
""")


def run_cluster(tmp_path, grid_text: str, uri: str, gpus: int, remove: bool) -> dict:
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent(grid_text))
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    scratch = tempfile.mkdtemp(prefix="proex-node-")
    ray_tmp = tempfile.mkdtemp(prefix="pxn", dir="/tmp")  # short: Ray's socket paths have a length limit
    args = {
        "grid": str(grid),
        "uri": uri,
        "tune": str(tmp_path / "tune"),
        "gpus": gpus,
        "remove": remove,
        "scratch": scratch,
    }
    proc = subprocess.Popen(
        [sys.executable, str(script), json.dumps(args)],
        env={**base_env(), "RAY_TMPDIR": ray_tmp},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=480)
    finally:
        stop_group(proc, wait_s=5)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)  # the worker node's own folders are gone from here on
    line = next((ln for ln in out.splitlines() if ln.startswith("OUTCOME")), None)
    assert line is not None, out[-5000:]
    return json.loads(line[len("OUTCOME") :])


def test_two_nodes_with_a_logical_gpu_each_record_devices_and_serve_artifacts(pg_mlflow, tmp_path):
    uri, artifacts = pg_mlflow
    outcome = run_cluster(
        tmp_path,
        """
        name: two_gpu_nodes
        axes: {model: [lightgcn], plugin: [base], dataset: [synthetic], seed: [0, 1, 2, 3]}
        fixed: {train: {epochs: 9, eval_every: 3}}
        resources: {cpu: 1, gpu: 1}
    """,
        uri,
        gpus=1,
        remove=False,
    )
    assert outcome["finished"] == 4 and outcome["failed"] == []
    runs = Tracker(uri, "proex-two_gpu_nodes").find(kind="cell")
    assert len(runs) == 4 and {r.data.tags["node"] for r in runs} == {outcome["head"], outcome["worker"]}
    for run in runs:
        assert (run.data.tags["ray_gpu_ids"], run.data.tags["cuda_visible_devices"], run.data.tags["device"]) == (
            "0",
            "0",
            "cpu",
        )
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    for node in (outcome["head"], outcome["worker"]):  # one GPU per node: its trials never overlapped
        mine = sorted((r.info.start_time, r.info.end_time) for r in runs if r.data.tags["node"] == node)
        assert all(a[1] <= b[0] for a, b in zip(mine, mine[1:])), mine
    remote = next(r for r in runs if r.data.tags["node"] == outcome["worker"])
    stored = list(artifacts.rglob(f"{remote.info.run_id}/artifacts/checkpoint/checkpoint.pt"))
    assert len(stored) == 1  # uploaded through the server into its artifact store
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "proex.cli",
            "recommend",
            "--run",
            remote.info.run_id,
            "--users",
            "0",
            "1",
            "--k",
            "5",
            "--tracking-uri",
            uri,
        ],
        cwd=elsewhere,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [ln for ln in done.stdout.splitlines()[1:] if ln.strip()]
    assert len(rows) == 10 and done.stdout.startswith("user,rank,item,score")


def test_worker_node_removed_mid_grid_retries_its_trials_without_duplicate_or_running_runs(pg_mlflow, tmp_path):
    uri, _ = pg_mlflow
    outcome = run_cluster(
        tmp_path,
        """
        name: node_loss
        axes: {model: [lightgcn], plugin: [base], dataset: [synthetic], seed: [0, 1, 2, 3]}
        fixed: {train: {epochs: 60, eval_every: 3, patience: 100}}
        resources: {cpu: 1}
        max_failures: 3
    """,
        uri,
        gpus=0,
        remove=True,
    )
    assert outcome["finished"] == 4 and outcome["failed"] == [] and len(outcome["removed"]) == 1
    tracker = Tracker(uri, "proex-node_loss")
    runs = tracker.find(kind="cell")
    assert len(runs) == 4 and len({r.data.tags["cell_id"] for r in runs}) == 4  # no duplicate runs
    assert all(r.info.status == "FINISHED" for r in runs)  # none orphaned RUNNING
    victim = next(r for r in runs if r.data.tags["cell_id"] == outcome["removed"][0])
    assert int(victim.data.tags["resumes"]) >= 1 and victim.data.tags["node"] == outcome["head"]  # retried there
    for run in runs:
        steps = [m.step for m in tracker.client.get_metric_history(run.info.run_id, "val_recall_at_20")]
        assert len(steps) == len(set(steps))
