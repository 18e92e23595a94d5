"""Run a grid file on Ray Tune, tracked in MLflow, and write its report.

    python ray_jobs/grid.py                              # grids/smoke.yaml on a local Ray, store in mlruns/
    ray job submit --address http://HEAD:8265 --working-dir . -- python ray_jobs/grid.py grids/table2.yaml \
        --tracking-uri http://HEAD:5000 --storage /shared/proex-tune

Rerunning the same command resumes the grid: finished cells are not trained again, interrupted ones continue.
    python ray_jobs/grid.py grids/table2.yaml --dry-run                   # the plan: states, costs, ETA; trains nothing
    python ray_jobs/grid.py grids/table2.yaml --only model=lightgcn,gccf --only dataset=amazon   # a slice
Ctrl-C (or SIGTERM) stops the grid cleanly: its running cells are marked interrupted and the same command
resumes them; a second Ctrl-C forces. Exit status: 0 all done, 1 cells failed, 2 bad input, 130/143 stopped.
Options fall back to $MLFLOW_TRACKING_URI, $PROEX_TUNE_STORAGE and $RAY_ADDRESS. The logic is in proex.infra.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys

from _driver import ROOT, load_grid_file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("grid", nargs="?", default=os.path.join(ROOT, "grids", "smoke.yaml"), help="grid YAML file")
    p.add_argument(
        "--tracking-uri", default=None, help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)"
    )
    p.add_argument(
        "--storage",
        default=os.environ.get("PROEX_TUNE_STORAGE"),
        help="Ray Tune experiment storage: a shared path or bucket on a multi-node cluster",
    )
    p.add_argument("--address", default=None, help="Ray address; default $RAY_ADDRESS, else a new local Ray ('local')")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--report-dir", default=None, help="where to write the report (default mlruns/reports/<grid>)")
    p.add_argument(
        "--worker-logs",
        action="store_true",
        help=(
            "stream the Ray workers' stdout/stderr here (default: one line per cell; logs stay in Ray's session folder)"
        ),
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="LABEL=V[,V...]",
        help="run a slice: cells whose label (model, plugin, dataset, seed, variant, profiles) is one of "
        "the values, e.g. --only model=lightgcn,gccf --only dataset=amazon (labels combine with AND)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (cells finished/failed/pending, resources, borrowed or tuned settings, ETA, "
        "missing profile banks) and exit; trains nothing",
    )
    p.add_argument(
        "--probe-budget",
        type=float,
        default=60.0,
        help="--dry-run: seconds of one-epoch probes for groups without finished runs (0: none)",
    )
    p.add_argument("--num-gpus", type=float, default=None, help="--dry-run: GPUs at hand (default: this machine's)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # we checkpoint often
    # A clean console: one line per cell (proex.infra.grid_progress). Tune's newer output prints its header and
    # paths even at verbose=0, the classic one prints nothing; "slow operation" warnings only say the CPUs
    # are shared with the trials.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "30")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # the summary prints the links
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    grid = load_grid_file(args.grid, args.address, "grid")
    if grid is None:
        return 2
    only = parse_slice(args.only, grid)
    if only is None:
        return 2
    if args.dry_run:
        return dry_run(grid, only, args)
    from proex.infra import tune_grid
    from proex.infra.tracker import Tracker

    try:
        out = tune_grid.run_grid(
            grid,
            args.tracking_uri,
            args.storage,
            args.report_dir,
            address=args.address,
            num_cpus=args.num_cpus,
            worker_logs=args.worker_logs,
            only=only,
        )  # Ray only if needed
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
        print(f"\ngrid {grid.name}: forced stop. Resume with the same command:\n    {resume_command()}", flush=True)
        return 130
    import ray

    ray.shutdown()  # flush the workers' log lines before the summary
    from proex.infra import ui

    tracker = Tracker(out.tracking_uri, tune_grid.experiment_name(grid))
    link = ui.links(tracker, out.parent_run_id)
    print(
        f"\ngrid {out.grid}: {out.finished}/{out.n_cells} cells finished"
        + (f", {len(out.failed)} failed: {', '.join(out.failed)}" if out.failed else "")
    )
    if out.tracking_uri.startswith("http"):  # e.g. under `ray job submit`: the driver's folder is temporary
        print(f"report:     on the tracking server, run {out.parent_run_id}: {link['report']}")
        print(f"            files: {link['artifacts']}")
    else:
        print(f"report:     {out.report_files.get('report.md')}")
    for reg in out.registered:
        print(
            f"registered: models:/{reg.name}@champion"
            + (f" (version {reg.version})" if reg.champion else f" (run already version {reg.version})")
        )
    if out.registered:
        print(
            f"serve:      mlflow models serve -m models:/{out.registered[0].name}@champion --env-manager local "
            f"(with MLFLOW_TRACKING_URI={out.tracking_uri})"
        )
    print(f"MLflow UI:  {link['serve']}")
    print(f"            then open {link['compare']}")
    if not out.tracking_uri.startswith("http"):
        print(f"            (the report on the grid's run: {link['report']})")
    if out.interrupted:
        print(
            f"stopped by {signal.Signals(out.interrupted).name}: {len(out.marked)} running cell(s) marked interrupted. "
            f"Resume with the same command:\n    {resume_command()}"
        )
        return 128 + out.interrupted
    return 0 if not out.failed else 1


def resume_command() -> str:
    return " ".join(shlex.quote(a) for a in ["python", *sys.argv])


def parse_slice(specs: list[str], grid):
    """{label: values} of the --only flags ({} without), or None after printing the error."""
    from proex.config import ConfigError
    from proex.grid_slice import parse_only, slice_cells

    try:
        only = parse_only(specs)
        if only:
            slice_cells(grid.expand(), only)  # unknown values are errors before anything starts
        return only
    except ConfigError as exc:
        print(f"grid: error: {exc}", file=sys.stderr)
        return None


def dry_run(grid, only: dict, args) -> int:
    """Print the plan of the grid (or slice); reads the tracking store, starts no Ray, trains nothing."""
    from proex.grid_slice import slice_cells
    from proex.infra import grid_plan
    from proex.infra.tracker import Tracker
    from proex.infra.tune_grid import experiment_name

    logging.getLogger("proex").setLevel(logging.WARNING)  # the probes' training log
    cells = slice_cells(grid.expand(), only) if only else grid.expand()
    tracker = Tracker(args.tracking_uri, experiment_name(grid))
    plan = grid_plan.make_plan(
        grid, cells, tracker, cpus=args.num_cpus, gpus=args.num_gpus, probe_budget_s=args.probe_budget
    )
    print(grid_plan.format_plan(plan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
