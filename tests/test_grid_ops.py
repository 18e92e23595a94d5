"""A grid driven as a user would at full size (slow, kept in CI), with a real MLflow server and a local Ray:
* `--only` runs exactly its slice, the report says which comparisons are incomplete and what the runs cost,
  and the parent run carries the grid's totals;
* `--dry-run` on that half-finished grid lists the slice as finished and the rest as pending, trains nothing
  and starts no Ray;
* SIGINT mid-grid leaves the running cells' runs interrupted (KILLED, tag interrupted=true, no error) and exits
  130; the same command then finishes them from their last validation checkpoint.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("ray")
pytest.importorskip("mlflow")

from infra_services import REPO, base_env, free_ports, start_driver, stop_group, wait_for  # noqa: E402

from proex.grid import load_grid  # noqa: E402
from proex.infra.mlflow_server import start_server, stop_server  # noqa: E402
from proex.infra.tracker import Tracker, is_finished  # noqa: E402

pytestmark = pytest.mark.slow

SLICED = """
name: ops
axes: {model: [lightgcn, multvae], plugin: [base, proex], dataset: [synthetic], seed: [0, 1, 2]}
fixed: {profiles: synthetic-latent, train: {epochs: 3, eval_every: 3}}
resources: {cpu: 1}
"""
STOPPED = """
name: stop
axes: {model: [lightgcn], plugin: [base], dataset: [synthetic], seed: [0, 1]}
fixed: {train: {epochs: 200, eval_every: 3, patience: 1000}}
resources: {cpu: 1}
max_failures: 1
"""


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    proc, uri = start_server(str(tmp_path_factory.mktemp("mlflow-server")), "127.0.0.1", free_ports(1)[0])
    yield uri
    stop_server(proc)


def driver(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "ray_jobs/grid.py", *args],
        env=base_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def sliced(mlflow_uri, tmp_path_factory):
    """The grid of 12 cells with only its multvae cells of seeds 0 and 2 run."""
    tmp = tmp_path_factory.mktemp("sliced")
    path = tmp / "ops.yaml"
    path.write_text(textwrap.dedent(SLICED))
    common = [str(path), "--tracking-uri", mlflow_uri, "--storage", str(tmp / "tune")]
    out = driver(
        common
        + [
            "--address",
            "local",
            "--num-cpus",
            "2",
            "--report-dir",
            str(tmp / "report"),
            "--only",
            "model=multvae",
            "--only",
            "seed=0,2",
        ]
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    cells = load_grid(path).expand()
    want = {c.cell_id for c in cells if c.config.model == "multvae" and c.seed in (0, 2)}
    return {
        "common": common,
        "cells": cells,
        "want": want,
        "out": out,
        "tmp": tmp,
        "tracker": Tracker(mlflow_uri, "proex-ops"),
    }


def test_only_runs_exactly_the_slice_and_reports_what_is_incomplete(sliced):
    tracker = sliced["tracker"]
    runs = tracker.find(kind="cell")
    assert len(sliced["want"]) == 4
    assert {r.data.tags["key"] for r in runs} == sliced["want"] and all(is_finished(r) for r in runs)
    report = (sliced["tmp"] / "report" / "report.md").read_text()
    assert "## Incomplete comparisons" in report
    assert "- synthetic / multvae: proex vs base: 2/3 seeds matched (2 pending)" in report
    assert "- synthetic / lightgcn: proex vs base: 0/3 seeds matched (6 pending)" in report
    cost = re.search(r"\| \*\*grid\*\* \|  \|  \| (\d+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \|", report)
    assert cost and int(cost.group(1)) == 4 and float(cost.group(3)) > 0 and cost.group(4) == "0", report[-1500:]
    parent = tracker.find(kind="grid", key="ops")[0]
    assert parent.data.metrics["grid_finished"] == 4 and parent.data.metrics["grid_pending"] == 0
    lines = [ln for ln in sliced["out"].stdout.splitlines() if ln.startswith("[")]
    assert len(lines) == 4 and re.match(
        r"\[\d/4 finished, \d running, 0 failed, \d pending \| .* elapsed, ETA ", lines[0]
    )


def test_dry_run_lists_finished_and_pending_and_trains_nothing(sliced):
    tracker = sliced["tracker"]
    before = {r.info.run_id: r.info.status for r in tracker.find(kind="cell")}
    out = driver(sliced["common"] + ["--dry-run", "--probe-budget", "0"], timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    states = {
        cid: st
        for st, cid in re.findall(
            r"^  (finished|pending|running|failed|interrupted) +\S+ +([0-9a-f]{12})", out.stdout, re.M
        )
    }
    assert set(states) == {c.cell_id for c in sliced["cells"]}
    assert {k for k, s in states.items() if s == "finished"} == sliced["want"]
    assert {k for k, s in states.items() if s != "finished"} == {c.cell_id for c in sliced["cells"]} - sliced["want"]
    assert set(states.values()) == {"finished", "pending"}
    assert "12 cells, each asking cpu=1 gpu=0; 4 finished, 0 running, 0 interrupted, 0 failed, 8 pending" in out.stdout
    assert re.search(r"multvae/proex/synthetic: .*measured on 2 runs", out.stdout)
    assert "lightgcn/base/synthetic: unknown: no finished run, not probed" in out.stdout
    assert {r.info.run_id: r.info.status for r in tracker.find(kind="cell")} == before  # trained nothing
    assert "Started a local Ray" not in out.stdout + out.stderr
    sliced_plan = driver(sliced["common"] + ["--dry-run", "--probe-budget", "0", "--only", "model=lightgcn"], 300)
    assert "6 cells" in sliced_plan.stdout and "multvae" not in sliced_plan.stdout.split("cost per cell")[0]


def test_sigint_marks_runs_interrupted_and_the_rerun_resumes_them(mlflow_uri, tmp_path):
    path = tmp_path / "stop.yaml"
    path.write_text(textwrap.dedent(STOPPED))
    args = [
        "ray_jobs/grid.py",
        str(path),
        "--address",
        "local",
        "--num-cpus",
        "2",
        "--tracking-uri",
        mlflow_uri,
        "--storage",
        str(tmp_path / "tune"),
        "--report-dir",
        str(tmp_path / "report"),
    ]
    tracker = Tracker(mlflow_uri, "proex-stop")
    log1 = str(tmp_path / "driver1.log")
    proc = start_driver(args, log1)

    def history(run) -> list[int]:
        return [m.step for m in tracker.client.get_metric_history(run.info.run_id, "val_recall_at_20")]

    def all_running_with_history():
        runs = tracker.find(kind="cell")
        return len(runs) == 2 and all(r.info.status == "RUNNING" and len(history(r)) >= 4 for r in runs)

    try:
        wait_for(all_running_with_history, 400, "both cells 4 validations in", proc=proc, log_path=log1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(120) == 130, open(log1).read()[-3000:]
    finally:
        stop_group(proc, wait_s=30)
    text = open(log1).read()
    assert "Resume with the same command" in text and "Traceback" not in text, text[-3000:]
    runs = tracker.find(kind="cell")
    assert runs and all(not is_finished(r) for r in runs), "a cell finished before the stop: make it longer"
    last = {}
    for r in runs:
        assert r.info.status == "KILLED" and r.data.tags.get("interrupted") == "true", (r.info.status, r.data.tags)
        assert "error" not in r.data.tags, r.data.tags["error"]
        last[r.info.run_id] = max(history(r))
    parent = tracker.find(kind="grid", key="stop")[0]
    assert parent.info.status == "KILLED" and parent.data.tags["interrupted"] == "true"
    plan = driver([str(path), "--tracking-uri", mlflow_uri, "--dry-run", "--probe-budget", "0"], timeout=300)
    assert plan.stdout.count("  interrupted ") == 2, plan.stdout

    log2 = str(tmp_path / "driver2.log")
    proc2 = start_driver(args, log2)
    try:
        assert proc2.wait(600) == 0, open(log2).read()[-3000:]
    finally:
        stop_group(proc2, wait_s=30)
    for r in tracker.find(kind="cell"):
        assert is_finished(r) and r.data.tags["interrupted"] == "false"
        steps = history(r)
        assert steps == list(range(0, 200, 3)), steps  # every validation once, none lost, none repeated
        # the trainer state it resumed from: the last validation logged before the stop, or the one before it
        # (Tune registers a validation's checkpoint just after its metrics reach MLflow)
        resumed = int(r.data.tags["resumed_from_epoch"])
        assert last[r.info.run_id] + 1 - 3 <= resumed <= last[r.info.run_id] + 1, (resumed, last[r.info.run_id])
        assert r.data.metrics["attempt"] == 1 and float(r.data.tags["paused_s"]) > 0
    # the report's cost: 2 runs, each retried once; the paused time is not device time
    report = (tmp_path / "report" / "report.md").read_text()
    cost = re.search(r"\| \*\*grid\*\* \|  \|  \| 2 \| ([\d.]+) \| ([\d.]+) \| 2 \| ([\d.]+) \|", report)
    assert cost, report[-1500:]
    paused_h = sum(float(r.data.tags["paused_s"]) for r in tracker.find(kind="cell")) / 3600
    spans_h = sum((r.info.end_time - r.info.start_time) / 3.6e6 for r in tracker.find(kind="cell"))
    assert abs(float(cost.group(2)) - (spans_h - paused_h)) < 0.002 and float(cost.group(3)) < float(cost.group(2))
