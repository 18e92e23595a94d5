"""What a person sees: the console of a grid run and the MLflow UI page its printed link opens.

The slow test runs a two-cell grid with the README's driver (`ray_jobs/grid.py`) against a real MLflow server
on 127.0.0.1, reads its console as a person would (no traceback, readable trial names, one line per cell,
the report's place on the tracking server), then opens the printed links in headless Chromium (Debian's
/usr/bin/chromium driven by Playwright) and checks the runs table (model-training view, both cells as rows,
test metrics and label columns, the dataset) and the grid run's page (the report and its figure).
Screenshots go to the test's tmp folder; with PROEX_UI_SCREENSHOTS=DIR they are copied there too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("mlflow")

from infra_services import REPO, base_env, free_ports  # noqa: E402

from proex.infra.mlflow_server import start_server, stop_server  # noqa: E402
from proex.infra.tracker import EXPERIMENT_KIND, Tracker  # noqa: E402
from proex.infra.ui import links, save_comparison_view  # noqa: E402

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_experiment_opens_as_model_training_with_a_saved_comparison_view(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    t = Tracker(uri, "proex-x")
    exp = t.client.get_experiment(t.experiment_id)
    assert exp.tags[EXPERIMENT_KIND[0]] == "custom_model_development"
    # A store written before the tag existed gets it when a grid opens it again.
    old = t.client.create_experiment("proex-old")
    assert EXPERIMENT_KIND[0] not in t.client.get_experiment(old).tags
    Tracker(uri, "proex-old")
    assert t.client.get_experiment(old).tags[EXPERIMENT_KIND[0]] == "custom_model_development"

    save_comparison_view(t, ["recall@20", "ndcg@20"])
    view = json.loads(t.client.get_experiment(t.experiment_id).tags["mlflow.sharedViewState.proex-comparison"])
    assert view["selectedColumns"][:2] == ["metrics.`test_recall_at_20`", "metrics.`test_ndcg_at_20`"]
    assert {"tags.`model`", "tags.`plugin`", "tags.`dataset`", "tags.`seed`", "attributes.`Dataset`"} <= set(
        view["selectedColumns"]
    )
    assert view["orderByKey"] == "tags.`mlflow.runName`"  # not the creation time: children are listed flat
    url = links(t, "abc")["compare"]
    assert url.endswith(
        f"#/experiments/{t.experiment_id}/runs?viewStateShareKey=proex-comparison&workflowType=machine_learning"
    )


GRID = """\
name: uitest
axes: {model: [lightgcn], plugin: [base, proex], dataset: [synthetic], seed: [0]}
fixed: {profiles: synthetic-latent, train: {epochs: 3, eval_every: 3}}
resources: {cpu: 1, gpu: 0}
report: {reference: base, figures: [curves]}
"""


def _browser(p):
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(exe):
        pytest.fail("Chromium is missing: apt-get update && apt-get install -y chromium (.ci/run does this)")
    return p.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS)


def _keep(folder, *names) -> None:
    """Copy files of the test's folder to $PROEX_UI_SCREENSHOTS when set (before the checks that use them)."""
    keep = os.environ.get("PROEX_UI_SCREENSHOTS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        for name in names:
            shutil.copy(folder / name, keep)


@pytest.mark.slow
def test_grid_console_and_the_ui_its_link_opens(tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    proc, uri = start_server(str(tmp_path / "server"), "127.0.0.1", free_ports(1)[0])
    try:
        grid = tmp_path / "uitest.yaml"
        grid.write_text(GRID)
        env = base_env()
        done = subprocess.run(
            [
                sys.executable,
                "ray_jobs/grid.py",
                str(grid),
                "--tracking-uri",
                uri,
                "--storage",
                str(tmp_path / "tune"),
                "--num-cpus",
                "2",
                "--report-dir",
                str(tmp_path / "report"),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        console = done.stdout + done.stderr
        (tmp_path / "console.txt").write_text(console)
        assert done.returncode == 0, console[-4000:]
        # The console: no traceback, readable names, one line per cell, the report on the tracking server.
        assert "Traceback" not in console and "SystemExit" not in console, console[-4000:]
        assert not re.search(r"cell-[0-9a-f]{12}|'variants'", console), console[-4000:]
        lines = [
            ln.split("] ", 1)[1]
            for ln in console.splitlines()
            if re.match(r"\[\d/2 finished, .* ETA [\d:]+\] lightgcn-(base|proex)-synthetic-s0 done in", ln)
        ]
        assert len(lines) == 2 and {ln.split()[0] for ln in lines} == {
            "lightgcn-base-synthetic-s0",
            "lightgcn-proex-synthetic-s0",
        }, console
        assert all("recall@20 0." in ln for ln in lines)
        report = re.search(r"report: +on the tracking server, run (\w+): (\S+)", console)
        assert "/tmp/" not in console.split("report:")[-1].split("\n")[0]  # not a path in the driver's folder
        compare = re.search(r"then open (\S+)", console)
        assert report and compare, console[-3000:]
        assert compare.group(1).startswith(uri) and "viewStateShareKey=" in compare.group(1)

        with sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page(viewport={"width": 1900, "height": 700})
            # MLflow opens its Assistant side panel on a browser's first visit; mark it seen, as once a person
            # has closed it (key `mlflow.assistant.fab.autoOpenedOnFirstLoad`, version 1), so the table gets the width.
            page.add_init_script("localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true')")
            page.goto(compare.group(1))
            page.get_by_text("lightgcn-proex-synthetic-s0").first.wait_for(timeout=90_000)
            page.get_by_text("test_recall_at_20").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "ui-comparison.png"))
            body = page.inner_text("body")
            (tmp_path / "ui-comparison.txt").write_text(body)
            _keep(tmp_path, "ui-comparison.png", "ui-comparison.txt", "console.txt")
            # The model-training runs table, not the GenAI view; both cells are rows (not folded under the grid
            # run), with their test metrics, labels and dataset as columns.
            assert "Evaluation runs" not in body and "Sort: Run Name" in body
            for text in (
                "lightgcn-base-synthetic-s0",
                "lightgcn-proex-synthetic-s0",
                "uitest",
                "test_recall_at_20",
                "test_ndcg_at_20",
                "model",
                "plugin",
                "seed",
                "best_epoch",
            ):
                assert text in body, (text, body[:3000])
            rows = page.locator(".ag-center-cols-container .ag-row")
            assert rows.count() == 3  # the grid run and its two cells, each a visible row
            cells = " ".join(rows.all_inner_texts())
            assert re.search(r"\b0\.\d+", cells) and "lightgcn" in cells and "proex" in cells and "synthetic" in cells

            # The grid run's page: its description is the report (tables, p-values) with the curves figure.
            page.goto(report.group(2))
            page.get_by_text("Paired tests").first.wait_for(timeout=60_000)
            more = page.get_by_text("Show more")
            if more.count():
                more.first.click()
            figure = page.locator("img[src*='report%2Fcurves.png']").first
            figure.wait_for(timeout=30_000)
            page.wait_for_function(
                "i => i.complete && i.naturalWidth > 100", arg=figure.element_handle(), timeout=30_000
            )
            assert "lightgcn" in page.inner_text("body") and "p_value" in page.inner_text("body")
            page.screenshot(path=str(tmp_path / "ui-report.png"), full_page=True)
            _keep(tmp_path, "ui-report.png")
            # ... and its artifacts hold the report's files.
            page.goto(report.group(2).split("?")[0] + "/artifacts")
            page.get_by_text("report", exact=True).first.wait_for(timeout=60_000)
            browser.close()
    finally:
        stop_server(proc)
