"""A study's report: what a researcher looks at when a study ends, as files and on the study's MLflow run
(`publish_study_report`; `studies.report_studies` writes it again later, what `proex report <study file>` runs).

Figures are Optuna's own (`optuna.visualization.matplotlib`): the optimisation history, the parameter
importances (fANOVA, Optuna's default evaluator; it needs at least two COMPLETE trials whose parameters
differ, otherwise the report says so in one line), the parallel-coordinate and slice plots and the
intermediate values (the pruned trials' curves stop early). Then the best trial's parameters and its
validation curve, read back from its MLflow run. report.md holds the text; the files go under report/ on
the study run and report.md with its figures becomes the run's description (`publishing.describe_run`).
"""

from __future__ import annotations

import json
import logging
import os
import warnings

import optuna
import pandas as pd
from optuna.trial import TrialState

from ..report_figures import _pyplot
from ..report_format import to_markdown
from .publishing import describe_run
from .tracker import Tracker, metric_key, redact

log = logging.getLogger("proex.infra.study_report")

PLOTS = {  # file -> Optuna's matplotlib function
    "optimization_history.png": "plot_optimization_history",
    "param_importances.png": "plot_param_importances",
    "parallel_coordinate.png": "plot_parallel_coordinate",
    "slice.png": "plot_slice",
    "intermediate_values.png": "plot_intermediate_values",
}


def dashboard_command(storage: str, port: int = 8080) -> str:
    """The shell command that opens `storage` in optuna-dashboard (the `dashboard` install extra); a journal
    file is named with its storage class, a URL's password is left to the reader."""
    if storage.startswith("journal:"):
        path = os.path.abspath(os.path.expanduser(storage[len("journal:") :]))
        return f"optuna-dashboard {path} --storage-class JournalFileStorage --host 127.0.0.1 --port {port}"
    return f"optuna-dashboard {redact(storage)} --host 127.0.0.1 --port {port}"


def importance_problem(study: optuna.Study) -> str:
    """Why parameter importances cannot be computed for `study`, or "" when they can."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return f"parameter importances need at least 2 COMPLETE trials; this study has {len(complete)}"
    varying = [k for k in complete[0].params if len({json.dumps(t.params.get(k)) for t in complete}) > 1]
    if not varying:
        return "parameter importances need parameters that differ between COMPLETE trials; here none does"
    return ""


def write_plots(study: optuna.Study, out_dir: str) -> tuple[list[str], list[str]]:
    """Optuna's figures of `study` as PNG files in `out_dir`: (files written, lines on what was left out)."""
    from optuna.visualization import matplotlib as vis

    plt = _pyplot()
    files, notes = [], []
    for name, func in PLOTS.items():
        if func == "plot_param_importances":
            problem = importance_problem(study)
            if problem:
                notes.append(f"No parameter importances: {problem}.")
                continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning on every matplotlib plot
            if func == "plot_param_importances":
                ax = vis.plot_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
            else:
                ax = getattr(vis, func)(study)
        fig = ax.flat[0].figure if hasattr(ax, "flat") else ax.figure
        fig.set_size_inches(max(fig.get_size_inches()[0], 7), max(fig.get_size_inches()[1], 4.5))
        fig.savefig(os.path.join(out_dir, name), dpi=110, bbox_inches="tight")
        plt.close(fig)
        files.append(name)
    return files, notes


def best_curve(tracker: Tracker, study: optuna.Study, select: str) -> pd.DataFrame:
    """The best trial's validation curve (epoch, value) from its MLflow run (key '<study>#<number>')."""
    best = study.best_trial
    runs = tracker.find(kind="trial", key=f"{study.study_name}#{best.number}")
    if not runs:
        return pd.DataFrame(columns=["epoch", f"val_{select}"])
    hist = tracker.client.get_metric_history(runs[-1].info.run_id, metric_key(f"val_{select}"))
    rows = sorted({m.step: m.value for m in hist}.items())
    return pd.DataFrame(rows, columns=["epoch", f"val_{select}"])


def shown(value) -> str:
    """A parameter value as text: floats to 4 significant digits (1e-09, 0.003), others as they are."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value (the last intermediate one for a pruned trial), last epoch, params."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "value": t.value,
                "last_epoch": t.last_step,
                **{k: shown(v) for k, v in t.params.items()},
            }
        )
    return pd.DataFrame(rows)


def write_study_report(study: optuna.Study, tracker: Tracker, out_dir: str, select: str) -> dict[str, str]:
    """report.md, trials.csv, best_curve.csv and the figures of `study` in `out_dir`. Returns {file: path}."""
    os.makedirs(out_dir, exist_ok=True)
    plt = _pyplot()
    trials = trials_frame(study)
    trials.to_csv(os.path.join(out_dir, "trials.csv"), index=False)
    figures, notes = write_plots(study, out_dir)
    states = trials["state"].value_counts().to_dict() if not trials.empty else {}
    lines = [
        f"# Study {study.study_name}",
        "",
        f"Trials: {', '.join(f'{n} {s}' for s, n in sorted(states.items()))}; maximising val/{select}.",
        "",
    ]
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        lines += ["No COMPLETE trial yet: no best trial.", ""]
    else:
        best = study.best_trial
        curve = best_curve(tracker, study, select)
        curve.to_csv(os.path.join(out_dir, "best_curve.csv"), index=False)
        lines += [
            f"## Best trial: #{best.number}, val/{select} = {best.value:.4f}",
            "",
            to_markdown(
                pd.DataFrame({"parameter": list(best.params), "value": [shown(v) for v in best.params.values()]}),
                index=False,
            ),
            "",
        ]
        if not curve.empty:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.plot(curve["epoch"], curve[f"val_{select}"], marker="o")
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"val {select}")
            ax.set_title(f"best trial #{best.number}")
            fig.tight_layout()
            fig.savefig(os.path.join(out_dir, "best_curve.png"), dpi=110)
            plt.close(fig)
            figures.append("best_curve.png")
            lines += ["Its validation curve: best_curve.csv, best_curve.png.", ""]
    lines += [*notes, "", "## All trials", "", to_markdown(trials, index=False) if not trials.empty else "(none)", ""]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(lines))
    names = [
        "report.md",
        "trials.csv",
        *(["best_curve.csv"] if os.path.exists(os.path.join(out_dir, "best_curve.csv")) else []),
        *figures,
    ]
    return {n: os.path.join(out_dir, n) for n in names}


def publish_study_report(
    study: optuna.Study, tracker: Tracker, run_id: str, out_dir: str, select: str
) -> dict[str, str]:
    """Write the study's report to `out_dir`, log its files under report/ on the study run `run_id` and render
    report.md with its figures as the run's description. Returns {file: path}."""
    files = write_study_report(study, tracker, out_dir, select)
    tracker.log_files(run_id, files.values(), "report")
    with open(files["report.md"]) as f:
        describe_run(tracker, run_id, f.read(), [n for n in files if n.endswith(".png")])
    log.info("study %s: report in %s and on MLflow run %s", study.study_name, out_dir, run_id)
    return files
