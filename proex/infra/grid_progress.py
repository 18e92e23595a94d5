"""A running grid's progress: one console line per cell event with the grid's totals (finished / running /
failed / pending, elapsed, ETA), and the same counts on the grid's parent MLflow run (metrics `grid_finished`
... at step = cells ended, written at most once per `min_interval_s` and once at the end).

The ETA is the mean wall time of the cells trained in this session times the cells left, divided by the
trials seen running at once; before the first trained cell ends it is unknown.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ray import tune

from .tracker import Tracker, canonical


def _hms(s: float) -> str:
    return f"{int(s // 3600)}:{int(s % 3600 // 60):02d}:{int(s % 60):02d}"


class GridProgress(tune.Callback):
    """Tune callback: the totals and one line per finished, retried or failed cell (Tune's tables are off)."""

    def __init__(
        self,
        n_cells: int,
        finished_before: int,
        name_of: Callable[[dict], str],
        tracker: Tracker | None = None,
        parent_run_id: str = "",
        min_interval_s: float = 10.0,
    ):
        self.n, self.name_of = n_cells, name_of
        self.finished, self.failed, self.running = finished_before, 0, set()
        self.trained_s: list[float] = []  # wall seconds of the cells trained (not skipped) in this session
        self.peak = 1  # most trials seen running at once
        self.t0 = time.time()
        self.tracker, self.parent, self.min_interval_s, self.written = tracker, parent_run_id, min_interval_s, 0.0

    def __getstate__(self) -> dict:
        """Tune pickles its callbacks into the experiment's tuner.pkl: without the MLflow client."""
        return {**self.__dict__, "tracker": None}

    @property
    def pending(self) -> int:
        return max(self.n - self.finished - self.failed - len(self.running), 0)

    def counts(self) -> dict[str, int]:
        return {"finished": self.finished, "running": len(self.running), "failed": self.failed, "pending": self.pending}

    def eta_s(self) -> float | None:
        if not self.trained_s:
            return None
        return sum(self.trained_s) / len(self.trained_s) * (self.pending + len(self.running)) / self.peak

    def totals(self) -> str:
        c, eta = self.counts(), self.eta_s()
        return (
            f"{c['finished']}/{self.n} finished, {c['running']} running, {c['failed']} failed, "
            f"{c['pending']} pending | {_hms(time.time() - self.t0)} elapsed, ETA "
            + (_hms(eta) if eta is not None else "unknown")
        )

    def write(self, force: bool = False) -> None:
        """The counts on the parent run, at most once per min_interval_s unless forced."""
        if self.tracker is None or (not force and time.time() - self.written < self.min_interval_s):
            return
        self.written = time.time()
        eta = self.eta_s()
        metrics = {f"grid_{k}": v for k, v in self.counts().items()}
        metrics["grid_elapsed_s"] = time.time() - self.t0
        if eta is not None:
            metrics["grid_eta_s"] = eta
        try:
            self.tracker.log_metrics(self.parent, metrics, step=self.finished + self.failed)
        except Exception as exc:  # a tracking-server hiccup must not stop the grid; the next write catches up
            print(f"(progress not written to MLflow: {type(exc).__name__}: {str(exc)[:200]})", flush=True)

    def _line(self, trial, what: str) -> None:
        print(f"[{self.totals()}] {self.name_of(trial.config['cell'])} {what}", flush=True)
        self.write()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.running.add(trial.trial_id)
        self.peak = max(self.peak, len(self.running))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        r = trial.last_result or {}
        if r.get("skipped"):
            # counted in finished_before unless the store changed since the driver read it
            state = "already finished"
        else:
            self.finished += 1
            self.trained_s.append(r.get("time_total_s", 0.0))
            state = f"done in {r.get('time_total_s', 0):.0f} s"
        metrics = "  ".join(f"{canonical(k[5:])} {v:.4f}" for k, v in r.items() if k.startswith("test_"))
        dip = f"\n    WARNING: {r['first_dip']}" if r.get("first_dip") else ""
        self._line(trial, f"{state}: {metrics}{dip}")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._line(trial, f"failed, retrying (error: {trial.error_file or 'see the Tune folder'})")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        self.failed += 1
        self._line(trial, f"FAILED after its retries (error: {trial.error_file or 'see the Tune folder'})")

    def on_experiment_end(self, trials, **info) -> None:
        self.write(force=True)
