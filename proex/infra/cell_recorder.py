"""`CellRecorder`: writes one cell's training into its MLflow run (the layout in `tracker`): the validation
curve as it runs, then the final metrics, the best checkpoint (`proex.checkpoint`) and its config as artifacts,
the served model (`served_model`: an MLflow Model in the UI's Models tab), and the tag done=1 that marks the
cell finished.
"""

from __future__ import annotations

import json
import os

from ..experiment import CellResult
from .served_model import log_served_model
from .tracker import Tracker


class CellRecorder:
    """Logs one cell's training into its run: each validation as step metrics (steps already logged are
    skipped, so a trial resumed from an older checkpoint adds no duplicate points), then the final metrics,
    the best checkpoint and its config."""

    def __init__(self, tracker: Tracker, run_id: str, select: str = "recall@20"):
        self.tracker, self.run_id = tracker, run_id
        self.last = tracker.last_step(run_id, f"val_{select}")

    def validation(self, epoch: int, metrics: dict, losses: dict, start_epoch: int = 0) -> None:
        """start_epoch: where the fit that produced this validation started (logged as `fit_start_epoch`), so a
        run's history shows each retry resuming from its saved state rather than training again from 0."""
        if epoch <= self.last:
            return
        self.tracker.log_metrics(
            self.run_id,
            {
                **{f"val_{k}": v for k, v in metrics.items()},
                **{f"loss_{k}": v for k, v in losses.items()},
                "fit_start_epoch": start_epoch,
            },
            step=epoch,
        )
        self.last = epoch

    def final(self, cell_id: str, result: CellResult, system, inter, workdir: str) -> None:
        from .. import checkpoint

        os.makedirs(workdir, exist_ok=True)
        ckpt = os.path.join(workdir, "checkpoint.pt")
        checkpoint.save(
            ckpt,
            system,
            result.config,
            inter,
            {"val": result.val, "test": result.test, "best_epoch": result.best_epoch},
            profile_bank=result.profile_bank,
            config_hash=result.config_hash,
        )
        meta = {
            "cell_id": cell_id,
            "config_hash": result.config_hash,
            "dataset_name": result.dataset_name,
            "profile_bank": result.profile_bank,
            "config": result.config,
        }
        paths = {"config.json": meta, "result.json": result.to_dict(), "config_sources.json": result.config_sources}
        for name, body in paths.items():
            with open(os.path.join(workdir, name), "w") as f:
                json.dump(body, f, indent=1, default=str)
        self.tracker.log_files(self.run_id, [ckpt, os.path.join(workdir, "config.json")], "checkpoint")
        self.tracker.log_files(self.run_id, [os.path.join(workdir, n) for n in ("result.json", "config_sources.json")])
        self.tracker.log_params(self.run_id, result.config)  # the widths derived once the bank was loaded
        final = {
            **{f"test_{k}": v for k, v in result.test.items()},
            **{f"best_val_{k}": v for k, v in result.val.items()},
            **{
                k: getattr(result, k)
                for k in ("best_epoch", "epochs_run", "train_seconds", "eval_seconds", "wall_seconds")
            },
        }
        self.tracker.log_metrics(self.run_id, final, step=max(result.best_epoch, 0))
        dip = result.first_dip_warning
        self.tracker.set_tags(
            self.run_id,
            {
                "profile_bank": result.profile_bank or "none",
                "dataset_name": result.dataset_name,
                "first_dip": "yes" if result.first_dip else "no",
                **({"mlflow.note.content": f"**Stopped in its first dip**: {dip}"} if dip else {}),
            },
        )
        log_served_model(self.tracker, self.run_id, system, inter, step=max(result.best_epoch, 0))
        self.tracker.finish(self.run_id)
