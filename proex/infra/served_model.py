"""A finished cell as an MLflow Model (a `pyfunc`): what scoring needs, logged into the cell's run, so the UI's
Models tab lists it, the registry can version it and `mlflow models serve` answers with `proex recommend`'s lists.

Artifacts: `tables.npz` + `served.json` (no pickled object: the model is logged "from code",
`served_model_code.py`, which builds a `ServedRecommender`; the server's Python needs proex importable):
  * mode "inner_products" (pairwise models: GCCF, LightGCN, SimGCL, under any plug-in): the scorer's two tables
    users [U, D], items [I, D] (side vectors already fused: `models.base.InnerProducts`) and the training CSR
    (indptr, indices) whose items are masked; any K. Scored by `recommend.rank`, the code `proex recommend` runs.
  * mode "lists" (models that score from a user's history: Mult-VAE, L-DiffRec, CVGA): each training user's
    top-LIST_DEPTH items and scores, precomputed by `recommend.top_k` (training items masked); K <= LIST_DEPTH.
  * user_ids / item_ids (fixed-width strings) when the dataset has original ids.
Input: a DataFrame with `user` (dense index, as `proex recommend --users`) or `user_id` (an original id) and `k`
(default 20). Output: `recommend.table`: user, [user_id,] rank, item, score[, item_id].
Bad input raises MlflowException(INVALID_PARAMETER_VALUE), which the scoring server answers with HTTP 400.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np
import pandas as pd
from mlflow.entities import LoggedModelOutput, Metric
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema

from .tracker import Tracker

FORMAT = "proex-served/1"
NAME = "recommender"  # the logged model's name in its run
LIST_DEPTH = 100  # items stored per user for models that score from a history ("lists" mode)
DEFAULT_K = 20
CODE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "served_model_code.py")
SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("long", "user", required=False),
            ColSpec("string", "user_id", required=False),
            ColSpec("long", "k", required=False),
        ]
    ),
    outputs=Schema(
        [
            ColSpec("long", "user"),
            ColSpec("string", "user_id", required=False),
            ColSpec("long", "rank"),
            ColSpec("long", "item"),
            ColSpec("float", "score"),
            ColSpec("string", "item_id", required=False),
        ]
    ),
)


def bad_request(message: str) -> MlflowException:
    return MlflowException.invalid_parameter_value(message)  # -> HTTP 400 from `mlflow models serve`


def served_tables(system, inter) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays a served model scores from (see the module docstring) and its description."""
    import torch

    from ..data.tensors import TrainData
    from ..models.base import InnerProducts
    from ..recommend import top_k

    data = TrainData(inter, next(system.parameters()).device)
    system.eval()
    with torch.no_grad():
        scorer = system.scorer()
    if isinstance(scorer, InnerProducts):
        arrays = {
            "users": scorer.users.detach().cpu().numpy(),
            "items": scorer.items.detach().cpu().numpy(),
            "indptr": data.train_csr.indptr,
            "indices": data.train_csr.indices,
        }
        mode, depth = "inner_products", inter.n_items
    else:
        items, scores = top_k(system, data, np.arange(inter.n_users), LIST_DEPTH)
        arrays = {"list_items": items.astype(np.int32), "list_scores": scores.astype(np.float32)}
        mode, depth = "lists", items.shape[1]
    for name in ("user_ids", "item_ids"):
        if getattr(inter, name) is not None:
            arrays[name] = np.asarray(getattr(inter, name)).astype(str)
    meta = {
        "format": FORMAT,
        "mode": mode,
        "max_k": int(depth),
        "n_users": inter.n_users,
        "n_items": inter.n_items,
        "dataset": inter.name,
    }
    return arrays, meta


def log_served_model(tracker: Tracker, run_id: str, system, inter, step: int = 0) -> str:
    """Log the cell's served model into its run (a LoggedModel with the run as source, its test metrics linked to
    the run's dataset input), tag the run `served_model_id` and log `served_model_seconds` (what it cost).
    Returns the model id."""
    import mlflow.pyfunc

    start = time.perf_counter()
    client = tracker.client
    run = client.get_run(run_id)
    arrays, meta = served_tables(system, inter)
    meta.update(run_id=run_id, cell_id=run.data.tags.get("cell_id", ""))
    labels = {k: run.data.tags[k] for k in ("model", "plugin", "dataset", "seed", "cell_id") if k in run.data.tags}
    logged = client.create_logged_model(
        run.info.experiment_id,
        NAME,
        source_run_id=run_id,
        tags={**labels, "mode": meta["mode"]},
        model_type="recommender",
    )
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(os.path.join(tmp, "tables.npz"), **arrays)
        with open(os.path.join(tmp, "served.json"), "w") as f:
            json.dump(meta, f, indent=1)
        mlflow_model = Model(
            artifact_path=logged.artifact_location, run_id=run_id, model_uuid=logged.model_id, model_id=logged.model_id
        )
        example = pd.DataFrame({"user": [0, min(1, inter.n_users - 1)], "k": [DEFAULT_K, DEFAULT_K]})
        local = os.path.join(tmp, "model")
        mlflow.pyfunc.save_model(
            local,
            python_model=CODE,
            mlflow_model=mlflow_model,
            signature=SIGNATURE,
            input_example=example,
            pip_requirements=requirements(),
            artifacts={"tables": os.path.join(tmp, "tables.npz"), "served": os.path.join(tmp, "served.json")},
        )
        client.log_model_artifacts(logged.model_id, local)
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
    datasets = run.inputs.dataset_inputs
    ds = {"dataset_name": datasets[0].dataset.name, "dataset_digest": datasets[0].dataset.digest} if datasets else {}
    now = int(time.time() * 1000)
    metrics = [
        Metric(k, v, now, step, model_id=logged.model_id, run_id=run_id, **ds)
        for k, v in run.data.metrics.items()
        if k.startswith("test_")
    ]
    if metrics:
        client.log_batch(run_id, metrics=metrics)
    client.finalize_logged_model(logged.model_id, "READY")
    tracker.set_tags(run_id, {"served_model_id": logged.model_id})
    tracker.log_metrics(run_id, {"served_model_seconds": time.perf_counter() - start}, step=step)
    return logged.model_id


def requirements() -> list[str]:
    """The served model's pip requirements, pinned to this environment (given, so MLflow does not infer them by
    loading the model in a subprocess); proex itself must be importable where it is served."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "numpy", "pandas", "scipy", "torch")]


class ServedRecommender(PythonModel):
    """The pyfunc: `predict(DataFrame[user | user_id, k]) -> recommend.table`, from the logged tables."""

    def load_context(self, context) -> None:
        with open(context.artifacts["served"]) as f:
            self.meta = json.load(f)
        if self.meta.get("format") != FORMAT:
            raise MlflowException(
                f"{context.artifacts['served']}: format {self.meta.get('format')!r}, expected {FORMAT!r}"
            )
        with np.load(context.artifacts["tables"], allow_pickle=False) as z:
            self.arrays = {k: z[k] for k in z.files}
        self.user_ids, self.item_ids = self.arrays.get("user_ids"), self.arrays.get("item_ids")
        self.index = {u: i for i, u in enumerate(self.user_ids)} if self.user_ids is not None else None
        if self.meta["mode"] == "inner_products":
            import scipy.sparse as sp
            import torch

            from proex.data.interactions import Interactions
            from proex.data.tensors import TrainData
            from proex.models.base import InnerProducts

            shape = (self.meta["n_users"], self.meta["n_items"])
            train = sp.csr_matrix(
                (np.ones(len(self.arrays["indices"]), np.float32), self.arrays["indices"], self.arrays["indptr"]),
                shape=shape,
            )
            empty = sp.csr_matrix(shape, dtype=np.float32)
            self.data = TrainData(Interactions(self.meta["dataset"], train, empty, empty))
            self.scorer = InnerProducts(torch.from_numpy(self.arrays["users"]), torch.from_numpy(self.arrays["items"]))

    def users_of(self, frame: pd.DataFrame) -> np.ndarray:
        """Dense user indices of the request's rows (column `user`, else `user_id`), checked."""
        n = self.meta["n_users"]
        if "user" in frame.columns:
            users = frame["user"]
            if users.isna().any() or not np.all(np.mod(users.to_numpy(dtype=float), 1) == 0):
                raise bad_request("column `user` must hold an integer dense user index on every row")
            users = users.to_numpy(dtype=np.int64)
            bad = users[(users < 0) | (users >= n)]
            if len(bad):
                raise bad_request(
                    f"unknown user {bad[:5].tolist()}: dense user indices of {self.meta['dataset']} are 0..{n - 1}"
                )
            return users
        if "user_id" in frame.columns:
            if self.index is None:
                raise bad_request(
                    f"{self.meta['dataset']} has no original user ids: send dense indices in column `user` (0..{n - 1})"
                )
            unknown = [u for u in frame["user_id"].astype(str) if u not in self.index]
            if unknown:
                raise bad_request(f"unknown user_id {unknown[:5]}: not a user of {self.meta['dataset']}")
            return np.asarray([self.index[u] for u in frame["user_id"].astype(str)], dtype=np.int64)
        raise bad_request(
            f"the request has columns {list(frame.columns)}: send `user` (dense user index) or "
            "`user_id` (original id), and optionally `k`"
        )

    def ks_of(self, frame: pd.DataFrame) -> np.ndarray:
        if "k" not in frame.columns:
            return np.full(len(frame), DEFAULT_K, dtype=np.int64)
        ks = frame["k"]
        if ks.isna().any() or not np.all(np.mod(ks.to_numpy(dtype=float), 1) == 0) or (ks < 1).any():
            raise bad_request(f"column `k` must be a positive integer on every row (got {ks.tolist()[:5]})")
        ks = ks.to_numpy(dtype=np.int64)
        if self.meta["mode"] == "lists" and ks.max() > self.meta["max_k"]:
            raise bad_request(
                f"k={int(ks.max())} is more than the {self.meta['max_k']} items this model stores per "
                f"user (its base model scores from a history; lists were precomputed): use k <= "
                f"{self.meta['max_k']}"
            )
        return ks

    def top(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.meta["mode"] == "inner_products":
            from proex.recommend import rank

            return rank(self.scorer, self.data, users.tolist(), k, dense=False)
        k = min(k, self.meta["max_k"])
        return self.arrays["list_items"][users, :k].astype(np.int64), self.arrays["list_scores"][users, :k]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from proex.recommend import table

        frame = pd.DataFrame(model_input)
        if frame.empty:
            raise bad_request("the request holds no rows: send at least one `user` (or `user_id`)")
        users, ks = self.users_of(frame), self.ks_of(frame)
        parts = []
        for k in dict.fromkeys(ks.tolist()):  # one ranking per distinct k, in the request's order
            rows = np.flatnonzero(ks == k)
            items, scores = self.top(users[rows], k)
            part = table(users[rows], items, scores, self.user_ids, self.item_ids)
            part.insert(0, "_row", np.repeat(rows, items.shape[1])[np.isfinite(scores.reshape(-1))])
            parts.append(part)
        out = pd.concat(parts).sort_values(["_row", "rank"], kind="stable")
        return out.drop(columns="_row").reset_index(drop=True)


def model_location(client, uri: str) -> str:
    """The artifact location of the logged model `uri` names: models:/<name>@<alias>, models:/<name>/<version> or
    models:/<model id>. Resolved with `client` (MLflow's own models:/ resolution of a logged-model id reads the
    default store, not the one given)."""
    rest = uri[len("models:/") :].strip("/")
    if "@" in rest or "/" in rest:
        name, alias = rest.split("@", 1) if "@" in rest else (rest, None)
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(*rest.split("/", 1))
        rest = mv.model_id or mv.source[len("models:/") :]  # a server's answer may leave model_id empty
    return client.get_logged_model(rest).artifact_location


def recommend_from_model(uri: str, users: list[int], k: int, tracking_uri: str | None = None) -> pd.DataFrame:
    """`proex recommend --model-uri`: the table a logged or registered served model returns for `users`.
    uri: models:/<name>@<alias>, models:/<name>/<version>, models:/<model id>, or a local model folder."""
    import mlflow.artifacts
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory() as tmp:
        local = uri
        if uri.startswith("models:/"):
            tracker = Tracker(tracking_uri, experiment=None)
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=model_location(tracker.client, uri), dst_path=tmp, tracking_uri=tracker.uri
            )
        model = mlflow.pyfunc.load_model(local)
        try:
            return model.predict(pd.DataFrame({"user": np.asarray(users, dtype=np.int64), "k": k}))
        except MlflowException as exc:  # a bad user or k: the CLI's clear error, not a traceback
            if exc.error_code != "INVALID_PARAMETER_VALUE":
                raise
            raise ValueError(f"{uri}: {exc.message}") from None
