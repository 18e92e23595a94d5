"""A grid's finished MLflow runs read back as pandas frames (one row per cell and variant; validation curves in
long format): the input of `proex.report`, which itself never touches MLflow.

Everything comes from the one search of finished runs (`Tracker.finished`): no artifact is downloaded, so a
report over hundreds of runs stays a single query. A run's protocol is read from its params (the resolved
config, flattened: `train.patience`); the source of each value (reference row, hparams file, grid fixed, ...)
from the grid's cell, resolved once when the grid expanded: the run was found by that cell's id, the hash of the
same resolved config, so its values are the cell's values.
"""

from __future__ import annotations

import json
import time

import pandas as pd

from ..protocol import PROTOCOL_KEYS
from .tracker import Tracker, logged_metrics, metric_key


def _param(text: str | None):
    """A logged param back to its value: numbers and JSON lists parsed, other text (e.g. 'recall@20') kept."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_protocol(run) -> dict:
    """The run's training protocol (`proex.protocol.PROTOCOL_KEYS`) from its params; None for keys not logged."""
    return {k: _param(run.data.params.get(f"train.{k}")) for k in PROTOCOL_KEYS}


def cell_sources(gc) -> dict:
    """{"section.key": source} of the grid cell's resolved values (resolved once, when the grid expanded)."""
    return gc.resolved.sources


def runs_frame(tracker: Tracker, cells: list, done: dict | None = None) -> pd.DataFrame:
    """One row per finished cell and variant label: model, plugin, dataset, seed, variant, profiles, cell_id,
    run_id, best_epoch, first_dip (its best validation was its first: proex.train.FIRST_DIP), the test metrics
    under their canonical names ('recall@20') and 'val_recall@20' etc., protocol (`run_protocol`) and
    sources (`cell_sources`)."""
    done = tracker.finished("cell") if done is None else done  # `done`: the caller's read of it (one search)
    rows = []
    for gc in cells:
        run = done.get(gc.cell_id)
        if run is None:
            continue
        m = run.data.metrics
        metrics = {
            **logged_metrics(run, "test_"),
            **{f"val_{k}": v for k, v in logged_metrics(run, "best_val_").items()},
        }
        protocol, sources = run_protocol(run), cell_sources(gc)
        for variant in gc.variants:
            rows.append(
                {
                    **gc.labels,
                    "variant": variant,
                    "cell_id": gc.cell_id,
                    "run_id": run.info.run_id,
                    "best_epoch": m.get("best_epoch"),
                    "first_dip": run.data.tags.get("first_dip") == "yes",
                    "protocol": protocol,
                    "sources": sources,
                    **metrics,
                }
            )
    return pd.DataFrame(rows)


def curves_frame(tracker: Tracker, runs: pd.DataFrame, metric: str = "val_recall@20") -> pd.DataFrame:
    """The validation curve of every run in `runs`: its label columns plus epoch, value (long format)."""
    rows = []
    for _, r in runs.drop_duplicates("run_id").iterrows():
        for m in tracker.client.get_metric_history(r["run_id"], metric_key(metric)):
            rows.append(
                {
                    "model": r["model"],
                    "plugin": r["plugin"],
                    "dataset": r["dataset"],
                    "seed": r["seed"],
                    "variant": r["variant"],
                    "epoch": m.step,
                    "value": m.value,
                }
            )
    return pd.DataFrame(rows, columns=["model", "plugin", "dataset", "seed", "variant", "epoch", "value"])


def cost_frame(tracker: Tracker, cells: list, runs: dict) -> pd.DataFrame:
    """One row per cell run of `cells` (any state; `runs`: cell id -> run, `grid_plan.cell_runs`): labels,
    start_s, end_s, paused_s, attempts, lost_s (the columns `proex.report_cost` documents). The metric
    histories are read only for runs with more than one attempt."""
    now = time.time()
    rows = []
    for gc in cells:
        run = runs.get(gc.cell_id)
        if run is None:
            continue
        start = run.info.start_time / 1000
        end = run.info.end_time / 1000 if run.info.end_time and run.info.status != "RUNNING" else now
        attempts = int(run.data.metrics.get("attempt", 0)) + 1
        paused = float(run.data.tags.get("paused_s", 0) or 0)
        lost = _lost_to_retries(tracker, run, paused) if attempts > 1 else 0.0
        rows.append(
            {
                **{k: gc.labels[k] for k in ("model", "plugin", "dataset", "seed")},
                "start_s": start,
                "end_s": max(end, start),
                "paused_s": paused,
                "attempts": attempts,
                "lost_s": lost,
            }
        )
    return pd.DataFrame(
        rows, columns=["model", "plugin", "dataset", "seed", "start_s", "end_s", "paused_s", "attempts", "lost_s"]
    )


def _lost_to_retries(tracker: Tracker, run, paused_s: float) -> float:
    """Seconds of work later attempts redid: for each attempt after the first, its start (the `attempt` metric's
    timestamp) back to the last checkpoint before it (the last validation logged, else the previous attempt's
    start), summed, less the time the run sat interrupted."""
    rid = run.info.run_id
    starts = sorted(m.timestamp / 1000 for m in tracker.client.get_metric_history(rid, "attempt"))
    select = next((k for k in run.data.metrics if k.startswith("val_")), None)
    vals = sorted(m.timestamp / 1000 for m in tracker.client.get_metric_history(rid, select)) if select else []
    lost = 0.0
    for prev, start in zip(starts, starts[1:]):
        last = max([v for v in vals if prev <= v < start], default=prev)
        lost += start - last
    return max(lost - paused_s, 0.0)
