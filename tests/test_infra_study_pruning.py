"""A pruned two-arm study end to end (slow, kept in CI): `ray_jobs/tune.py` on a local Ray, SQLite storage,
MLflow in SQLite. Half of the space is hopeless (lr 1e-9 trains nothing): the median pruner stops such trials
at their warm-up epoch, they are PRUNED in Optuna with KILLED runs tagged pruned=true and their curve so far,
and each arm ends with exactly its budget. Both arms' winners are written with the provenance that shows they
were tuned alike; the study report's files exist and are on each study run; optuna-dashboard serves the study.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest
import yaml

pytest.importorskip("ray")
optuna = pytest.importorskip("optuna")

from infra_services import BIN, REPO, base_env, free_ports, start_driver, stop_group  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from proex.infra.tracker import Tracker  # noqa: E402

pytestmark = pytest.mark.slow

N_TRIALS = 5
GRID = f"""
name: pruned
axes: {{model: [lightgcn], plugin: [base, proex], dataset: [synthetic], seed: [0]}}
fixed: {{profiles: synthetic-latent, train: {{epochs: 12, eval_every: 3, patience: 100}}}}
hparams: hp
resources: {{cpu: 1}}
study:
  arms: [base, proex]
  n_trials: {N_TRIALS}
  concurrency: 2
  pruner: {{type: median, n_startup_trials: 1, n_warmup_steps: 3}}
  space:
    train.lr: {{type: categorical, choices: [1.0e-9, 1.0e-2]}}   # half of the trials are hopeless
    model_config.layers: {{type: int, low: 1, high: 2}}
  arm_space:
    proex: {{plugin_config.reg_weight: {{type: categorical, choices: [0.1, 0.4]}}}}
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The two-arm study, run once to its end by the driver."""
    tmp = tmp_path_factory.mktemp("pruned")
    (tmp / "study.yaml").write_text(GRID)
    uri, storage = f"sqlite:///{tmp}/mlruns/mlflow.db", f"sqlite:///{tmp}/mlruns/optuna.db"
    ray_tmp = tempfile.mkdtemp(prefix="pxp", dir="/tmp")
    log = str(tmp / "tune.log")
    driver = start_driver(
        ["ray_jobs/tune.py", str(tmp / "study.yaml"), "--address", "local", "--num-cpus", "2", "--tracking-uri", uri],
        log,
        {**base_env(), "RAY_TMPDIR": ray_tmp},
    )
    try:
        assert driver.wait(900) == 0, open(log).read()[-4000:]
    finally:
        stop_group(driver, wait_s=30)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    outs = [json.loads(line) for line in open(log) if line.startswith('{"study"')]
    return {"tmp": tmp, "uri": uri, "storage": storage, "log": open(log).read(), "outs": outs}


def test_hopeless_trials_are_pruned_their_runs_say_so_and_each_arm_ends_with_its_budget(finished):
    tracker = Tracker(finished["uri"], "proex-pruned")
    runs = {r.data.tags["key"]: r for r in tracker.find(kind="trial")}
    names = optuna.study.get_all_study_names(finished["storage"])
    assert len(names) == 2
    for name in names:
        trials = optuna.load_study(study_name=name, storage=finished["storage"]).get_trials()
        states = [t.state for t in trials]
        assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == N_TRIALS == len(trials)
        pruned = [t for t in trials if t.state == TrialState.PRUNED]
        assert pruned, f"{name}: no trial was pruned"
        full = max(t.last_step for t in trials if t.state == TrialState.COMPLETE)
        for t in pruned:
            run = runs[f"{name}#{t.number}"]
            assert run.info.status == "KILLED" and run.data.tags["pruned"] == "true"
            assert "pruned by the median pruner" in run.data.tags["stop_reason"]
            curve = tracker.client.get_metric_history(run.info.run_id, "val_recall_at_20")
            assert sorted(m.step for m in curve) == sorted(t.intermediate_values) and t.last_step < full
        for t in trials:
            if t.state == TrialState.COMPLETE:
                assert runs[f"{name}#{t.number}"].info.status == "FINISHED"
        best = optuna.load_study(study_name=name, storage=finished["storage"]).best_trial
        assert best.params["train.lr"] == 1e-2  # the hopeless half never wins


def test_both_arms_winners_are_written_and_say_they_were_tuned_alike(finished):
    sources = {}
    for arm in ("base", "proex"):
        body = yaml.safe_load((finished["tmp"] / "hp" / f"lightgcn-{arm}-synthetic.yaml").read_text())
        assert body["train"]["lr"] == 1e-2
        sources[arm] = body["source"]
        assert sources[arm]["arm"] == arm and sources[arm]["arms"] == ["base", "proex"]
        assert sources[arm]["complete_trials"] + sources[arm]["pruned_trials"] == N_TRIALS
    alike = ("n_trials", "sampler", "sampler_seed", "pruner")
    assert {k: sources["base"][k] for k in alike} == {k: sources["proex"][k] for k in alike}
    assert sources["base"]["n_trials"] == N_TRIALS and sources["base"]["pruner"]["type"] == "median"
    assert (
        "reg_weight"
        in yaml.safe_load((finished["tmp"] / "hp" / "lightgcn-proex-synthetic.yaml").read_text())["plugin_config"]
    )  # the arm's own parameter


def test_the_study_report_is_written_and_put_on_each_study_run(finished, tmp_path):
    tracker = Tracker(finished["uri"], "proex-pruned")
    always = {
        "report.md",
        "trials.csv",
        "best_curve.csv",
        "best_curve.png",
        "optimization_history.png",
        "parallel_coordinate.png",
        "slice.png",
        "intermediate_values.png",
    }
    for out in finished["outs"]:
        text = open(out["report"]["report.md"]).read()
        # importances need COMPLETE trials whose parameters differ; the hopeless lr is pruned, so an arm whose
        # complete trials all share lr 1e-2 (and nothing else varies) gets the line that says so instead
        degenerate = "No parameter importances: parameter importances need parameters that differ" in text
        expected = always if degenerate else always | {"param_importances.png"}
        assert set(out["report"]) == expected and all(os.path.getsize(p) > 0 for p in out["report"].values())
        run = tracker.find(kind="study", key=out["study"])[0]
        logged = {os.path.basename(a.path) for a in tracker.client.list_artifacts(run.info.run_id, "report")}
        assert logged == expected
        note = tracker.client.get_run(run.info.run_id).data.tags["mlflow.note.content"]
        assert note.startswith(f"# Study {out['study']}") and "PRUNED" in note and "slice.png" in note
        assert "optuna-dashboard sqlite:///" in out["dashboard"]
        assert f"open it in the dashboard (pip install -e '.[dashboard]'): {out['dashboard']}" in finished["log"]
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "proex.cli",
            "report",
            str(finished["tmp"] / "study.yaml"),
            "--tracking-uri",
            finished["uri"],
            "--out",
            str(tmp_path),
            "--no-log",
        ],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert {r["study"] for r in json.loads(again.stdout)} == {o["study"] for o in finished["outs"]}
    assert len(list(tmp_path.glob("*/report.md"))) == 2


def test_the_dashboard_serves_the_finished_study(finished):
    if shutil.which("optuna-dashboard", path=str(BIN)) is None:
        pytest.fail("optuna-dashboard is not installed: pip install -e '.[dashboard]' (scripts/install.sh does)")
    port = free_ports(1)[0]
    cmd = finished["outs"][0]["dashboard"].replace("--port 8080", f"--port {port}").split()
    proc = subprocess.Popen(
        [str(BIN / cmd[0]), *cmd[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline, body = time.time() + 60, None
        while time.time() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=3) as resp:
                    body = json.loads(resp.read())
            except (TimeoutError, OSError):
                assert proc.poll() is None, "optuna-dashboard exited"
                time.sleep(0.5)
        assert body is not None, "optuna-dashboard did not answer within 60 s"
        shown = {s["study_name"]: s["study_id"] for s in body["study_summaries"]}
        assert set(shown) == {o["study"] for o in finished["outs"]}
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/studies/{shown[finished['outs'][0]['study']]}", timeout=10
        ) as resp:
            states = [t["state"] for t in json.loads(resp.read())["trials"]]
        assert len(states) == N_TRIALS and "Pruned" in states and "Complete" in states
    finally:
        stop_group(proc, wait_s=10)


def test_rerunning_the_finished_study_finds_it_finished(finished):
    """The winners the first run wrote into the hparams files change the cells, not the studies' names: the same
    command again opens the same two studies, asks no trial and writes the same winners."""
    before = {p.name: p.read_text() for p in (finished["tmp"] / "hp").glob("*.yaml")}
    ray_tmp = tempfile.mkdtemp(prefix="pxp", dir="/tmp")
    log = str(finished["tmp"] / "tune-again.log")
    args = ["ray_jobs/tune.py", str(finished["tmp"] / "study.yaml"), "--address", "local", "--num-cpus", "2"]
    driver = start_driver([*args, "--tracking-uri", finished["uri"]], log, {**base_env(), "RAY_TMPDIR": ray_tmp})
    try:
        assert driver.wait(600) == 0, open(log).read()[-4000:]
    finally:
        stop_group(driver, wait_s=30)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    outs = [json.loads(line) for line in open(log) if line.startswith('{"study"')]
    assert {o["study"] for o in outs} == {o["study"] for o in finished["outs"]}
    names = optuna.study.get_all_study_names(finished["storage"])
    assert sorted(names) == sorted(o["study"] for o in finished["outs"])
    for name in names:
        assert len(optuna.load_study(study_name=name, storage=finished["storage"]).get_trials()) == N_TRIALS

    def unstamped(text: str) -> dict:  # the winner and its provenance, without the time it was written
        body = yaml.safe_load(text)
        body["source"].pop("written")
        return body

    after = {p.name: unstamped(p.read_text()) for p in (finished["tmp"] / "hp").glob("*.yaml")}
    assert after == {k: unstamped(v) for k, v in before.items()}
