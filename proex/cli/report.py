"""`proex report`: tables, paired tests and figures of a grid, read from its MLflow runs and logged on its parent
run, or of a folder of `proex train` outputs (no MLflow).

    proex report grids/table2.yaml                        # tables, p-values, figures; logged on the parent run
    proex report grids/smoke.yaml --tracking-uri http://127.0.0.1:5000 --out reports/smoke --no-log
    proex report runs/ --out reports/mine                 # the same files for a folder of `proex train` outputs
    proex report grids/tune_smoke.yaml                    # a study file: each study's report (history,
                                                          # importances, ...), logged on its study run

A grid's report needs the `infra` extra (MLflow); a folder's needs nothing more. Besides the files, the JSON it
prints lists every comparison on one line: Improv.%, its 95% interval, the raw and Holm-adjusted p and, when the
arms trained under different protocols or tunings, the note ("protocol differs: patience 5 (base) vs 20 (proex)").
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


def register(sub) -> None:
    r = sub.add_parser(
        "report",
        help="tables, paired t-tests and figures: of a grid (from its MLflow runs) or of "
        "a folder of `proex train` outputs",
    )
    r.add_argument("grid", help="the grid YAML file the runs came from, or a folder of `proex train --out` folders")
    r.add_argument("--reference", default="base", help="folder reports: the plug-in the others are compared with")
    r.add_argument(
        "--tracking-uri", default=None, help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)"
    )
    r.add_argument(
        "--out",
        default=None,
        help="output folder (default mlruns/reports/<grid name>; for a folder of runs <folder>/report)",
    )
    r.add_argument("--no-log", action="store_true", help="do not log the report on the grid's parent run")
    r.add_argument(
        "--storage",
        default=None,
        help="a study file's Optuna storage (default: its study.storage, else "
        "sqlite beside the MLflow store, as ray_jobs/tune.py uses)",
    )
    r.add_argument(
        "--test",
        choices=("ttest", "wilcoxon"),
        default=None,
        help="paired test over matched seeds (default: the grid's report.test, else ttest; folders: ttest)",
    )


def run(args) -> int:
    if Path(args.grid).is_dir():  # ad-hoc `proex train` outputs: no MLflow
        from ..report_runs import report_folder

        files = report_folder(args.grid, args.out, args.reference, args.test)
        print(json.dumps({"runs": args.grid, "files": files, "comparisons": _lines(files)}, indent=2))
        return 0
    from ..grid import load_grid
    from ..infra.publishing import publish_report
    from ..infra.tracker import Tracker, local_root

    grid = load_grid(args.grid)
    if grid.study is not None:  # a study file: its trials are studies' runs, not grid cells
        from ..infra.studies import report_studies

        out = report_studies(grid, args.tracking_uri, args.storage, args.out, log_files=not args.no_log)
        print(json.dumps(out, indent=2))
        return 0
    if args.test:
        grid = dataclasses.replace(grid, report=dataclasses.replace(grid.report, test=args.test))
    tracker = Tracker(args.tracking_uri, f"proex-{grid.name}")
    out = args.out or str((local_root(tracker.uri) or Path("mlruns").resolve()) / "reports" / grid.name)
    files = publish_report(grid, tracker, out, log=not args.no_log)
    print(
        json.dumps(
            {"grid": grid.name, "tracking_uri": tracker.uri, "files": files, "comparisons": _lines(files)}, indent=2
        )
    )
    return 0


def _lines(files: dict) -> list[str]:
    """The report's comparisons, one line each (Improv.%, 95% interval, raw and Holm p, protocol/tuning notes)."""
    import pandas as pd

    from ..report import comparison_lines

    comparison = pd.read_csv(files["comparison.csv"], dtype={c: str for c in ("variant", "note", "protocol", "tuning")})
    return comparison_lines(comparison.fillna({c: "" for c in ("variant", "note", "protocol", "tuning")}))
