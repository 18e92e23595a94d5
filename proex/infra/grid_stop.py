"""A clean stop of a running grid: the first SIGINT (Ctrl-C) or SIGTERM asks Ray Tune to end its loop (Tune's own
graceful stop, which saves its experiment state and stops the trials), the second one forces (KeyboardInterrupt
at once). Afterwards `mark_interrupted` gives the cells' unfinished runs status KILLED and the tag
interrupted=true (not FAILED with a traceback), so `grid_plan` lists them as interrupted and the rerun of the
same command resumes them from their last validation (Tune's checkpoint holds the trainer state).

Tune's graceful stop is its SIGUSR1 handler (ray/tune/tune.py `_setup_signal_catching`, installed while `fit`
runs); its own SIGINT handler is switched off (TUNE_DISABLE_SIGINT_HANDLER) so that SIGINT and SIGTERM behave
the same and a signal outside `fit` is remembered rather than lost.
"""

from __future__ import annotations

import os
import signal
import time

from .tracker import Tracker, is_finished

SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_ERRORS = ("SystemExit", "KeyboardInterrupt")  # what a trial's worker records when the stop ends it


class StopSignals:
    """Context manager for the driver's main thread: `signum` is the first stop signal received, else None."""

    def __init__(self):
        self.signum: int | None = None
        self.at_ms = 0
        self._old: dict = {}
        self._env = None

    def __enter__(self) -> StopSignals:
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for sig in SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if self._env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env

    @property
    def stopped(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            print(f"\n{signal.Signals(signum).name} again: stopping now, without saving the trials' state", flush=True)
            raise KeyboardInterrupt
        self.signum, self.at_ms = signum, int(time.time() * 1000)
        print(
            f"\n{signal.Signals(signum).name}: stopping the grid after saving its state (the cells' runs are "
            "marked interrupted); press Ctrl-C again to force",
            flush=True,
        )
        tune_handler = signal.getsignal(signal.SIGUSR1)
        if callable(tune_handler):  # inside Tuner.fit: Tune's graceful stop
            tune_handler(signal.SIGUSR1, frame)


def mark_interrupted(tracker: Tracker, cell_ids: list[str], since_ms: int) -> list[str]:
    """Mark the unfinished runs of `cell_ids` interrupted (status KILLED, tag interrupted=true, the time as
    `interrupted_at_ms`): those still RUNNING (a worker killed outright) and those a stopped worker marked FAILED
    after `since_ms`, which lose that error tag (the stop caused it). Runs the trial body already marked
    interrupted are counted too. Returns the cell ids marked."""
    wanted, marked = set(cell_ids), []
    for run in tracker.find(kind="cell"):
        key, tags = run.data.tags.get("key"), run.data.tags
        if key not in wanted or is_finished(run):
            continue
        failed_by_stop = run.info.status == "FAILED" and (run.info.end_time or 0) >= since_ms
        if tags.get("interrupted") == "true" and run.info.status == "KILLED":
            marked.append(key)
            continue
        if run.info.status != "RUNNING" and not failed_by_stop:
            continue
        if "error" in tags and (failed_by_stop or tags["error"].startswith(STOP_ERRORS)):
            tracker.client.delete_tag(run.info.run_id, "error")
        tracker.set_tags(run.info.run_id, {"interrupted": "true", "interrupted_at_ms": since_ms})
        tracker.client.set_terminated(run.info.run_id, "KILLED")
        marked.append(key)
    return marked
