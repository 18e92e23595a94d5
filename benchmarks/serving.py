"""Latency of a served model (`mlflow models serve`, one HTTP request) against `proex recommend` in this process,
top-20 on an amazon-sized model on the CPU, and the size of the logged model.

    python benchmarks/serving.py                          # LightGCN and Mult-VAE on the amazon split
    python benchmarks/serving.py --models lightgcn --repeats 50 --dataset synthetic

The models are freshly initialised, not trained: scoring costs the same. Each model is logged as a served model
into a throw-away sqlite store (`served_model.log_served_model`, as a finished grid cell is) and served on
127.0.0.1. Timed per request, for 1 user and for 1,000 users (p50 and p99 over --repeats requests):
  * http:       POST /invocations to `mlflow models serve` (JSON in and out);
  * pyfunc:     the same model's `predict` in this process (no HTTP);
  * top_k:      `proex.recommend.top_k` on the loaded system: what `proex recommend` runs per request once loaded;
  * recommend:  `proex.recommend.recommend(checkpoint, users)`: the whole `proex recommend` (loads the dataset and
                checkpoint each call), 1,000 users only.
Ratios are against top_k, measured here in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import urllib.request

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from proex import checkpoint  # noqa: E402
from proex.data.registry import load_dataset  # noqa: E402
from proex.data.tensors import TrainData  # noqa: E402
from proex.experiment import CellConfig, build_system, resolve  # noqa: E402
from proex.recommend import recommend, top_k  # noqa: E402


def timed(fn, repeats: int) -> dict:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    ms = np.asarray(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def post(url: str, users: list[int], k: int) -> list:
    body = json.dumps({"dataframe_split": {"columns": ["user", "k"], "data": [[u, k] for u in users]}}).encode()
    req = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())["predictions"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(model: str, inter, tmp: str, repeats: int, k: int) -> dict:
    import mlflow.pyfunc

    from proex.infra.mlflow_server import serve_model, stop_server
    from proex.infra.served_model import log_served_model, model_location
    from proex.infra.tracker import Tracker
    from proex.infra.ui import log_dataset

    torch.manual_seed(0)
    cell = CellConfig(dataset=inter.name, model=model, plugin="base", train={"device": "cpu"})
    resolved = resolve(cell)
    data = TrainData(inter, "cpu")
    system = build_system(resolved, data).eval()
    ckpt = os.path.join(tmp, f"{model}.pt")
    checkpoint.save(ckpt, system, resolved.to_dict(), inter)
    uri = f"sqlite:///{tmp}/mlflow.db"
    tracker = Tracker(uri, "proex-serving-benchmark")
    run, _ = tracker.run_for("cell", model, tags={"model": model, "plugin": "base", "dataset": inter.name, "seed": 0})
    log_dataset(tracker, run.info.run_id, inter, inter.name)
    t = time.perf_counter()
    model_id = log_served_model(tracker, run.info.run_id, system, inter)
    log_s = time.perf_counter() - t
    location = model_location(tracker.client, f"models:/{model_id}")
    local = location[len("file://") :] if location.startswith("file://") else location
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(local) for f in fs)
    pyfunc = mlflow.pyfunc.load_model(local)
    rng = np.random.default_rng(0)
    one, many = [int(rng.integers(inter.n_users))], rng.choice(inter.n_users, 1000, replace=False).tolist()
    proc, url = serve_model(f"models:/{model_id}", uri, port=free_port(), log_path=os.path.join(tmp, f"{model}.log"))
    try:
        served = pd.DataFrame(post(url, many, k))
        want = recommend(ckpt, many, k, dataset=inter.name)
        assert served[["user", "rank", "item"]].values.tolist() == want[["user", "rank", "item"]].values.tolist()
        rows = {}
        for label, users in (("1 user", one), ("1,000 users", many)):
            frame = pd.DataFrame({"user": users, "k": k})
            rows[label] = {
                "http": timed(lambda users=users: post(url, users, k), repeats),
                "pyfunc": timed(lambda frame=frame: pyfunc.predict(frame), repeats),
                "top_k": timed(lambda users=users: top_k(system, data, users, k), repeats),
            }
        rows["1,000 users"]["recommend"] = timed(
            lambda: recommend(ckpt, many, k, dataset=inter.name), max(3, repeats // 5)
        )
    finally:
        stop_server(proc)
    return {"model": model, "artifact_bytes": size, "log_seconds": log_s, "latency": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="amazon")
    p.add_argument("--models", nargs="+", default=["lightgcn", "multvae"])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--k", type=int, default=20)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    inter = load_dataset(args.dataset)
    print(
        f"{inter.name}: {inter.n_users} users x {inter.n_items} items, {inter.train.nnz} training interactions; "
        f"top-{args.k}, CPU, {args.repeats} requests per figure"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            out = measure(model, inter, tmp, args.repeats, args.k)
            print(f"\n{model}: logged model {out['artifact_bytes'] / 1e6:.2f} MB, logged in {out['log_seconds']:.2f} s")
            print("| request | path | p50 ms | p99 ms | p50 / top_k |")
            print("|---|---|---|---|---|")
            for label, paths in out["latency"].items():
                ref = paths["top_k"]["p50_ms"]
                for path, t in paths.items():
                    print(f"| {label} | {path} | {t['p50_ms']:.1f} | {t['p99_ms']:.1f} | {t['p50_ms'] / ref:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
