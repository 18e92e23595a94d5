"""Cells of one dataset that start together each log it as their run's dataset input, against a real MLflow
server (sqlite backend, as `ray_jobs/grid.py` starts one): none of them fails.

MLflow's SQL store checks for the dataset and inserts it without a lock, so two cells logging the same new
dataset at the same moment race; the loser's insert violates the table's unique constraint. A grid's first two
cells on a dataset can do this, and a 360-cell benchmark lost its first cell to it.
"""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("mlflow")

from infra_services import free_ports  # noqa: E402

from proex.data.registry import load_dataset  # noqa: E402
from proex.infra.mlflow_server import start_server, stop_server  # noqa: E402
from proex.infra.tracker import Tracker  # noqa: E402
from proex.infra.ui import _lost_insert_race, log_dataset  # noqa: E402

THREADS, ROUNDS = 6, 8


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, uri = start_server(str(tmp_path_factory.mktemp("mlflow")), "127.0.0.1", free_ports(1)[0])
    yield uri
    stop_server(proc)


def test_cells_logging_one_new_dataset_at_once_all_get_it(server):
    tracker = Tracker(server, "dataset-race")
    inter = load_dataset("synthetic:n_users=30,n_items=40,seed=0")
    new_run = lambda: tracker.client.create_run(tracker.experiment_id).info.run_id  # noqa: E731
    runs = [[new_run() for _ in range(THREADS)] for _ in range(ROUNDS)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def cell(i: int) -> None:
        for r in range(ROUNDS):  # a new dataset name each round: every round starts with the row absent
            barrier.wait()
            try:
                log_dataset(tracker, runs[r][i], inter, f"syn-round{r}")
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=cell, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"{len(errors)} of {THREADS * ROUNDS} dataset logs failed: {errors[0]}"
    for r in range(ROUNDS):
        for run_id in runs[r]:
            inputs = tracker.client.get_run(run_id).inputs.dataset_inputs
            assert [d.dataset.name for d in inputs] == [f"syn-round{r}"]


def test_only_a_lost_insert_race_is_retried():
    assert _lost_insert_race(Exception("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.name"))
    assert _lost_insert_race(Exception('duplicate key value violates unique constraint "dataset_pk"'))
    assert not _lost_insert_race(Exception("RESOURCE_DOES_NOT_EXIST: run 123 not found"))
