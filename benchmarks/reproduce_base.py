"""Reproduce the paper's Table 2 base-model rows on the real RLMRec data, and write the comparison table.

    python benchmarks/reproduce_base.py --models gccf lightgcn --datasets amazon yelp --seeds 2023 2024 2025
    python benchmarks/reproduce_base.py --device cuda --jobs 6 --stop-after 3600   # several runs share one GPU

Each (model, dataset, seed) run is written to docs/results/runs/<model>-<dataset>-s<seed>.json as soon as it
finishes; a rerun skips runs already there, so the script resumes after an interruption. The table
(docs/results/base_models.table.md, included in base_models.md) is rebuilt from every run file present. Selection
uses validation only.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from proex.data.registry import load_dataset  # noqa: E402
from proex.experiment import CellConfig, run_cell  # noqa: E402
from proex.models import MODELS  # noqa: E402

RESULTS = os.path.join(os.path.dirname(__file__), "..", "docs", "results")
# Paper Table 2, base rows: (R@20, N@20).
PAPER = {
    ("gccf", "amazon"): (0.1343, 0.0807),
    ("gccf", "yelp"): (0.1084, 0.0680),
    ("lightgcn", "amazon"): (0.1411, 0.0856),
    ("lightgcn", "yelp"): (0.1157, 0.0733),
    ("simgcl", "amazon"): (0.1512, 0.0919),
    ("simgcl", "yelp"): (0.1254, 0.0801),
    ("multvae", "amazon"): (0.1472, 0.0916),
    ("multvae", "yelp"): (0.1189, 0.0751),
    ("ldiffrec", "amazon"): (0.1495, 0.0990),
    ("ldiffrec", "yelp"): (0.1177, 0.0745),
    ("cvga", "amazon"): (0.1522, 0.0960),
    ("cvga", "yelp"): (0.1249, 0.0801),
}


def run_path(model: str, dataset: str, seed: int) -> str:
    return os.path.join(RESULTS, "runs", f"{model}-{dataset}-s{seed}.json")


def write_table() -> str:
    runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(RESULTS, "runs", "*.json")))]
    lines = [
        "| model | dataset | seeds | R@20 (ours, mean ± sd) | R@20 paper | Δ | N@20 (ours) | N@20 paper | Δ | "
        "best epoch | s/epoch | s/validation | device |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, dataset), (pr, pn) in PAPER.items():
        mine = [r for r in runs if r["config"]["model"] == model and r["dataset_name"] == dataset]
        if not mine:
            lines.append(f"| {model} | {dataset} | 0 | not run | {pr:.4f} | | | {pn:.4f} | | | | | |")
            continue
        rec = [r["test"]["recall@20"] for r in mine]
        nd = [r["test"]["ndcg@20"] for r in mine]
        sd = statistics.stdev(rec) if len(rec) > 1 else 0.0
        ep = [r["best_epoch"] for r in mine]
        spe = statistics.mean(r["train_seconds"] / max(r["epochs_run"], 1) for r in mine)
        spv = statistics.mean(r["eval_seconds"] / max(len(r["history"]), 1) for r in mine)
        seeds = ",".join(str(r["config"]["train"]["seed"]) for r in mine)
        devices = ",".join(sorted({r["device"] for r in mine}))
        mr, mn = statistics.mean(rec), statistics.mean(nd)
        lines.append(
            f"| {model} | {dataset} | {seeds} | {mr:.4f} ± {sd:.4f} | {pr:.4f} | {100 * (mr / pr - 1):+.1f}% "
            f"| {mn:.4f} | {pn:.4f} | {100 * (mn / pn - 1):+.1f}% | {min(ep)}-{max(ep)} | {spe:.2f} | {spv:.2f} "
            f"| {devices} |"
        )
    return "\n".join(lines)


def run_one(model: str, dataset: str, seed: int, device: str, inter) -> None:
    """Train one (model, dataset, seed) with the reference defaults and write its run file atomically."""
    cell = CellConfig(dataset=dataset, model=model, train={"seed": seed, "device": device})
    result, _ = run_cell(cell, inter)
    path = run_path(model, dataset, seed)
    with open(path + ".tmp", "w") as f:
        json.dump(result.to_dict(), f, indent=1)
    os.replace(path + ".tmp", path)


def run_parallel(todo: list[tuple[str, str, int]], device: str, jobs: int, stop_after: float, log_dir: str) -> None:
    """Run each missing run in its own process, `jobs` at a time (small models leave a GPU mostly idle, so
    several runs share it). No new run starts after `stop_after` seconds; runs still going then are stopped
    and lose nothing already written (each finished run has its own file)."""
    os.makedirs(log_dir, exist_ok=True)
    start, queue, running = time.monotonic(), list(todo), {}
    while queue or running:
        late = time.monotonic() - start > stop_after
        if late and queue:
            logging.info("deadline: %d runs not started", len(queue))
            queue.clear()
        while queue and len(running) < jobs and not late:
            model, dataset, seed = queue.pop(0)
            log = open(os.path.join(log_dir, f"{model}-{dataset}-s{seed}.log"), "w")
            cmd = [
                sys.executable,
                __file__,
                "--models",
                model,
                "--datasets",
                dataset,
                "--seeds",
                str(seed),
                "--device",
                device,
                "--no-table",
            ]
            running[(model, dataset, seed)] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
            logging.info("started %s-%s-s%d (%d queued)", model, dataset, seed, len(queue))
        for key, (proc, log) in list(running.items()):
            if proc.poll() is not None or late:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()
                log.close()
                del running[key]
                logging.info("%s %s-%s-s%d (exit %s)", "stopped" if late else "finished", *key, proc.returncode)
        time.sleep(1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--datasets", nargs="+", default=["amazon", "yelp"])
    p.add_argument("--seeds", nargs="+", type=int, default=[2023, 2024, 2025])
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process")
    p.add_argument(
        "--stop-after",
        type=float,
        default=float("inf"),
        help="seconds; start no run after this and stop those still running (with --jobs > 1)",
    )
    p.add_argument("--log-dir", default=os.path.join(RESULTS, "runs", "logs"), help="per-run logs (with --jobs > 1)")
    p.add_argument("--table-only", action="store_true", help="only rebuild the table from existing runs")
    p.add_argument("--no-table", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    os.makedirs(os.path.join(RESULTS, "runs"), exist_ok=True)
    # Seed-major order: every (model, dataset) gets its first seed before any gets a second.
    todo = [
        (m, d, s)
        for s in args.seeds
        for d in args.datasets
        for m in args.models
        if not os.path.exists(run_path(m, d, s))
    ]
    if not args.table_only and args.jobs > 1:
        run_parallel(todo, args.device, args.jobs, args.stop_after, args.log_dir)
    elif not args.table_only:
        loaded = {}
        for model, dataset, seed in todo:
            if dataset not in loaded:
                loaded[dataset] = load_dataset(dataset)
            run_one(model, dataset, seed, args.device, loaded[dataset])
            if not args.no_table:
                print(write_table(), flush=True)
    if args.no_table:
        return
    table = write_table()
    print(table)
    with open(os.path.join(RESULTS, "base_models.table.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
