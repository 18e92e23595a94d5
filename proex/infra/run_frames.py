"""A grid's finished MLflow runs read back as pandas frames (one row per cell and variant; validation curves in
long format): the input of `proex.report`, which itself never touches MLflow.
"""
from __future__ import annotations

import pandas as pd

from .tracker import Tracker, logged_metrics, metric_key


def runs_frame(tracker: Tracker, cells: list) -> pd.DataFrame:
    """One row per finished cell and variant label: model, plugin, dataset, seed, variant, profiles, cell_id,
    run_id, best_epoch, first_dip (its best validation was its first: proex.train.FIRST_DIP), the test metrics
    under their canonical names ('recall@20') and 'val_recall@20' etc."""
    done = tracker.finished("cell")
    rows = []
    for gc in cells:
        run = done.get(gc.cell_id)
        if run is None:
            continue
        m = run.data.metrics
        metrics = {**logged_metrics(run, "test_"), **{f"val_{k}": v for k, v in logged_metrics(run, "best_val_").items()}}
        for variant in gc.variants:
            rows.append({**gc.labels, "variant": variant, "cell_id": gc.cell_id, "run_id": run.info.run_id,
                         "best_epoch": m.get("best_epoch"), "first_dip": run.data.tags.get("first_dip") == "yes",
                         **metrics})
    return pd.DataFrame(rows)


def curves_frame(tracker: Tracker, runs: pd.DataFrame, metric: str = "val_recall@20") -> pd.DataFrame:
    """The validation curve of every run in `runs`: its label columns plus epoch, value (long format)."""
    rows = []
    for _, r in runs.drop_duplicates("run_id").iterrows():
        for m in tracker.client.get_metric_history(r["run_id"], metric_key(metric)):
            rows.append({"model": r["model"], "plugin": r["plugin"], "dataset": r["dataset"], "seed": r["seed"],
                         "variant": r["variant"], "epoch": m.step, "value": m.value})
    return pd.DataFrame(rows, columns=["model", "plugin", "dataset", "seed", "variant", "epoch", "value"])
