"""The trainer states earlier launches of a grid left in Tune's storage, found again by cell id.

Every launch of a grid runs its unfinished cells in a Tune experiment of its own (`tune_grid`). A cell that an
earlier launch left unfinished (its driver killed, its retries spent, a stop signal) resumes from the newest state
that launch saved: Tune keeps a trial's last reported checkpoint at `<storage>/<experiment>/cell-<id>/checkpoint_<n>/`
(`train_state.pt` inside), and a cell id is a hash of the cell's resolved configuration, so any state saved under it
is a state of this very cell, whichever launch, slice or grid file wrote it.

Why not `Tuner.restore`: a driver killed between Tune's periodic snapshots of its experiment leaves a snapshot that
names a checkpoint Tune has since replaced (`num_to_keep=1`), or a torn state file; the restored trial then fails
on every retry ("Could not recover from checkpoint as it does not exist on storage anymore"). Listing what is on
storage has no such window.

A state counts only if it was written after the cell's unfinished MLflow run started: a run deleted in the UI to
recompute its cell leaves the old run's final state behind, and the new run must not resume from it.
"""

from __future__ import annotations

import os
import re

import pyarrow.fs as pafs
from ray import tune

STATE_FILE = "train_state.pt"
_STATE_PATH = re.compile(r"(^|/)cell-(?P<cell>[0-9a-f]+)/checkpoint_(?P<n>\d+)/" + re.escape(STATE_FILE) + "$")


def _filesystem(storage: str) -> tuple[pafs.FileSystem, str]:
    """Tune's storage as a pyarrow filesystem and the path in it (a local folder, or s3://, gs://, ...)."""
    return pafs.FileSystem.from_uri(storage if "://" in storage else os.path.abspath(storage))


def newest_states(storage: str, since_ms: dict[str, int]) -> dict[str, tune.Checkpoint]:
    """{cell id: the Tune checkpoint holding its newest trainer state} for the cells in `since_ms` ({cell id: the
    start of its unfinished MLflow run, in ms}) that have a state on `storage` written at or after that start."""
    if not since_ms:
        return {}
    fs, root = _filesystem(storage)
    listing = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    best: dict[str, tuple[float, int, str]] = {}
    for info in listing:
        match = _STATE_PATH.search(info.path)
        if not match or match["cell"] not in since_ms or info.mtime is None:
            continue
        written_ms = info.mtime.timestamp() * 1000
        if written_ms < since_ms[match["cell"]]:
            continue
        key = (written_ms, int(match["n"]), os.path.dirname(info.path))
        if match["cell"] not in best or key > best[match["cell"]]:
            best[match["cell"]] = key
    return {cell: tune.Checkpoint(path, filesystem=fs) for cell, (_, _, path) in best.items()}
