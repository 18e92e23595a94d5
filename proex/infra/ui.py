"""What a person sees in the MLflow UI (3.x) for a grid: the comparison of its cells, the report, the dataset.

* The experiment carries `mlflow.experimentKind = custom_model_development` (set by `tracker.Tracker`), so
  the UI opens it in the model-training runs table instead of its GenAI view (traces, evaluation runs).
* `save_comparison_view` stores a runs-table view on the experiment as the tag
  `mlflow.sharedViewState.<key>`, the same JSON the UI's "share view" writes: columns test Recall/NDCG@K,
  model, plug-in, dataset, seed, best epoch and the first-dip flag, sorted by run name. Sorting by
  anything but the creation time makes the UI list child runs flat, so every cell is a visible row
  (`runsExpanded` is not part of a shared view, so a nested parent would stay collapsed).
* `links` builds the URL that opens that view (`?viewStateShareKey=<key>&workflowType=machine_learning`; the
  second parameter overrides a browser that last used the GenAI side of the UI) and the parent run's report.
* `publishing.describe_run` (called by `publish_report`) puts report.md (tables, p-values) and its figures in
  the parent run's description, which the run page renders as Markdown; the files stay under artifacts report/.
* `log_dataset` logs the cell's interactions as an MLflow dataset input (name, digest, counts), which fills
  the runs table's Dataset column and the run page's dataset panel.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.parse

from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import CodeDatasetSource, LocalArtifactDatasetSource
from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException

from .tracker import Tracker, metric_key

COMPARISON_VIEW = "proex-comparison"  # key of the saved runs-table view the printed link opens
RUN_NAME_KEY = "tags.`mlflow.runName`"  # the UI's own sort key for "Run Name"
LABEL_TAGS = ("model", "plugin", "dataset", "seed", "first_dip")


def view_columns(metrics: list[str]) -> list[str]:
    """Runs-table column keys (the UI's own format) for the test metrics, the label tags and the dataset."""
    cols = [f"metrics.`test_{metric_key(m)}`" for m in metrics] + ["metrics.`best_epoch`"]
    return cols + [f"tags.`{t}`" for t in LABEL_TAGS] + ["attributes.`Dataset`"]


def save_comparison_view(tracker: Tracker, metrics: list[str], key: str = COMPARISON_VIEW) -> None:
    """Store the comparison view on the experiment (idempotent: rewritten with the grid's metrics)."""
    cols = view_columns(metrics)
    view = {
        "searchFilter": "",
        "orderByKey": RUN_NAME_KEY,
        "orderByAsc": True,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": cols,
        "runListHidden": False,
        "viewMaximized": False,
    }
    tracker.client.set_experiment_tag(tracker.experiment_id, f"mlflow.sharedViewState.{key}", json.dumps(view))


def links(
    tracker: Tracker, parent_run_id: str | None = None, port: int = 5000, key: str = COMPARISON_VIEW
) -> dict[str, str]:
    """{"serve": how to reach a UI on this store, "compare": the comparison view's URL, "report": the parent
    run's page (its description is the report), "artifacts": its report files} (the last two with a run)."""
    if tracker.uri.startswith("http"):
        base, serve = tracker.uri.rstrip("/"), f"(tracking server already running at {tracker.uri})"
    else:
        base = f"http://127.0.0.1:{port}"
        serve = f"mlflow ui --backend-store-uri {tracker.uri} --host 127.0.0.1 --port {port}"
    exp = f"{base}/#/experiments/{tracker.experiment_id}"
    query = urllib.parse.urlencode({"viewStateShareKey": key, "workflowType": "machine_learning"})
    out = {"serve": serve, "compare": f"{exp}/runs?{query}"}
    if parent_run_id:
        out["report"] = f"{exp}/runs/{parent_run_id}?workflowType=machine_learning"
        out["artifacts"] = f"{exp}/runs/{parent_run_id}/artifacts/report/report.md"
    return out


def dataset_entity(inter, label: str) -> DatasetEntity:
    """An MLflow dataset for `inter` (proex.data.Interactions): named by the grid's dataset label, digest of
    the three splits' sparsity patterns, profile = the counts of `inter.summary()`."""
    h = hashlib.sha256()
    for m in (inter.train, inter.val, inter.test):
        h.update(str(m.shape).encode())
        h.update(m.indptr.tobytes())
        h.update(m.indices.tobytes())
    src = inter.source or label
    source = (
        LocalArtifactDatasetSource(os.path.abspath(src))
        if os.path.exists(src)
        else CodeDatasetSource({"proex.dataset": src})
    )
    meta = MetaDataset(source, name=label, digest=h.hexdigest()[:12]).to_dict()
    profile = {k: v for k, v in inter.summary().items() if k in ("users", "items", "train", "val", "test", "density")}
    return DatasetEntity(
        name=meta["name"],
        digest=meta["digest"],
        source_type=meta["source_type"],
        source=meta["source"],
        profile=json.dumps(profile),
    )


def log_dataset(tracker: Tracker, run_id: str, inter, label: str, context: str = "train", tries: int = 5) -> None:
    """Log `inter` as the run's dataset input (context tag: how the run used it).

    MLflow's SQL store looks a dataset up by (experiment, name, digest) and inserts it when absent, in one
    transaction but without a lock (`SqlAlchemyStore._log_inputs_impl`). Two cells of one dataset that log it
    at the same moment both find it absent, and the second insert fails on the table's unique constraint
    (sqlite: "UNIQUE constraint failed", PostgreSQL: "duplicate key value"); nothing of that call was written.
    The first cells of a grid on one dataset can do exactly this, so such a call is repeated: the retry finds the
    row and links it.
    """
    entity = dataset_entity(inter, label)
    inputs = [DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)])]
    for attempt in range(tries):
        try:
            tracker.client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as exc:
            if attempt == tries - 1 or not _lost_insert_race(exc):
                raise
            time.sleep(0.05 * (attempt + 1))


def _lost_insert_race(exc: Exception) -> bool:
    """True when `exc` is a unique-constraint violation (another client inserted the same row first)."""
    text = str(exc).lower()
    return "unique constraint" in text or "duplicate key" in text
