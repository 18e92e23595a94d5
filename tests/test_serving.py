"""Served models end to end with real parts (slow, kept in CI): a tiny grid run by ray_jobs/grid.py (local Ray)
against an MLflow tracking server on 127.0.0.1 registers its best cells on validation; the champion found by
its alias is served by `mlflow models serve` and answers real HTTP requests with the lists `proex recommend`
gives for the same run; bad requests get a 4xx with a message; a rerun registers nothing twice; promote moves
the alias.

Run: OMP_NUM_THREADS=1 PYTHONPATH=. python -m pytest -q -m slow tests/test_serving.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import pandas as pd
import pytest

pytest.importorskip("ray")
pytest.importorskip("mlflow")

from infra_services import REPO, base_env, free_ports  # noqa: E402

from proex.data.registry import load_dataset  # noqa: E402
from proex.infra.mlflow_server import serve_model, start_server, stop_server  # noqa: E402
from proex.infra.tracker import Tracker  # noqa: E402

pytestmark = pytest.mark.slow

GRID = textwrap.dedent("""
    name: serve
    axes: {model: [lightgcn, multvae], plugin: [base, proex], dataset: [synthetic], seed: [0, 1]}
    fixed: {profiles: synthetic-latent, train: {epochs: 4, eval_every: 2}}
    resources: {cpu: 1, gpu: 0}
    select: val/recall@20
    report: {reference: base}
""")
USERS = [0, 7, 123, 599]


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def frame(columns: list[str], rows: list[list]) -> dict:
    return {"dataframe_split": {"columns": columns, "data": rows}}


def proex(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "proex.cli", *args],
        cwd=REPO,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    proc, uri = start_server(str(root / "mlflow"), "127.0.0.1", free_ports(1)[0])
    grid = root / "serve.yaml"
    grid.write_text(GRID)
    cmd = [
        sys.executable,
        "ray_jobs/grid.py",
        str(grid),
        "--tracking-uri",
        uri,
        "--storage",
        str(root / "tune"),
        "--num-cpus",
        "2",
    ]
    first = subprocess.run(cmd, cwd=REPO, env=base_env(), capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    again = subprocess.run(cmd, cwd=REPO, env=base_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    yield {"uri": uri, "grid": str(grid), "root": root, "first": first.stdout, "again": again.stdout}
    stop_server(proc)


def test_best_cell_on_validation_is_registered_once_with_its_tags(grid_run):
    tracker = Tracker(grid_run["uri"], "proex-serve")
    client = tracker.client
    cells = {r.info.run_id: r for r in tracker.finished("cell").values()}
    assert len(cells) == 8 and all(r.data.tags.get("served_model_id") for r in cells.values())
    parent = tracker.find(kind="grid", key="serve")[0]
    for model in ("lightgcn", "multvae"):
        for plugin in ("base", "proex"):
            name = f"proex-serve-{model}-{plugin}-synthetic"
            versions = client.search_model_versions(f"name = '{name}'")
            assert len(versions) == 1, f"{name}: the rerun registered a second version"
            champion = client.get_model_version_by_alias(name, "champion")
            arm = [r for r in cells.values() if r.data.tags["model"] == model and r.data.tags["plugin"] == plugin]
            best = max(arm, key=lambda r: (r.data.metrics["best_val_recall_at_20"], -int(r.data.tags["seed"])))
            assert champion.run_id == best.info.run_id  # chosen on validation
            assert champion.source == f"models:/{best.data.tags['served_model_id']}"
            tags = champion.tags
            assert float(tags["test_recall_at_20"]) == pytest.approx(best.data.metrics["test_recall_at_20"], rel=1e-5)
            assert tags["seed"] == best.data.tags["seed"] and tags["grid"] == "serve"
            key = f"pvalue/recall_at_20/synthetic/{model}/proex"
            if plugin == "proex":
                assert float(tags["pvalue_recall_at_20"]) == pytest.approx(parent.data.metrics[key], rel=1e-3)
            else:
                assert "pvalue_recall_at_20" not in tags  # the reference arm has no comparison
    assert "registered: models:/proex-serve-lightgcn-proex-synthetic@champion" in grid_run["first"]
    assert "run already version 1" in grid_run["again"]


def served_equals_recommend(url: str, uri: str, run_id: str, tmp_path, k: int = 5) -> pd.DataFrame:
    status, body = post(url, frame(["user", "k"], [[u, k] for u in USERS]))
    assert status == 200, body
    served = pd.DataFrame(body["predictions"])
    out = tmp_path / f"{run_id}.csv"
    done = proex(
        "recommend",
        "--run",
        run_id,
        "--tracking-uri",
        uri,
        "--users",
        *map(str, USERS),
        "--k",
        str(k),
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    want = pd.read_csv(out)
    assert served[["user", "rank", "item"]].values.tolist() == want[["user", "rank", "item"]].values.tolist()
    assert served["score"].to_numpy() == pytest.approx(want["score"].to_numpy(), rel=1e-5, abs=1e-6)
    train = load_dataset("synthetic").train
    for u in USERS:
        assert not set(train[u].indices) & set(served[served.user == u].item)  # training items never served
    return served


@pytest.mark.parametrize("model", ["lightgcn", "multvae"])  # inner-product tables; precomputed lists
def test_champion_served_over_http_answers_like_proex_recommend(grid_run, model, tmp_path):
    uri = grid_run["uri"]
    name = f"proex-serve-{model}-proex-synthetic"
    champion = Tracker(uri, experiment=None).client.get_model_version_by_alias(name, "champion")
    proc, url = serve_model(
        f"models:/{name}@champion", uri, port=free_ports(1)[0], log_path=str(tmp_path / "serve.log"), env=base_env()
    )
    try:
        served = served_equals_recommend(url, uri, champion.run_id, tmp_path)
        # a user may ask for different k on different rows; rows keep the request's order
        status, body = post(url, frame(["user", "k"], [[7, 3], [0, 2]]))
        mixed = pd.DataFrame(body["predictions"])
        assert status == 200 and mixed.user.tolist() == [7, 7, 7, 0, 0]
        first = served[served.user == 7].item[:3].tolist() + served[served.user == 0].item[:2].tolist()
        assert mixed.item.tolist() == first
        bad = {
            "unknown user": frame(["user", "k"], [[600, 5]]),
            "positive integer": frame(["user", "k"], [[0, 0]]),
            "send `user`": frame(["k"], [[5]]),
            "no original user ids": frame(["user_id", "k"], [["u1", 5]]),
        }
        if model == "multvae":
            bad["items this model stores per user"] = frame(["user", "k"], [[0, 101]])
        for message, body in bad.items():
            status, answer = post(url, body)
            assert 400 <= status < 500 and message in answer.get("message", ""), (message, status, answer)
            assert "Traceback" not in json.dumps(answer)
        status, answer = post(url, frame(["user", "k"], [["abc", 5]]))  # not an integer: the schema refuses it
        assert 400 <= status < 500 and "Traceback" not in json.dumps(answer), answer
    finally:
        stop_server(proc)
    # `proex recommend --model-uri` reads the same registered model
    out = tmp_path / "model-uri.csv"
    done = proex(
        "recommend",
        "--model-uri",
        f"models:/{name}@champion",
        "--tracking-uri",
        uri,
        "--users",
        *map(str, USERS),
        "--k",
        "5",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    cols = ["user", "rank", "item"]
    assert pd.read_csv(out)[cols].values.tolist() == served[cols].values.tolist()
    done = proex("recommend", "--model-uri", f"models:/{name}@champion", "--tracking-uri", uri, "--users", "600")
    assert done.returncode == 2 and "unknown user [600]" in done.stderr and "Traceback" not in done.stderr


def test_promote_moves_the_alias_and_registering_again_adds_nothing(grid_run):
    uri, client = grid_run["uri"], Tracker(grid_run["uri"], experiment=None).client
    name = "proex-serve-lightgcn-base-synthetic"
    champion = client.get_model_version_by_alias(name, "champion")
    tracker = Tracker(uri, "proex-serve")
    other = next(
        r
        for r in tracker.finished("cell").values()
        if r.data.tags["model"] == "lightgcn" and r.data.tags["plugin"] == "base" and r.info.run_id != champion.run_id
    )
    done = proex(
        "models", "register", "--grid", grid_run["grid"], "--tracking-uri", uri, "--promote", other.info.run_id
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert client.get_model_version_by_alias(name, "champion").run_id == other.info.run_id
    done = proex("models", "register", "--grid", grid_run["grid"], "--tracking-uri", uri)
    assert done.returncode == 0 and '"new_version": true' not in done.stdout, done.stdout + done.stderr[-3000:]
    assert client.get_model_version_by_alias(name, "champion").run_id == other.info.run_id  # the promotion stays
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
    done = proex("models", "register", "--grid", grid_run["grid"], "--tracking-uri", uri, "--promote", "nope")
    assert done.returncode == 2 and "not a finished cell of grid 'serve'" in done.stderr


def test_ui_lists_the_logged_models_and_the_registered_champion(grid_run, tmp_path):
    """The experiment's Models tab lists the cells' logged models (with their test metrics and dataset), and a
    registered model's page shows its versions and the `champion` alias. Screenshots: the test's folder, and
    $PROEX_UI_SCREENSHOTS when set."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    from test_ui import _browser, _keep

    uri = grid_run["uri"]
    exp = Tracker(uri, "proex-serve").experiment_id
    name = "proex-serve-lightgcn-proex-synthetic"
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1900, "height": 800})
        page.add_init_script("localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true')")
        page.goto(f"{uri}/#/experiments/{exp}/models?workflowType=machine_learning")
        page.get_by_text("recommender").first.wait_for(timeout=90_000)
        page.get_by_text("test_recall_at_20").first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "ui-models-tab.png"))
        body = page.inner_text("body")
        _keep(tmp_path, "ui-models-tab.png")
        assert body.count("recommender") >= 8 and "synthetic" in body and "test_recall_at_20" in body, body[:3000]
        page.goto(f"{uri}/#/models/{name}")
        page.get_by_text("champion").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "ui-registered-model.png"))
        _keep(tmp_path, "ui-registered-model.png")
        assert name in page.inner_text("body") and "Version 1" in page.inner_text("body")
        page.goto(f"{uri}/#/models/{name}/versions/1")
        page.get_by_text("pvalue_recall_at_20").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "ui-model-version.png"), full_page=True)
        _keep(tmp_path, "ui-model-version.png")
        browser.close()
