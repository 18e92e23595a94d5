"""`proex report` and `proex recommend`: the grid system's subcommands (wired into proex.cli).

    proex report grids/table2.yaml                        # tables, p-values, figures; logged on the parent run
    proex report grids/smoke.yaml --tracking-uri http://127.0.0.1:5000 --out reports/smoke --no-log
    proex report runs/ --out reports/mine                 # the same files for a folder of `proex train` outputs
    proex recommend --run 3f2c...e1 --users 0 1 2 --k 10  # top-10 lists from a run's best checkpoint
    proex recommend --checkpoint runs/x/checkpoint.pt --users-file users.txt --out recs.csv

These need the `infra` extra (MLflow) only for --run and report; a local checkpoint needs nothing more.
"""
from __future__ import annotations

import json
import sys
import tempfile
import dataclasses
from pathlib import Path


def register(sub) -> None:
    """Add the `report` and `recommend` subparsers to proex.cli's subparsers object."""
    r = sub.add_parser("report", help="tables, paired t-tests and figures: of a grid (from its MLflow runs) or of "
                       "a folder of `proex train` outputs")
    r.add_argument("grid", help="the grid YAML file the runs came from, or a folder of `proex train --out` folders")
    r.add_argument("--reference", default="base", help="folder reports: the plug-in the others are compared with")
    r.add_argument("--tracking-uri", default=None, help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)")
    r.add_argument("--out", default=None, help="output folder (default mlruns/reports/<grid name>; for a folder of "
                   "runs <folder>/report)")
    r.add_argument("--no-log", action="store_true", help="do not log the report on the grid's parent run")
    r.add_argument("--test", choices=("ttest", "wilcoxon"), default=None,
                   help="paired test over matched seeds (default: the grid's report.test, else ttest)")
    c = sub.add_parser("recommend", help="top-K lists for users from a trained model")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="MLflow run id of a finished cell (its checkpoint artifact is used)")
    src.add_argument("--checkpoint", help="a checkpoint.pt written by `proex train` or a grid")
    who = c.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", nargs="+", type=int, help="dense user indices")
    who.add_argument("--users-file", help="a file with one dense user index per line")
    c.add_argument("--k", type=int, default=20, help="list length (default 20)")
    from .cli_dataset import add_dataset_args

    add_dataset_args(c, default="the dataset the model was trained on")
    c.add_argument("--profiles", default=None, help="profile bank (default: the one the model was trained with)")
    c.add_argument("--device", default="cpu")
    c.add_argument("--tracking-uri", default=None, help="MLflow URI for --run")
    c.add_argument("--out", default=None, help="write .csv or .json instead of printing")


def run(args) -> int | None:
    """Handle `report` / `recommend`; None for any other command (proex.cli handles those)."""
    if args.cmd == "report":
        return _report(args)
    if args.cmd == "recommend":
        return _recommend(args)
    return None


def _report(args) -> int:
    if Path(args.grid).is_dir():  # ad-hoc `proex train` outputs: no MLflow
        from .report_runs import report_folder

        files = report_folder(args.grid, args.out, args.reference)
        print(json.dumps({"runs": args.grid, "files": files}, indent=2))
        return 0
    from .grid import load_grid
    from .infra.publishing import publish_report
    from .infra.tracker import Tracker, local_root

    grid = load_grid(args.grid)
    if args.test:
        grid = dataclasses.replace(grid, report=dataclasses.replace(grid.report, test=args.test))
    tracker = Tracker(args.tracking_uri, f"proex-{grid.name}")
    out = args.out or str((local_root(tracker.uri) or Path("mlruns").resolve()) / "reports" / grid.name)
    files = publish_report(grid, tracker, out, log=not args.no_log)
    print(json.dumps({"grid": grid.name, "tracking_uri": tracker.uri, "files": files}, indent=2))
    return 0


def _recommend(args) -> int:
    from .cli_dataset import dataset_spec
    from .recommend import recommend

    users = args.users
    if users is None:
        with open(args.users_file) as f:
            users = [int(line) for line in f if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint
        if args.run:
            from .infra.tracker import Tracker

            tracker = Tracker(args.tracking_uri, experiment=None)
            path = tracker.download(args.run, "checkpoint/checkpoint.pt", tmp)
        table = recommend(path, users, args.k, dataset_spec(args, default=None), args.device, args.profiles)
    if args.out:
        if args.out.endswith(".json"):
            table.to_json(args.out, orient="records", indent=1)
        else:
            table.to_csv(args.out, index=False)
        print(json.dumps({"out": args.out, "users": len(users), "rows": len(table)}))
    else:
        table.to_csv(sys.stdout, index=False, float_format="%.5f")
    return 0
