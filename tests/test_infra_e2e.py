"""End to end with real parts (slow, kept in CI): a token-authenticated Ray head and an MLflow server on
127.0.0.1, the smoke grid submitted with `ray job submit`, and a grid spread over a two-node Ray cluster.

Run: OMP_NUM_THREADS=1 PYTHONPATH=. python -m pytest -q -m slow tests/test_infra_e2e.py tests/test_infra_faults.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

pytest.importorskip("ray")
pytest.importorskip("mlflow")

from infra_services import REPO, RayHead, base_env, free_ports, stop_group  # noqa: E402

from proex import checkpoint  # noqa: E402
from proex.data.registry import load_dataset  # noqa: E402
from proex.grid import load_grid  # noqa: E402
from proex.infra.mlflow_server import start_server, stop_server  # noqa: E402
from proex.infra.tracker import Tracker  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    proc, uri = start_server(str(root), "127.0.0.1", free_ports(1)[0])
    yield uri
    stop_server(proc)


@pytest.fixture(scope="module")
def ray_head():
    head = RayHead(num_cpus=2)
    yield head
    head.stop()


def test_smoke_grid_submitted_as_a_ray_job_lands_in_mlflow(ray_head, mlflow_server, tmp_path):
    done = ray_head.submit(
        ["ray_jobs/grid.py", "grids/smoke.yaml"],
        {"MLFLOW_TRACKING_URI": mlflow_server, "PROEX_TUNE_STORAGE": str(tmp_path / "tune"), "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "8/8 cells finished" in done.stdout and "MLflow UI:" in done.stdout and "report.md" in done.stdout
    # the grid's start says which protocol each comparison trains under (synthetic data: one shared protocol)
    assert "lightgcn/synthetic: one shared protocol for base, proex" in done.stdout + done.stderr

    grid = load_grid(os.path.join(REPO, "grids", "smoke.yaml"))
    cells = grid.expand()
    tracker = Tracker(mlflow_server, "proex-smoke")
    finished = tracker.finished("cell")
    assert set(finished) == {c.cell_id for c in cells}
    assert len(tracker.find(kind="cell")) == len(cells)  # one run per cell
    inter = load_dataset("synthetic")
    for gc in cells:
        run = finished[gc.cell_id]
        assert run.data.tags["model"] == gc.config.model and run.data.tags["seed"] == str(gc.seed)
        assert run.data.tags["git_commit"] != "" and run.data.tags["config_hash"] == gc.cell_id
        assert 0 < run.data.metrics["test_recall_at_20"] <= 1 and "best_epoch" in run.data.metrics
        assert len(tracker.client.get_metric_history(run.info.run_id, "val_recall_at_20")) >= 2
        path = tracker.download(run.info.run_id, "checkpoint/checkpoint.pt", str(tmp_path / gc.cell_id))
        system, _, payload = checkpoint.load(path, inter)
        assert payload["metrics"]["test"]["recall@20"] == pytest.approx(run.data.metrics["test_recall_at_20"])
    parent = tracker.find(kind="grid", key="smoke")[0]
    assert parent.info.status == "FINISHED"
    pvalues = {k: v for k, v in parent.data.metrics.items() if k.startswith("pvalue/")}
    assert {"pvalue/recall_at_20/synthetic/lightgcn/proex", "pvalue/ndcg_at_20/synthetic/multvae/proex"} <= set(pvalues)
    md = tracker.download(parent.info.run_id, "report/report.md", str(tmp_path / "report"))
    text = open(md).read()
    assert "| lightgcn | improv. proex |" in text and "p=" in text


MULTINODE = textwrap.dedent("""
    import json, os, sys
    from ray.cluster_utils import Cluster
    import ray
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    from proex.grid import load_grid
    from proex.infra.tune_grid import run_grid
    out = run_grid(load_grid(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], verbose=0)
    print("OUTCOME", json.dumps({"finished": out.finished, "failed": out.failed,
                                 "nodes": len(ray.nodes())}))
    ray.shutdown()
    cluster.shutdown()
""")


def test_grid_runs_across_a_two_node_cluster(tmp_path):
    grid = tmp_path / "multinode.yaml"
    grid.write_text(
        textwrap.dedent("""
        name: multinode
        axes: {model: [lightgcn], plugin: [base], dataset: [synthetic], seed: [0, 1, 2, 3]}
        fixed: {train: {epochs: 24, eval_every: 3}}
        resources: {cpu: 1}
    """)
    )
    script = tmp_path / "multinode.py"
    script.write_text(MULTINODE)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    ray_tmp = tempfile.mkdtemp(prefix="pxm", dir="/tmp")  # this cluster's own Ray folder (short socket paths)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(grid), uri, str(tmp_path / "tune"), str(tmp_path / "rep")],
        env={**base_env(), "RAY_TMPDIR": ray_tmp},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=420)
    finally:
        stop_group(proc, wait_s=5)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    line = next((ln for ln in out.splitlines() if ln.startswith("OUTCOME")), None)
    assert line is not None, out[-4000:]
    outcome = json.loads(line[len("OUTCOME") :])
    assert outcome == {"finished": 4, "failed": [], "nodes": 2}
    runs = Tracker(uri, "proex-multinode").find(kind="cell")
    assert len(runs) == 4 and len({r.data.tags["node"] for r in runs}) == 2  # trials ran on both nodes
