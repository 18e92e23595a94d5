"""`proex models register`: a grid's best cells (on validation) as MLflow Model Registry versions, alias `champion`.

    proex models register --grid grids/smoke.yaml                      # what a finished grid does itself
    proex models register --grid grids/smoke.yaml --promote <run id>   # make that cell the champion

Registering twice adds nothing (a version is found by its source run). Needs the `infra` extra (MLflow).
Serve a champion:  mlflow models serve -m models:/proex-smoke-lightgcn-proex-synthetic@champion --env-manager local
"""

from __future__ import annotations

import json


def register(sub) -> None:
    c = sub.add_parser("models", help="register a grid's best cells in the MLflow Model Registry")
    what = c.add_subparsers(dest="models_cmd", required=True)
    r = what.add_parser("register", help="register (or --promote) a grid's best cells on validation")
    r.add_argument("--grid", required=True, help="the grid YAML file the cells ran from")
    r.add_argument("--promote", default=None, metavar="RUN_ID", help="make this finished cell its model's champion")
    r.add_argument(
        "--tracking-uri", default=None, help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)"
    )


def run(args) -> int:
    from ..grid import load_grid
    from ..infra import model_registry
    from ..infra.tracker import Tracker
    from ..infra.tune_grid import experiment_name

    grid = load_grid(args.grid)
    tracker = Tracker(args.tracking_uri, experiment_name(grid))
    if args.promote:
        regs = [model_registry.promote(grid, tracker, args.promote)]
    else:
        regs = model_registry.register_best(grid, tracker)
        if not regs:
            raise ValueError(
                f"grid {grid.name!r} has no finished cell in {tracker.uri}; run it first "
                f"(python ray_jobs/grid.py {args.grid})"
            )
    for reg in regs:
        print(
            json.dumps(
                {
                    "model_uri": f"models:/{reg.name}@{model_registry.ALIAS}"
                    if reg.champion
                    else f"models:/{reg.name}/{reg.version}",
                    "version": reg.version,
                    "run_id": reg.run_id,
                    "new_version": reg.created,
                    "champion": reg.champion,
                }
            )
        )
    return 0
