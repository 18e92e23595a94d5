"""The grid machinery at the size of the paper's Table 2: 6 models x 2 plug-ins x 3 datasets x 10 seeds = 360 cells,
on tiny synthetic tables with one epoch each, so that what is measured is the driver, Ray Tune and MLflow.

    nice -n 5 python benchmarks/grid_scale.py --num-cpus 2 --out docs/results/grid_scale.md

Three synthetic datasets (30 users x 40 items, seeds 0-2) are written in the RLMRec layout to syn0, syn1, syn2
(distinct dataset names), ProEx reads a random profile bank; a local MLflow server (HTTP, sqlite backend) and a
local Ray run the grid. Measured in this process:
  launch     wall of `run_grid` with every cell to train, its training time (the runs' `wall_seconds`) and the
             driver overhead per cell: (wall - training / concurrent trials) / cells
  resubmit   wall of `run_grid` again with every cell finished (nothing to train: reads the store, writes the report)
  report     wall of `publish_report` alone
  plan       wall of the `--dry-run` plan (`grid_plan.make_plan`, no probes)
  memory     the driver's peak RSS (Ray's and MLflow's processes are not counted)
`--profile DIR` writes cProfile files of the resubmit and the report. `--keep DIR` keeps the work folder.
`--screenshot PNG` opens the grid's MLflow comparison view (the saved view, `proex.infra.ui.links`) in headless
Chromium (Playwright, /usr/bin/chromium) and saves it, with the seconds until its first cell row showed.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import re
import resource
import socket
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local Ray on loopback
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

MODELS = ["lightgcn", "gccf", "simgcl", "multvae", "ldiffrec", "cvga"]


def grid_yaml(data: str, seeds: int) -> str:
    datasets = ", ".join(os.path.join(data, f"syn{k}") for k in range(3))
    return (
        f"name: scale\naxes: {{model: [{', '.join(MODELS)}], plugin: [base, proex], dataset: [{datasets}], "
        f"seed: [{', '.join(map(str, range(seeds)))}]}}\n"
        "fixed: {profiles: 'random:k=2,dim=16', train: {epochs: 1, eval_every: 1, patience: 1, batch_size: 64}}\n"
        "resources: {cpu: 1}\nmax_failures: 0\n"
    )


def timed(fn, profile: str | None = None):
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    out = fn()
    if prof:
        prof.disable()
        prof.dump_stats(profile)
    return out, time.perf_counter() - t0


def screenshot(url: str, path: str) -> float:
    """Open `url` in headless Chromium, wait for a cell's row, save a screenshot; seconds until the row showed."""
    from playwright.sync_api import sync_playwright

    flags = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]  # as tests/test_ui.py
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
        page = browser.new_page(viewport={"width": 1900, "height": 1000})
        page.add_init_script("localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true')")
        t0 = time.perf_counter()
        page.goto(url)
        page.get_by_text(re.compile(r"-(base|proex)-syn\d-s\d")).first.wait_for(timeout=180_000)
        shown = time.perf_counter() - t0
        page.get_by_text("test_recall_at_20").first.wait_for(timeout=60_000)
        page.screenshot(path=path)
        with open(os.path.splitext(path)[0] + ".txt", "w") as f:
            f.write(page.inner_text("body"))
        browser.close()
    return round(shown, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--seeds", type=int, default=10, help="seeds per (model, plug-in, dataset): 10 = 360 cells")
    p.add_argument("--out", default=None, help="also write the Markdown page here")
    p.add_argument("--profile", default=None, help="folder for cProfile files of the resubmit and the report")
    p.add_argument("--keep", default=None, help="folder to keep the MLflow store in (default: temporary)")
    p.add_argument("--screenshot", default=None, help="PNG of the MLflow comparison view of the grid's runs")
    p.add_argument(
        "--resubmit-only",
        action="store_true",
        help="with --keep naming the folder of a finished run of this benchmark: measure the resubmit, "
        "report and plan only (e.g. after changing them)",
    )
    args = p.parse_args()

    from proex.data.export import save_rlmrec
    from proex.data.registry import load_dataset
    from proex.grid import load_grid
    from proex.infra import grid_plan, tune_grid
    from proex.infra.mlflow_server import start_server, stop_server
    from proex.infra.publishing import publish_report
    from proex.infra.tracker import Tracker
    from proex.infra.ui import links

    work = args.keep or tempfile.mkdtemp(prefix="grid-scale-")
    os.makedirs(work, exist_ok=True)
    for k in range(3):
        save_rlmrec(
            load_dataset(f"synthetic:n_users=30,n_items=40,mean_interactions=5,seed={k}"),
            os.path.join(work, "data", f"syn{k}"),
        )
    path = os.path.join(work, "scale.yaml")
    with open(path, "w") as f:
        f.write(grid_yaml(os.path.join(work, "data"), args.seeds))
    grid = load_grid(path)
    for attempt in range(3):  # a free port can be taken again before the server binds it (Ray's many ports)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        try:
            server, uri = start_server(os.path.join(work, "mlflow"), "127.0.0.1", port)
            break
        except Exception:  # noqa: BLE001 - another port, then give up
            if attempt == 2:
                raise
    prof = args.profile
    if prof:
        os.makedirs(prof, exist_ok=True)
    load = os.getloadavg()
    launch, train, served = None, None, []
    try:
        tracker = Tracker(uri, tune_grid.experiment_name(grid))
        if args.resubmit_only:  # a fresh server answered its first two searches of 360 runs in ~32 s, later ones
            for _ in range(2):  # in ~4 s (measured under load): warm it, as a long-running tracking server is
                tracker.find(kind="cell")
        else:
            tune_grid.connect("local", args.num_cpus)
            _, launch = timed(
                lambda: tune_grid.run_grid(grid, uri, os.path.join(work, "tune"), os.path.join(work, "report"))
            )
            done = tracker.finished("cell").values()
            train = sum(r.data.metrics.get("wall_seconds", 0.0) for r in done)
            served = [r.data.metrics["served_model_seconds"] for r in done if "served_model_seconds" in r.data.metrics]
        out, resubmit = timed(
            lambda: tune_grid.run_grid(grid, uri, os.path.join(work, "tune"), os.path.join(work, "report")),
            prof and os.path.join(prof, "resubmit.prof"),
        )
        _, report = timed(
            lambda: publish_report(grid, tracker, os.path.join(work, "report")),
            prof and os.path.join(prof, "report.prof"),
        )
        _, plan = timed(
            lambda: grid_plan.make_plan(grid, grid.expand(), tracker, probe_budget_s=0, estimate_banks=False)
        )
        ui_s = screenshot(links(tracker, out.parent_run_id)["compare"], args.screenshot) if args.screenshot else None
    finally:
        stop_server(server)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = out.n_cells
    row = {"cells": n, "finished": out.finished, "failed": len(out.failed), "concurrent": args.num_cpus}
    if launch is not None:
        row.update(
            {
                "launch_s": round(launch, 1),
                "training_s": round(train, 1),
                "overhead_per_cell_s": round((launch - train / args.num_cpus) / n, 3),
                "wall_per_cell_s": round(launch / n, 3),
                "served_model_s_mean": round(sum(served) / len(served), 2) if served else None,
                "served_model_s_total": round(sum(served), 1),
            }
        )
    row.update(
        {
            "resubmit_s": round(resubmit, 1),
            "report_s": round(report, 1),
            "plan_s": round(plan, 1),
            "driver_peak_rss_mb": round(rss_mb),
            "ui_first_row_s": ui_s,
            "loadavg_at_start": [round(x, 2) for x in load],
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        }
    )
    print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n```json\n" + json.dumps(row, indent=1) + "\n```\n")


if __name__ == "__main__":
    main()
