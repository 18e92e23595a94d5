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
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # we checkpoint often
    grid = load_grid_file(args.grid, args.address, "grid")
    if grid is None:
        return 2
    from proex.infra import tracking, tune_grid

    out = tune_grid.run_grid(grid, args.tracking_uri, args.storage, args.report_dir,
                             address=args.address, num_cpus=args.num_cpus)  # starts Ray only if a cell is left
    import ray

    ray.shutdown()  # flush the workers' log lines before the summary
    tracker = tracking.Tracker(out.tracking_uri, tune_grid.experiment_name(grid))
    cmd, url = tracking.ui_hint(tracker, out.parent_run_id)
    print(f"\ngrid {out.grid}: {out.finished}/{out.n_cells} cells finished"
          + (f", {len(out.failed)} failed: {', '.join(out.failed)}" if out.failed else ""))
    print(f"report:     {out.report_files.get('report.md')}")
    print(f"MLflow UI:  {cmd}")
    print(f"            then open {url}")
    return 0 if not out.failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
