"""Run (or continue) the Optuna study of every cell of a grid file with a `study` section.

    python ray_jobs/tune.py grids/tune_smoke.yaml                 # local Ray, studies in mlruns/optuna.db
    ray job submit --address http://HEAD:8265 --working-dir . -- python ray_jobs/tune.py grids/tune_lightgcn.yaml \
        --tracking-uri http://HEAD:5000 --storage postgresql://USER@DBHOST/optuna

Each study stops at its budget of finished (COMPLETE or PRUNED) trials; rerunning continues an interrupted study,
failing and re-queueing the trials a dead driver left RUNNING. The best parameters are written to the grid's hparams
folder (<model>-<plugin>-<dataset>.yaml), which the paper grids read. The logic is in proex.infra.studies.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

from _driver import load_grid_file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("grid", help="grid YAML file with a study section")
    p.add_argument(
        "--tracking-uri", default=None, help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)"
    )
    p.add_argument(
        "--storage",
        default=os.environ.get("PROEX_OPTUNA_STORAGE"),
        help="Optuna storage: sqlite:///..., postgresql://..., or journal:<file> (default: the grid's "
        "study.storage, else sqlite beside the MLflow store)",
    )
    p.add_argument("--address", default=None, help="Ray address; default $RAY_ADDRESS, else a new local Ray ('local')")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    grid = load_grid_file(args.grid, args.address, "tune")
    if grid is None:
        return 2
    from proex.infra import studies, tune_grid

    tune_grid.connect(args.address, args.num_cpus)
    for out in studies.run_studies(grid, args.tracking_uri, args.storage):
        print(json.dumps(out, default=str))
        print(
            f"study {out['study']}: report in {os.path.dirname(out['report']['report.md'])}; open it in the "
            f"dashboard (pip install -e '.[dashboard]'): {out['dashboard']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
