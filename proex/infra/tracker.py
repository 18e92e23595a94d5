"""The MLflow client of grids and studies, through `MlflowClient` only (no fluent global run, no Ray callback):
`Tracker` (one tracking URI, one experiment), the URI and metric-name helpers, the git commit a run records.

Layout: one MLflow experiment per grid (`proex-<grid name>`), one parent run per grid (tag kind=grid), one
child run per cell (tag kind=cell, cell_id = the hash of the resolved config). A child run holds the resolved
config as params (flattened: `model_config.layers`), the validation curve and losses as step metrics
(`val_recall_at_20`, step = epoch: MLflow rejects `@`), the final metrics (`test_recall_at_20`, ...), the
best checkpoint with its config as artifacts (`checkpoint/checkpoint.pt`, `checkpoint/config.json`) and tags
model, plugin, dataset, seed, variant, git_commit, profile_bank, config_hash (the cell's run is filled by
`cell_recorder.CellRecorder`). A run is found again by its cell id, so a resumed or retried trial continues its
own run and a relaunch skips finished cells.

Default store: `sqlite:///mlruns/mlflow.db`, artifacts under `mlruns/artifacts/` (MLflow 3 refuses the old
file store). On a cluster every node must reach one tracking server (`mlflow_server.start_server`).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
SHARED_SETTLE_S = 2.0  # longer than a create_run request takes; see Tracker.run_for(shared=True)
# MLflow 3's UI opens an experiment without this tag in its GenAI view (traces, evaluation runs); with it,
# in the model-training runs table. Same tag and value the UI's own "experiment type" chooser sets.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def resolve_uri(uri: str | None = None) -> str:
    """`uri`, else $MLFLOW_TRACKING_URI, else the default sqlite store; relative sqlite paths made absolute
    (Ray trials run in other folders) and their folder created."""
    uri = absolute_sqlite(uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI)
    if "://" not in uri:
        raise ValueError(
            f"tracking URI {uri!r}: give sqlite:///path/mlflow.db or http://host:port "
            "(MLflow 3 does not take a plain folder)"
        )
    return uri


def absolute_sqlite(url: str) -> str:
    """A relative 'sqlite:///path' made absolute (Ray workers run in other folders) and its folder created;
    any other URL unchanged. Shared by the MLflow store and the Optuna storage."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{Path(url[len('sqlite:///') :]).expanduser().resolve()}"
    if url.startswith("sqlite:////"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return url


def local_root(uri: str) -> Path | None:
    """The folder of a local sqlite store (artifacts, Tune state and reports go beside it), else None."""
    return Path(uri[len("sqlite:///") :]).parent if uri.startswith("sqlite:////") else None


def metric_key(name: str) -> str:
    """'recall@20' -> 'recall_at_20'; other characters MLflow rejects become '_'."""
    return re.sub(r"[^A-Za-z0-9_\-. /:]", "_", name.replace("@", "_at_"))


def canonical(key: str) -> str:
    """'recall_at_20' -> 'recall@20' (inverse of metric_key for metric names)."""
    return re.sub(r"(recall|ndcg)_at_(\d+)", r"\1@\2", key)


def logged_metrics(run, prefix: str) -> dict[str, float]:
    """The run's metrics logged under `prefix` ('test_', 'best_val_'), by canonical name: {'recall@20': ...}."""
    return {canonical(k[len(prefix) :]): v for k, v in run.data.metrics.items() if k.startswith(prefix)}


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """{"model_config": {"layers": 3}} -> {"model_config.layers": "3"}; lists as JSON."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
    return out


def git_commit(cwd: str | None = None) -> str:
    """HEAD of the repository holding proex (with '-dirty' when it has uncommitted changes), or 'unknown'."""
    cwd = cwd or str(Path(__file__).resolve().parents[2])
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def is_finished(run) -> bool:
    """The one test of "this cell / trial is done": its run FINISHED with its results logged (tag done=1, set
    by `Tracker.finish` after `CellRecorder.final` logged everything)."""
    return run.info.status == "FINISHED" and run.data.tags.get("done") == "1"


class Tracker:
    """A client bound to one tracking URI and one experiment."""

    def __init__(self, uri: str | None = None, experiment: str | None = "proex"):
        """experiment: created if missing; None for a client that only reads runs by id."""
        self.uri = resolve_uri(uri)
        self.experiment = experiment
        for attempt in range(6):  # a new sqlite store being created by another process: wait for it
            try:
                self.client = MlflowClient(self.uri)
                self.experiment_id = self._experiment(experiment) if experiment else None
                break
            except Exception as exc:  # sqlalchemy OperationalError or MlflowException, depending on the step
                if attempt == 5 or not re.search(r"already exists|locked|no such table", str(exc)):
                    raise
                time.sleep(1 + attempt)

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.tags.get(EXPERIMENT_KIND[0]) is None:  # a store written before the tag existed
                self.client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
            return exp.experiment_id
        root = local_root(self.uri)
        location = (root / "artifacts" / name).as_uri() if root else None
        try:
            return self.client.create_experiment(name, artifact_location=location, tags=dict([EXPERIMENT_KIND]))
        except MlflowException:  # created meanwhile by another process
            return self.client.get_experiment_by_name(name).experiment_id

    def find(self, **tags: str) -> list:
        """Runs of this experiment whose tags equal `tags`, oldest first."""
        flt = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], flt, max_results=1000, page_token=token, order_by=["attributes.start_time ASC"]
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def run_for(
        self,
        kind: str,
        key: str,
        parent_id: str | None = None,
        tags: dict | None = None,
        params: dict | None = None,
        name: str | None = None,
        shared: bool = False,
    ) -> tuple[Any, bool]:
        """The run with tags kind=`kind`, key=`key`, created (with params) if missing. Returns (run, created).

        shared: several processes may ask for this run at once (the workers of one study). After creating it,
        wait SHARED_SETTLE_S for creations racing with ours to land, then keep the oldest (by start time) and
        delete ours if it is not that one, so all of them end up with the same run."""
        found = self.find(kind=kind, key=key)
        if found:
            return found[0], False
        all_tags = {"kind": kind, "key": key, **{k: str(v) for k, v in (tags or {}).items()}}
        if parent_id:
            all_tags["mlflow.parentRunId"] = parent_id
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name or key)
        if shared:
            time.sleep(SHARED_SETTLE_S)
            found = self.find(kind=kind, key=key)
            if found and found[0].info.run_id != run.info.run_id:
                self.client.delete_run(run.info.run_id)
                return found[0], False
        if params:
            self.log_params(run.info.run_id, params)
        return self.client.get_run(run.info.run_id), True

    def log_params(self, run_id: str, params: dict) -> None:
        """Nested params, flattened; values not known yet (None) are left for a later call to fill."""
        logged = self.client.get_run(run_id).data.params
        items = [Param(k[:250], v[:6000]) for k, v in flatten(params).items() if v != "None" and k[:250] not in logged]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def finished(self, kind: str = "cell") -> dict[str, Any]:
        """key -> run for runs of `kind` that finished with their results logged (tag done=1)."""
        return {r.data.tags["key"]: r for r in self.find(kind=kind, done="1") if is_finished(r)}

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [
            Metric(metric_key(k), float(v), now, step)
            for k, v in metrics.items()
            if v is not None and not (isinstance(v, float) and math.isnan(v))
        ]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000])

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def last_step(self, run_id: str, key: str) -> int:
        hist = self.client.get_metric_history(run_id, metric_key(key))
        return max((m.step for m in hist), default=-1)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        if status == "FINISHED":
            self.set_tags(run_id, {"done": "1"})
        self.client.set_terminated(run_id, status)

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def log_files(self, run_id: str, paths: Iterable[str], artifact_path: str | None = None) -> None:
        for p in paths:
            self.client.log_artifact(run_id, str(p), artifact_path)

    def download(self, run_id: str, path: str, dst: str) -> str:
        os.makedirs(dst, exist_ok=True)
        return self.client.download_artifacts(run_id, path, dst)


def redact(url: str) -> str:
    """A storage URL without its password (it goes into logs, MLflow tags and hparams files)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
