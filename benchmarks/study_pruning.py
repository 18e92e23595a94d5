"""What pruning buys a study: the same Optuna study (same space, budget and TPE seed) run without a pruner and
with the median pruner, as `ray_jobs/tune.py` runs it (trials as Ray tasks, SQLite storage, MLflow runs).

    nice -n 5 python benchmarks/study_pruning.py                      # 20 trials, LightGCN base, 12 epochs
    python benchmarks/study_pruning.py --trials 30 --epochs 30 --dataset synthetic:n_users=300,n_items=3000

Prints, per pruner: trials COMPLETE / PRUNED, training epochs spent (a pruned trial trained up to its last
validation), wall time, the best validation Recall@20 found, and the ratios of the pruned study to the
unpruned one. Results and the command are written up in docs/results/study_pruning.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

GRID = """
name: {name}
axes: {{model: [lightgcn], plugin: [base], dataset: ['{dataset}'], seed: [0]}}
fixed: {{train: {{epochs: {epochs}, eval_every: 3, patience: 100}}}}
resources: {{cpu: 1}}
study:
  n_trials: {trials}
  concurrency: {concurrency}
  sampler_seed: 0
  pruner: {pruner}
  space:
    train.lr: {{low: 1.0e-5, high: 1.0e-1, log: true}}
    model_config.reg_weight: {{low: 1.0e-6, high: 1.0e-2, log: true}}
    model_config.layers: {{type: int, low: 1, high: 3}}
"""


def epochs_spent(tracker, study) -> int:
    """Training epochs the study's trials ran: `epochs_run` of a finished trial, last validated epoch + 1 of a
    pruned one (it stopped right after that validation)."""
    from optuna.trial import TrialState

    total = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        run = tracker.find(kind="trial", key=f"{study.study_name}#{t.number}")[0]
        total += int(run.data.metrics["epochs_run"]) if t.state == TrialState.COMPLETE else t.last_step + 1
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="synthetic:n_users=600,n_items=9000,mean_interactions=100")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--pruner", default="{type: median, n_startup_trials: 4, n_warmup_steps: 3}")
    p.add_argument("--out", default=None, help="folder for the MLflow store and the study storage (default: temp)")
    args = p.parse_args()
    import optuna

    from proex.grid import load_grid
    from proex.infra import tune_grid
    from proex.infra.studies import run_studies
    from proex.infra.tracker import Tracker

    out = args.out or tempfile.mkdtemp(prefix="study_pruning_")
    os.makedirs(out, exist_ok=True)
    uri, storage = f"sqlite:///{out}/mlflow.db", f"sqlite:///{out}/optuna.db"
    tune_grid.connect("local", args.concurrency)
    rows = {}
    for label, pruner in (("none", "{type: none}"), ("pruned", args.pruner)):
        path = os.path.join(out, f"{label}.yaml")
        with open(path, "w") as f:
            f.write(
                textwrap.dedent(
                    GRID.format(
                        name=f"pruning_{label}",
                        dataset=args.dataset,
                        epochs=args.epochs,
                        trials=args.trials,
                        concurrency=args.concurrency,
                        pruner=pruner,
                    )
                )
            )
        t0 = time.perf_counter()
        (res,) = run_studies(load_grid(path), uri, storage)
        wall = time.perf_counter() - t0
        study = optuna.load_study(study_name=res["study"], storage=storage)
        rows[label] = {
            "pruner": pruner,
            "complete": res["complete"],
            "pruned": res["pruned"],
            "wall_s": wall,
            "epochs": epochs_spent(Tracker(uri, f"proex-pruning_{label}"), study),
            "best": res["best_value"],
            "params": res["best_params"],
        }
    print(
        f"\n{args.dataset}, LightGCN base, {args.trials} trials, {args.epochs} epochs max, concurrency "
        f"{args.concurrency}, TPE seed 0"
    )
    print(f"{'study':<8} {'complete':>8} {'pruned':>6} {'epochs':>6} {'wall s':>7} {'best val R@20':>13}  best params")
    for label, r in rows.items():
        print(
            f"{label:<8} {r['complete']:>8} {r['pruned']:>6} {r['epochs']:>6} {r['wall_s']:>7.1f} "
            f"{r['best']:>13.4f}  {r['params']}"
        )
    a, b = rows["pruned"], rows["none"]
    print(
        f"pruned / none: epochs {a['epochs'] / b['epochs']:.2f}, wall {a['wall_s'] / b['wall_s']:.2f}, "
        f"best value {a['best'] / b['best']:.3f}  (pruner {args.pruner})"
    )


if __name__ == "__main__":
    main()
