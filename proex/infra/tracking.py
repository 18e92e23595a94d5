"""MLflow tracking for grids and studies, through `MlflowClient` only (no fluent global run, no Ray callback).

Layout: one MLflow experiment per grid (`proex-<grid name>`), one parent run per grid (tag kind=grid), one
child run per cell (tag kind=cell, cell_id = the hash of the resolved config). A child run holds the resolved
config as params (flattened: `model_config.layers`), the validation curve and losses as step metrics
(`val_recall_at_20`, step = epoch: MLflow rejects `@`), the final metrics (`test_recall_at_20`, ...), the
best checkpoint with its config as artifacts (`checkpoint/checkpoint.pt`, `checkpoint/config.json`) and tags
model, plugin, dataset, seed, variant, git_commit, profile_bank, config_hash. A run is found again by its
cell id, so a resumed or retried trial continues its own run and a relaunch skips finished cells.

Default store: `sqlite:///mlruns/mlflow.db`, artifacts under `mlruns/artifacts/` (MLflow 3 refuses the old
file store). On a cluster every node must reach one tracking server: `start_server` runs `mlflow server` with
a database backend and proxied artifacts (`--serve-artifacts`), so workers need no shared disk.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
SHARED_SETTLE_S = 2.0  # longer than a create_run request takes; see Tracker.run_for(shared=True)
CANONICAL = re.compile(r"(recall|ndcg)@(\d+)")
# MLflow 3's UI opens an experiment without this tag in its GenAI view (traces, evaluation runs); with it,
# in the model-training runs table. Same tag and value the UI's own "experiment type" chooser sets.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
COMPARISON_VIEW = "proex-comparison"  # key of the saved runs-table view the printed link opens


def resolve_uri(uri: str | None = None) -> str:
    """`uri`, else $MLFLOW_TRACKING_URI, else the default sqlite store; relative sqlite paths made absolute
    (Ray trials run in other folders) and their folder created."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri[len("sqlite:///"):]).expanduser().resolve()
        uri = f"sqlite:///{path}"
    if "://" not in uri:
        raise ValueError(f"tracking URI {uri!r}: give sqlite:///path/mlflow.db or http://host:port "
                         "(MLflow 3 does not take a plain folder)")
    if uri.startswith("sqlite:////"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return uri


def local_root(uri: str) -> Path | None:
    """The folder of a local sqlite store (artifacts, Tune state and reports go beside it), else None."""
    return Path(uri[len("sqlite:///"):]).parent if uri.startswith("sqlite:////") else None


def metric_key(name: str) -> str:
    """'recall@20' -> 'recall_at_20'; other characters MLflow rejects become '_'."""
    return re.sub(r"[^A-Za-z0-9_\-. /:]", "_", name.replace("@", "_at_"))


def canonical(key: str) -> str:
    """'recall_at_20' -> 'recall@20' (inverse of metric_key for metric names)."""
    return re.sub(r"(recall|ndcg)_at_(\d+)", r"\1@\2", key)


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
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
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
            page = self.client.search_runs([self.experiment_id], flt, max_results=1000, page_token=token,
                                           order_by=["attributes.start_time ASC"])
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def run_for(self, kind: str, key: str, parent_id: str | None = None, tags: dict | None = None,
                params: dict | None = None, name: str | None = None, shared: bool = False) -> tuple[Any, bool]:
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
            self.client.log_batch(run_id, params=items[i:i + 100])

    def finished(self, kind: str = "cell") -> dict[str, Any]:
        """key -> run for runs of `kind` that finished with their results logged (tag done=1)."""
        return {r.data.tags["key"]: r for r in self.find(kind=kind, done="1") if is_finished(r)}

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [Metric(metric_key(k), float(v), now, step) for k, v in metrics.items()
                 if v is not None and not (isinstance(v, float) and math.isnan(v))]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i:i + 1000])

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


class CellRecorder:
    """Logs one cell's training into its run: each validation as step metrics (steps already logged are
    skipped, so a trial resumed from an older checkpoint adds no duplicate points), then the final metrics,
    the best checkpoint and its config."""

    def __init__(self, tracker: Tracker, run_id: str, select: str = "recall@20"):
        self.tracker, self.run_id = tracker, run_id
        self.last = tracker.last_step(run_id, f"val_{select}")

    def validation(self, epoch: int, metrics: dict, losses: dict) -> None:
        if epoch <= self.last:
            return
        self.tracker.log_metrics(self.run_id, {**{f"val_{k}": v for k, v in metrics.items()},
                                               **{f"loss_{k}": v for k, v in losses.items()}}, step=epoch)
        self.last = epoch

    def final(self, cell_id: str, result: dict, system, inter, workdir: str) -> None:
        from .. import checkpoint

        os.makedirs(workdir, exist_ok=True)
        ckpt = os.path.join(workdir, "checkpoint.pt")
        checkpoint.save(ckpt, system, result["config"], inter, {k: result[k] for k in ("val", "test", "best_epoch")},
                        profile_bank=result.get("profile_bank"))
        meta = {"cell_id": cell_id, "config_hash": result["config_hash"], "dataset_name": result["dataset_name"],
                "profile_bank": result.get("profile_bank"), "config": result["config"]}
        paths = {"config.json": meta, "result.json": result, "config_sources.json": result["config_sources"]}
        for name, body in paths.items():
            with open(os.path.join(workdir, name), "w") as f:
                json.dump(body, f, indent=1, default=str)
        self.tracker.log_files(self.run_id, [ckpt, os.path.join(workdir, "config.json")], "checkpoint")
        self.tracker.log_files(self.run_id, [os.path.join(workdir, n) for n in ("result.json", "config_sources.json")])
        self.tracker.log_params(self.run_id, result["config"])  # the widths derived once the bank was loaded
        final = {**{f"test_{k}": v for k, v in result["test"].items()},
                 **{f"best_val_{k}": v for k, v in result["val"].items()},
                 **{k: result[k] for k in ("best_epoch", "epochs_run", "train_seconds", "eval_seconds", "wall_seconds")}}
        self.tracker.log_metrics(self.run_id, final, step=max(result["best_epoch"], 0))
        dip = result.get("first_dip") or ""
        self.tracker.set_tags(self.run_id, {"profile_bank": result.get("profile_bank") or "none",
                                            "dataset_name": result["dataset_name"], "first_dip": "yes" if dip else "no",
                                            **({"mlflow.note.content": f"**Stopped in its first dip**: {dip}"} if dip else {})})
        self.tracker.finish(self.run_id)


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
        metrics = {canonical(k[5:]): v for k, v in m.items() if k.startswith("test_")}
        metrics.update({"val_" + canonical(k[9:]): v for k, v in m.items() if k.startswith("best_val_")})
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


def start_server(root: str = "mlruns", host: str = "127.0.0.1", port: int = 5000, log_path: str | None = None,
                 timeout_s: float = 120.0, backend_uri: str | None = None, workers: int = 1) -> tuple[subprocess.Popen, str]:
    """Start `mlflow server` on `host:port` with proxied artifacts under `root`/artifacts (`--serve-artifacts`:
    clients upload and download through the server, so workers need no shared disk) and the run database at
    `backend_uri`: a cluster's PostgreSQL (`postgresql://user@dbhost/mlflow`, needs psycopg2), else the sqlite
    store `root`/mlflow.db (one machine).

    Returns (process, tracking URI). The process runs in its own session; stop it with `stop_server`. For a
    cluster, bind `host` to an address the workers reach (see docs/cluster.md).
    """
    root_p = Path(root).resolve()
    (root_p / "artifacts").mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe) if exe.exists() else "mlflow", "server", "--backend-store-uri",
           backend_uri or f"sqlite:///{root_p}/mlflow.db", "--artifacts-destination", str(root_p / "artifacts"),
           "--serve-artifacts", "--host", host, "--port", str(port), "--workers", str(workers)]
    log = open(log_path or root_p / "server.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{host}:{port}"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"mlflow server did not answer on {url} within {timeout_s:.0f} s; see {log.name}")


def stop_server(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Stop a server started by `start_server` (its own process group only)."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout_s)


def describe_run(tracker: Tracker, run_id: str, report_md: str, figures: list[str]) -> None:
    """The run's description (tag mlflow.note.content, rendered as Markdown on its page): the report's
    text, then its figures as images served by the tracking server (`get-artifact`, relative to the UI)."""
    images = [f"![{os.path.splitext(f)[0]}](get-artifact?"
              f"{urllib.parse.urlencode({'path': f'report/{f}', 'run_uuid': run_id})})" for f in figures]
    body = report_md + ("\n## Figures\n\n" + "\n\n".join(images) + "\n" if images else "")
    tracker.set_tags(run_id, {"mlflow.note.content": body[:60000]})  # the UI's own limit on descriptions


def publish_report(grid, tracker: Tracker, out_dir: str, cells: list | None = None, log: bool = True) -> dict[str, str]:
    """Read the grid's finished runs back, write the report (proex.report) to `out_dir` and, with `log`, put
    its files on the grid's parent run (artifacts under report/) with p-values and improvements as metrics
    (`pvalue/<metric>/<dataset>/<model>/<arm>`). Returns {file name: path}."""
    from .. import report

    cells = cells if cells is not None else grid.expand()
    runs = runs_frame(tracker, cells)
    curves = curves_frame(tracker, runs, f"val_{grid.select}") if "curves" in grid.report.figures and not runs.empty else None
    files, comparison = report.write_report(runs, out_dir, grid.report, curves, title=grid.name)
    parents = tracker.find(kind="grid", key=grid.name)
    if log and parents:
        run_id = parents[0].info.run_id
        tracker.log_files(run_id, files.values(), "report")
        with open(files["report.md"]) as f:
            describe_run(tracker, run_id, f.read(), [n for n in files if n.endswith(".png")])
        stats = {}
        for _, r in comparison.iterrows():
            name = f"{metric_key(r['metric'])}/{r['dataset']}/{r['model']}/{r['arm']}"
            if r.get("variant") and r["arm"] != r.get("variant"):
                name += f"/{r['variant']}"
            stats[metric_key(f"pvalue/{name}")] = r["p_value"]
            stats[metric_key(f"improvement_pct/{name}")] = r["improvement_pct"]
        tracker.log_metrics(run_id, stats, step=len(runs))
        tracker.set_tags(run_id, {"report_runs": len(runs)})
    return files
