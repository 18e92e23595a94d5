"""`proex report <folder>`: the grid report (tables, paired t-tests, figures) for ad-hoc `proex train` outputs.

`proex train` writes `<out>/metrics.json` (the resolved config, best epoch, validation and test metrics and
the validation history). `train_outputs_frame` reads every `metrics.json` under a folder into the same frame
that `proex.infra.run_frames.runs_frame` builds from MLflow (one row per run: model, plugin, dataset, seed,
variant, profiles, test metrics as 'recall@20', 'val_recall@20', the run's training protocol and the source of
each of its values: `proex.report_provenance`), so `proex.report.write_report` gives the
same files as for a grid. No MLflow, no Ray.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .config import ConfigError
from .experiment import dataset_key
from .protocol import protocol_of


def train_outputs_frame(root: str | Path, metric: str = "recall@20") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, curves) of the `proex train` outputs under `root` (any depth; `root` may be one run's folder).

    curves: model, plugin, dataset, seed, variant, epoch, value (the validation `metric` per evaluated epoch).
    ConfigError when there is no run, or two runs share model, plugin, dataset and seed (the paired tests
    match runs on the seed, so each arm needs one run per seed)."""
    root = Path(root)
    paths = sorted(root.rglob("metrics.json"))
    if not paths:
        raise ConfigError(
            f"{root}: no metrics.json below it; point `proex report` at the folder holding the "
            "`proex train --out` folders (default runs/), or at a grid .yaml file"
        )
    rows, curves, seen = [], [], {}
    for path in paths:
        try:
            result = json.loads(path.read_text())
            cfg = result["config"]
            labels = {
                "model": cfg["model"],
                "plugin": cfg["plugin"],
                "dataset": dataset_key(cfg["dataset"]),
                "seed": int(cfg["train"]["seed"]),
                "variant": "",
                "profiles": cfg.get("profiles") or "",
            }
            test, val = result["test"], result["val"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path}: not a `proex train` metrics.json ({type(exc).__name__}: {exc}); "
                "move it out of the folder or rerun that training"
            ) from None
        key = tuple(labels[k] for k in ("dataset", "model", "plugin", "seed"))
        if key in seen:
            raise ConfigError(
                f"{seen[key]} and {path.parent} are both {key[1]} + {key[2]} on {key[0]}, seed "
                f"{key[3]}; a report pairs one run per seed and arm. Move one of them to another "
                "folder (e.g. one folder per setting) and report each folder."
            )
        seen[key] = path.parent
        rows.append(
            {
                **labels,
                "run": str(path.parent),
                "best_epoch": result.get("best_epoch"),
                "config_hash": result.get("config_hash"),
                "protocol": protocol_of(cfg["train"]),
                "sources": result.get("config_sources") or {},
                **test,
                **{f"val_{k}": v for k, v in val.items()},
            }
        )
        for h in result.get("history", []):
            if f"val_{metric}" in h:
                curves.append(
                    {
                        **{k: labels[k] for k in ("model", "plugin", "dataset", "seed", "variant")},
                        "epoch": h["epoch"],
                        "value": h[f"val_{metric}"],
                    }
                )
    return pd.DataFrame(rows), pd.DataFrame(
        curves, columns=["model", "plugin", "dataset", "seed", "variant", "epoch", "value"]
    )


def report_folder(
    root: str | Path, out_dir: str | Path | None = None, reference: str = "base", test: str | None = None
) -> dict[str, str]:
    """Write report.md, summary.csv, comparison.csv, table.tex and curves.png for the runs under `root` to
    `out_dir` (default `<root>/report`); `test`: the paired test ("ttest", the default, or "wilcoxon").
    Returns {file name: path}."""
    from .grid import ReportSpec
    from .report import write_report

    runs, curves = train_outputs_frame(root)
    if reference not in set(runs["plugin"]):
        raise ConfigError(
            f"{root}: no run with plug-in {reference!r} to compare with (plug-ins found: "
            f"{sorted(set(runs['plugin']))}); train it, or pass --reference <plug-in>"
        )
    spec = ReportSpec(
        reference=reference, figures=("curves",) if not curves.empty else (), test=test or ReportSpec.test
    )
    files, _ = write_report(runs, str(out_dir or Path(root) / "report"), spec, curves, title=Path(root).resolve().name)
    return files
