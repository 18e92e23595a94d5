"""A rerun of a grid resumes each unfinished cell from the newest trainer state an earlier launch left on Tune's
storage (`proex.infra.saved_states`), and never from a state older than the cell's current MLflow run."""

from __future__ import annotations

import os
import time

import pytest

pytest.importorskip("ray")

from proex.infra.saved_states import newest_states  # noqa: E402


def _state(storage, launch: str, cell: str, n: int, written: float) -> str:
    folder = storage / launch / f"cell-{cell}" / f"checkpoint_{n:06d}"
    folder.mkdir(parents=True)
    path = folder / "train_state.pt"
    path.write_bytes(f"{launch}/{n}".encode())
    os.utime(path, (written, written))
    return str(folder)


def test_newest_state_across_launches_and_slices_is_resumed(tmp_path):
    now = time.time()
    _state(tmp_path, "g-aaa-20261206-1", "abc123", 4, now - 300)
    newest = _state(tmp_path, "g-aaa-20261206-2", "abc123", 2, now - 100)  # a later launch restarts Tune's count
    _state(tmp_path, "g-bbb-20261206-3", "abc123", 9, now - 200)  # a slice of the grid, in between
    other = _state(tmp_path, "g-aaa-20261206-2", "fff000", 7, now - 50)
    found = newest_states(str(tmp_path), {"abc123": int((now - 1000) * 1000), "fff000": 0})
    assert found["abc123"].path == newest and found["fff000"].path == other
    with found["abc123"].as_directory() as d:
        assert open(os.path.join(d, "train_state.pt"), "rb").read() == b"g-aaa-20261206-2/2"


def test_state_older_than_the_run_or_of_another_cell_is_not_resumed(tmp_path):
    now = time.time()
    _state(tmp_path, "g-aaa-1", "abc123", 30, now - 600)  # the final state of a run deleted to recompute the cell
    _state(tmp_path, "g-aaa-1", "def456", 3, now - 10)  # a cell that is finished (not asked for)
    assert newest_states(str(tmp_path), {"abc123": int((now - 60) * 1000)}) == {}
    assert newest_states(str(tmp_path / "missing"), {"abc123": 0}) == {}
    assert newest_states(str(tmp_path), {}) == {}
