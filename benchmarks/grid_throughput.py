"""Trials per hour of the smoke grid through Ray Tune + MLflow at 1, 2 and 4 concurrent trials.

    python benchmarks/grid_throughput.py                       # this machine; a GPU is shared fractionally
    python benchmarks/grid_throughput.py --concurrency 1 2 4 8 --grid grids/smoke.yaml --out throughput.md

Each concurrency level runs the whole grid from scratch (fresh MLflow store and Tune folder in a temporary
directory) on one local Ray started once. A trial asks for cores / concurrency CPUs and, when CUDA is
present, 1 / concurrency of the GPU (so 4 trials share one GPU). The wall time covers scheduling, worker
start-up, training, MLflow logging, checkpoints and the report: what a user waits for.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local Ray on loopback
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grid", default=os.path.join(ROOT, "grids", "smoke.yaml"))
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--out", default=None, help="also write the Markdown table here")
    args = p.parse_args()

    import torch

    from proex.grid import Resources, load_grid
    from proex.infra import tune_grid

    grid = load_grid(args.grid)
    cores = args.num_cpus or os.cpu_count() or 1
    gpus = torch.cuda.device_count()
    tune_grid.connect("local", cores)
    rows = []
    for c in args.concurrency:
        res = Resources(cpu=cores / c, gpu=(1.0 / c) if gpus else 0.0)  # fractional: Ray packs c trials
        g = dataclasses.replace(grid, name=f"{grid.name}-c{c}", resources=res, max_concurrent=c)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            out = tune_grid.run_grid(g, f"sqlite:///{tmp}/mlflow.db", f"{tmp}/tune", f"{tmp}/report", verbose=0)
            wall = time.perf_counter() - t0
        rows.append(
            {
                "concurrency": c,
                "cpu_per_trial": round(res.cpu, 2),
                "gpu_per_trial": round(res.gpu, 2),
                "cells": out.n_cells,
                "finished": out.finished,
                "wall_s": round(wall, 1),
                "trials_per_hour": round(3600 * out.finished / wall, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    device = torch.cuda.get_device_name(0) if gpus else f"CPU only, {cores} cores"
    lines = [
        f"Smoke grid ({grid.path}), {device}, torch {torch.__version__}",
        "",
        "| concurrent trials | CPU / trial | GPU / trial | cells finished | wall (s) | trials per hour |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['concurrency']} | {r['cpu_per_trial']} | {r['gpu_per_trial']} | {r['finished']}/{r['cells']} "
        f"| {r['wall_s']} | {r['trials_per_hour']} |"
        for r in rows
    ]
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
