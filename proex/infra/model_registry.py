"""A grid's winners in the MLflow Model Registry: the best cell of each (model, plug-in, dataset[, variant]),
chosen on validation (the grid's `select`, e.g. best_val_recall@20; never on test), registered as a version of
`proex-<grid>-<model>-<plugin>-<dataset>[-<variant>]` with the alias `champion`.

A version's source is the cell's served model (`served_model`, logged by `CellRecorder.final`; a run finished
before served models existed gets one from its checkpoint here). Its tags: the test metrics, the validation value
it was chosen on, seed, grid, cell id and the comparison's p-value per metric (from the grid's report on its
parent run; the reference arm has none). A version is found again by its source run id, so rerunning a grid
registers nothing twice and leaves the aliases alone; `promote` moves `champion` to a given run.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking._tracking_service.utils import _use_tracking_uri  # MLflow's own scoped URI switch

from .run_frames import runs_frame
from .served_model import log_served_model
from .tracker import Tracker, metric_key

log = logging.getLogger("proex.infra.model_registry")
ALIAS = "champion"
LABELS = ("model", "plugin", "dataset", "variant")


@dataclass(frozen=True)
class Registration:
    name: str  # registered model name
    version: str
    run_id: str
    created: bool  # False: this run was already a version of `name`
    champion: bool  # the alias points at this version after the call


def registered_name(grid: str, labels: dict) -> str:
    """'proex-<grid>-<model>-<plugin>-<dataset>[-<variant>]', characters the registry rejects replaced by '-'."""
    parts = ["proex", grid] + [str(labels[k]) for k in LABELS if labels.get(k)]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts))


def pvalue_key(grid, row: dict, metric: str) -> str:
    """The parent run's metric `publish_report` logs for this arm's comparison (see publishing.publish_report)."""
    if grid.report.reference_variant:
        return metric_key(f"pvalue/{metric_key(metric)}/{row['dataset']}/{row['model']}/{row['variant']}")
    variant = row.get("variant")
    arm = f"{row['plugin']}/{variant}" if variant and variant != row["plugin"] else row["plugin"]
    return metric_key(f"pvalue/{metric_key(metric)}/{row['dataset']}/{row['model']}/{arm}")


def ensure_served_model(tracker: Tracker, run) -> str:
    """The run's served model id; a run finished without one gets it from its checkpoint (needs its dataset)."""
    if run.data.tags.get("served_model_id"):
        return run.data.tags["served_model_id"]
    from .. import checkpoint
    from ..data.registry import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.download(run.info.run_id, "checkpoint/checkpoint.pt", tmp)
        payload = checkpoint.read(path)
        inter = load_dataset(payload["config"]["dataset"])
        system, _, _ = checkpoint.load(path, inter)
    return log_served_model(tracker, run.info.run_id, system, inter, step=int(run.data.metrics.get("best_epoch", 0)))


def register_run(tracker: Tracker, name: str, run_id: str, tags: dict, champion: bool) -> Registration:
    """`run_id`'s served model as a version of `name` (the existing version if there is one); `champion`: point
    the alias at it."""
    client = tracker.client
    try:
        serve = f"`mlflow models serve -m models:/{name}@{ALIAS} --env-manager local`"
        client.create_registered_model(
            name,
            tags={"grid": tags.get("grid", "")},
            description=f"Best cell on validation of a proex grid; serve it with {serve}",
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if found:
        version, created = found[0].version, False
    else:
        model_id = ensure_served_model(tracker, client.get_run(run_id))
        # MLflow looks the `models:/<logged model id>` source up through its global tracking URI, not this
        # client's: with a local sqlite store (no tracking server) it would search the default store and fail.
        with _use_tracking_uri(tracker.uri):
            mv = client.create_model_version(
                name, f"models:/{model_id}", run_id=run_id, model_id=model_id, tags={k: str(v) for k, v in tags.items()}
            )
        version, created = mv.version, True
    if champion:
        client.set_registered_model_alias(name, ALIAS, version)
    return Registration(name, str(version), run_id, created, champion)


def version_tags(grid, row: dict, pvalues: dict) -> dict:
    tags = {"grid": grid.name, "seed": row["seed"], "cell_id": row["cell_id"], "selected_on": f"best_val_{grid.select}"}
    for m in grid.report.metrics:
        for prefix, col in (("test_", m), ("best_val_", f"val_{m}")):
            if col in row and row[col] == row[col]:
                tags[metric_key(prefix + m)] = f"{row[col]:.6g}"
        p = pvalues.get(pvalue_key(grid, row, m))
        if p is not None:
            tags[metric_key(f"pvalue_{m}")] = f"{p:.4g}"
    return tags


def register_best(grid, tracker: Tracker, cells: list | None = None, done: dict | None = None) -> list[Registration]:
    """Register the best finished cell of each (model, plug-in, dataset, variant) of `grid` by best validation
    `grid.select` (ties: the lowest seed). New versions become `champion`; versions already there are left as
    they are (a `promote` stays in force). A run that cannot be registered (no served model and no checkpoint)
    is skipped with a warning that names it. done: the caller's `tracker.finished("cell")`, else read here."""
    runs = runs_frame(tracker, cells if cells is not None else grid.expand(), done=done)
    select = f"val_{grid.select}"
    if runs.empty or select not in runs.columns:
        return []
    parents = tracker.find(kind="grid", key=grid.name)
    pvalues = parents[0].data.metrics if parents else {}
    best = (
        runs.dropna(subset=[select])
        .sort_values([select, "seed"], ascending=[False, True], kind="stable")
        .drop_duplicates(list(LABELS))
    )
    out = []
    for row in best.to_dict("records"):
        name = registered_name(grid.name, row)
        try:
            reg = register_run(tracker, name, row["run_id"], version_tags(grid, row, pvalues), champion=False)
        except (MlflowException, ValueError, FileNotFoundError) as exc:  # e.g. a run without model or checkpoint
            log.warning(
                "%s: run %s not registered (%s: %s); fix it, then `proex models register --grid %s`",
                name,
                row["run_id"],
                type(exc).__name__,
                str(exc)[:300],
                grid.path or grid.name,
            )
            continue
        if reg.created:
            tracker.client.set_registered_model_alias(name, ALIAS, reg.version)
            reg = Registration(reg.name, reg.version, reg.run_id, True, True)
        out.append(reg)
    return out


def promote(grid, tracker: Tracker, run_id: str) -> Registration:
    """Make the finished cell `run_id` of `grid` the `champion` of its model name (registering it if needed)."""
    cells = grid.expand()
    runs = runs_frame(tracker, cells)
    rows = runs[runs["run_id"] == run_id].to_dict("records") if not runs.empty else []
    if not rows:
        raise ValueError(
            f"run {run_id} is not a finished cell of grid {grid.name!r} in {tracker.uri} "
            f"(experiment {tracker.experiment}); pick a run id from its runs table"
        )
    parents = tracker.find(kind="grid", key=grid.name)
    tags = version_tags(grid, rows[0], parents[0].data.metrics if parents else {})
    return register_run(tracker, registered_name(grid.name, rows[0]), run_id, tags, champion=True)
