"""Run a grid file on Ray Tune, tracked in MLflow, and write its report.

    python ray_jobs/grid.py                              # grids/smoke.yaml on a local Ray, store in mlruns/
    ray job submit --address http://HEAD:8265 --working-dir . -- python ray_jobs/grid.py grids/table2.yaml \
        --tracking-uri http://HEAD:5000 --storage /shared/proex-tune

Rerunning the same command resumes the grid: finished cells are not trained again, interrupted ones continue.
Options fall back to $MLFLOW_TRACKING_URI, $PROEX_TUNE_STORAGE and $RAY_ADDRESS. The logic is in proex.infra.
"""
from __future__ import annotations

import argparse
import logging
import os

from _driver import ROOT, load_grid_file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("grid", nargs="?", default=os.path.join(ROOT, "grids", "smoke.yaml"), help="grid YAML file")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)")
    p.add_argument("--storage", default=os.environ.get("PROEX_TUNE_STORAGE"),
                   help="Ray Tune experiment storage: a shared path or bucket on a multi-node cluster")
    p.add_argument("--address", default=None, help="Ray address; default $RAY_ADDRESS, else a new local Ray ('local')")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--report-dir", default=None, help="where to write the report (default mlruns/reports/<grid>)")
    p.add_argument("--worker-logs", action="store_true",
                   help="stream the Ray workers' stdout/stderr here (default: one line per cell; logs stay in Ray's session folder)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # we checkpoint often
    # A clean console: one line per cell (tune_grid.CellProgress). Tune's newer output prints its header and
    # paths even at verbose=0, the classic one prints nothing; "slow operation" warnings only say the CPUs
    # are shared with the trials.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "30")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # the summary prints the links
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    grid = load_grid_file(args.grid, args.address, "grid")
    if grid is None:
        return 2
    from proex.infra import tune_grid
    from proex.infra.tracker import Tracker

    out = tune_grid.run_grid(grid, args.tracking_uri, args.storage, args.report_dir, address=args.address,
                             num_cpus=args.num_cpus, worker_logs=args.worker_logs)  # starts Ray only if a cell is left
    import ray

    ray.shutdown()  # flush the workers' log lines before the summary
    from proex.infra import ui

    tracker = Tracker(out.tracking_uri, tune_grid.experiment_name(grid))
    link = ui.links(tracker, out.parent_run_id)
    print(f"\ngrid {out.grid}: {out.finished}/{out.n_cells} cells finished"
          + (f", {len(out.failed)} failed: {', '.join(out.failed)}" if out.failed else ""))
    if out.tracking_uri.startswith("http"):  # e.g. under `ray job submit`: the driver's folder is temporary
        print(f"report:     on the tracking server, run {out.parent_run_id}: {link['report']}")
        print(f"            files: {link['artifacts']}")
    else:
        print(f"report:     {out.report_files.get('report.md')}")
    for reg in out.registered:
        print(f"registered: models:/{reg.name}@champion" + (f" (version {reg.version})" if reg.champion else
                                                             f" (run already version {reg.version})"))
    if out.registered:
        print(f"serve:      mlflow models serve -m models:/{out.registered[0].name}@champion --env-manager local "
              f"(with MLFLOW_TRACKING_URI={out.tracking_uri})")
    print(f"MLflow UI:  {link['serve']}")
    print(f"            then open {link['compare']}")
    if not out.tracking_uri.startswith("http"):
        print(f"            (the report on the grid's run: {link['report']})")
    return 0 if not out.failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
