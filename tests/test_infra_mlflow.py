"""MLflow tracking on a local sqlite store (no server, no Ray): runs found again by cell id, curves without
duplicates on resume, checkpoints that load and recommend, reports with p-values on the parent run, and a
finished grid that reruns as a no-op."""

from __future__ import annotations

import argparse
import dataclasses
import os

import pytest
import torch

pytest.importorskip("mlflow")

from proex import checkpoint  # noqa: E402
from proex.data.registry import load_dataset  # noqa: E402
from proex.experiment import run_cell  # noqa: E402
from proex.grid import load_grid  # noqa: E402
from proex.infra.cell_recorder import CellRecorder  # noqa: E402
from proex.infra.publishing import publish_report  # noqa: E402
from proex.infra.run_frames import runs_frame  # noqa: E402
from proex.infra.tracker import Tracker, canonical, flatten, metric_key  # noqa: E402

GRIDS = os.path.join(os.path.dirname(__file__), "..", "grids")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlruns')}/mlflow.db"


def test_names_and_flattening():
    assert metric_key("recall@20") == "recall_at_20" and canonical("test_ndcg_at_10") == "test_ndcg@10"
    assert metric_key("pvalue/x=1 (a)") == "pvalue/x_1 _a_"
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": {}}) == {
        "a.b": "1",
        "a.c": "[1, 2]",
        "d": "None",
        "e": "{}",
    }


def test_cell_run_is_found_again_and_resume_adds_no_duplicate_points(store, tmp_path):
    tracker = Tracker(store, "proex-unit")
    parent, created = tracker.run_for("grid", "unit")
    again, created2 = tracker.run_for("grid", "unit")
    assert created and not created2 and again.info.run_id == parent.info.run_id
    run, _ = tracker.run_for(
        "cell", "abc123", parent.info.run_id, {"model": "lightgcn"}, {"model_config": {"layers": 3}}
    )
    assert run.data.params == {"model_config.layers": "3"} and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    rec = CellRecorder(tracker, run.info.run_id)
    for epoch in (0, 3):
        rec.validation(epoch, {"recall@20": 0.1 + epoch}, {"bpr": 0.5})
    resumed = CellRecorder(tracker, run.info.run_id)  # a retried trial, restored from the epoch-0 checkpoint
    for epoch in (3, 6):
        resumed.validation(epoch, {"recall@20": 0.2 + epoch}, {"bpr": 0.4})
    hist = tracker.client.get_metric_history(run.info.run_id, "val_recall_at_20")
    assert sorted(m.step for m in hist) == [0, 3, 6]
    assert tracker.finished() == {}


def test_resumed_fit_continues_its_run_after_the_last_logged_step(store, tmp_path):
    """A fit that crashes after epoch 3's validation and is run again with the same state file continues the
    same MLflow run: its next point is step 6, logged by a fit that started at epoch 4, not 0."""
    from proex.experiment import CellConfig

    tracker = Tracker(store, "proex-unit")
    run, _ = tracker.run_for("cell", "resume-me")
    cell = CellConfig(dataset="synthetic", model="lightgcn", train={"epochs": 9, "patience": 50, "device": "cpu"})
    inter, state = load_dataset("synthetic"), str(tmp_path / "state.pt")

    class Crash(Exception):
        pass

    def crash_after_3(r):
        CellRecorder(tracker, run.info.run_id).validation(r.epoch, r.metrics, r.losses, r.start_epoch)
        if r.epoch == 3:
            raise Crash

    with pytest.raises(Crash):
        run_cell(cell, inter, callback=crash_after_3, state_path=state)
    rec = CellRecorder(tracker, run.info.run_id)  # the retry: a new recorder on the same run
    run_cell(
        cell, inter, callback=lambda r: rec.validation(r.epoch, r.metrics, r.losses, r.start_epoch), state_path=state
    )
    history = {m.step: m.value for m in tracker.client.get_metric_history(run.info.run_id, "fit_start_epoch")}
    assert history == {0: 0, 3: 0, 6: 4}
    assert sorted(m.step for m in tracker.client.get_metric_history(run.info.run_id, "val_recall_at_20")) == [0, 3, 6]


def test_final_logs_a_loadable_checkpoint_and_recommend_uses_it(store, tmp_path):
    tracker = Tracker(store, "proex-unit")
    grid = load_grid(os.path.join(GRIDS, "smoke.yaml"))
    gc = next(c for c in grid.expand() if c.config.plugin == "proex")
    cell = dataclasses.replace(gc.config, train={**gc.config.train, "epochs": 3})
    run, _ = tracker.run_for("cell", gc.cell_id, tags=gc.labels)
    rec = CellRecorder(tracker, run.info.run_id)
    inter = load_dataset("synthetic")
    result, system = run_cell(cell, inter, callback=lambda r: rec.validation(r.epoch, r.metrics, r.losses))
    rec.final(gc.cell_id, result, system, inter, str(tmp_path / "out"))
    done = tracker.finished()
    assert list(done) == [gc.cell_id]
    metrics = done[gc.cell_id].data.metrics
    assert metrics["test_recall_at_20"] == pytest.approx(result.test["recall@20"])
    assert done[gc.cell_id].data.tags["profile_bank"] == result.profile_bank
    assert done[gc.cell_id].data.tags["first_dip"] == "no" and not result.first_dip
    path = tracker.download(run.info.run_id, "checkpoint/checkpoint.pt", str(tmp_path / "dl"))
    loaded, data, payload = checkpoint.load(path, inter)
    assert payload["config"] == result.config

    from proex.cli import recommend as recommend_command

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd")
    recommend_command.register(sub)
    out = tmp_path / "recs.csv"
    args = parser.parse_args(
        [
            "recommend",
            "--run",
            run.info.run_id,
            "--tracking-uri",
            store,
            "--users",
            "0",
            "7",
            "--k",
            "5",
            "--out",
            str(out),
        ]
    )
    assert recommend_command.run(args) == 0
    import pandas as pd

    recs = pd.read_csv(out)
    assert list(recs.columns) == ["user", "rank", "item", "score"] and len(recs) == 10
    for u in (0, 7):
        seen = set(inter.train[u].indices)
        assert not seen & set(recs[recs.user == u].item)  # training items are never recommended
    # the same lists as scoring the loaded model directly
    from proex.recommend import top_k

    items, _ = top_k(loaded, data, [0, 7], 5)
    assert recs.item.tolist() == items.reshape(-1).tolist()
    # the served model logged into the run (its Models tab entry) answers with the same lists
    from proex.infra.served_model import recommend_from_model

    model_id = tracker.client.get_run(run.info.run_id).data.tags["served_model_id"]
    logged = tracker.client.get_logged_model(model_id)
    assert logged.source_run_id == run.info.run_id and str(logged.status) in ("READY", "LoggedModelStatus.READY")
    served = recommend_from_model(f"models:/{model_id}", [0, 7], 5, store)
    assert served[["user", "rank", "item"]].values.tolist() == recs[["user", "rank", "item"]].values.tolist()
    assert served.score.to_numpy() == pytest.approx(recs.score.to_numpy(), abs=1e-5)
    for users, k, message in (([600], 5, "unknown user"), ([0], 0, "positive integer")):
        with pytest.raises(ValueError, match=message):
            recommend_from_model(f"models:/{model_id}", users, k, store)
    # Registered on a local sqlite store with no tracking server, as the README's main command does, once.
    from proex.infra.model_registry import register_run

    first = register_run(tracker, "proex-unit-model", run.info.run_id, {"grid": "unit"}, champion=True)
    again = register_run(tracker, "proex-unit-model", run.info.run_id, {"grid": "unit"}, champion=True)
    assert (first.version, first.created, again.version, again.created) == ("1", True, "1", False)
    champion = recommend_from_model("models:/proex-unit-model@champion", [0, 7], 5, store)
    assert champion[["user", "rank", "item"]].values.tolist() == recs[["user", "rank", "item"]].values.tolist()


def _fake_finished(tracker, parent_id, gc, r20, patience=None):
    """A finished cell's run as a trial leaves it: the resolved config as params (patience: replaced), metrics."""
    params = gc.resolved.to_dict()
    params["train"]["patience"] = patience or params["train"]["patience"]
    run, _ = tracker.run_for("cell", gc.cell_id, parent_id, gc.labels, params=params)
    tracker.log_metrics(
        run.info.run_id, {"test_recall@20": r20, "test_ndcg@20": r20 / 2, "best_val_recall@20": r20}, step=3
    )
    tracker.log_metrics(run.info.run_id, {"val_recall@20": r20 * 0.8}, step=0)
    tracker.log_metrics(run.info.run_id, {"val_recall@20": r20}, step=3)
    tracker.finish(run.info.run_id)


def test_report_on_parent_run_and_finished_grid_is_a_noop(store, tmp_path):
    grid = load_grid(os.path.join(GRIDS, "smoke.yaml"))
    cells = grid.expand()
    tracker = Tracker(store, "proex-smoke")
    parent, _ = tracker.run_for("grid", grid.name)
    for i, gc in enumerate(cells):
        patience = 5 if gc.config.plugin == "base" and gc.config.model == "lightgcn" else 20  # read from the params
        _fake_finished(
            tracker, parent.info.run_id, gc, 0.1 + 0.05 * (gc.config.plugin == "proex") + 0.001 * i * i, patience
        )
    dipped = tracker.finished()[cells[1].cell_id].info.run_id  # as CellRecorder.final tags a first-dip run
    tracker.set_tags(dipped, {"first_dip": "yes"})
    frame = runs_frame(tracker, cells)
    assert len(frame) == 8 and {"recall@20", "ndcg@20", "val_recall@20"} <= set(frame.columns)
    assert frame["first_dip"].tolist() == [i == 1 for i in range(8)]
    assert frame["protocol"].map(lambda p: p["patience"]).tolist() == [
        5 if (r.plugin, r.model) == ("base", "lightgcn") else 20 for r in frame.itertuples()
    ]
    assert all(s["train.epochs"].startswith("grid fixed") for s in frame["sources"])  # the grid cell's sources
    files = publish_report(grid, tracker, str(tmp_path / "report"))
    assert {"report.md", "comparison.csv", "curves.png"} <= set(files)
    md = open(files["report.md"]).read()
    flagged = cells[1].labels
    assert "## Warning: 1 run(s) stopped in their first dip" in md
    assert f"| {flagged['dataset']} | {flagged['model']} | {flagged['plugin']} |  | {flagged['seed']} |" in md
    # The grid run's page shows the report: its description is report.md plus the figure from its artifacts.
    # A report longer than a tag holds keeps its leading sections whole and names the rest (in report/report.md).
    note = tracker.client.get_run(parent.info.run_id).data.tags["mlflow.note.content"]
    assert f"![curves](get-artifact?path=report%2Fcurves.png&run_uuid={parent.info.run_id})" in note
    assert len(note) <= 8000
    if len(md) + 200 < 8000:
        assert note.startswith(md)
    else:
        kept = note.split("\n\n*The full report is the artifact report/report.md")[0]
        assert md.startswith(kept) and "## Results" in kept and "not shown here:" in note
    logged = tracker.client.get_run(parent.info.run_id).data.metrics
    assert (
        "pvalue/recall_at_20/synthetic/lightgcn/proex" in logged
        and 0 < logged["pvalue/recall_at_20/synthetic/lightgcn/proex"] < 1
    )
    key = "recall_at_20/synthetic/lightgcn/proex"
    assert logged[f"pvalue_holm/{key}"] >= logged[f"pvalue/{key}"]  # Holm over the family, beside the raw p
    assert "lightgcn, proex vs base: protocol differs: patience 5 (base) vs 20 (proex)" in md
    assert "multvae, proex vs base" not in md  # same protocol: no note
    arts = [a.path for a in tracker.client.list_artifacts(parent.info.run_id, "report")]
    assert "report/report.md" in arts

    import ray

    from proex.infra.tune_grid import run_grid  # imports Ray, but a finished grid never starts it

    out = run_grid(grid, store, str(tmp_path / "tune"), str(tmp_path / "report2"))
    assert not ray.is_initialized()
    assert out.finished == 8 and out.failed == [] and len(tracker.find(kind="cell")) == 8
    assert out.registered == []  # these runs hold no served model and no checkpoint: skipped with a warning
    assert os.path.exists(out.report_files["report.md"])
    torch.set_num_threads(1)
