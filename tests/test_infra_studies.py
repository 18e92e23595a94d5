"""Optuna study bookkeeping without Ray: stale RUNNING trials of a dead driver are failed and re-queued (RDB
and journal storages), study names follow the space, and winners merge into the hyperparameter file."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402

from proex.grid import load_grid  # noqa: E402
from proex.infra.studies import open_storage, reap_stale, study_name, suggest, write_hparams  # noqa: E402
from proex.study_spec import ParamSpec  # noqa: E402

GRIDS = os.path.join(os.path.dirname(__file__), "..", "grids")


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_stale_trials_are_failed_and_their_params_requeued(tmp_path, kind):
    url = f"sqlite:///{tmp_path}/o.db" if kind == "sqlite" else f"journal:{tmp_path}/o.log"
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    done = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(done, 0.5)
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    dead.set_user_attr("heartbeat", time.time() - 100)  # its driver died 100 s ago
    alive = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    alive.set_user_attr("heartbeat", time.time())  # another driver, still beating
    assert reap_stale(study, grace_s=30) == [dead.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == TrialState.FAIL and states[alive.number] == TrialState.RUNNING
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs["retry_of"] == dead.number
    retry = study.ask()  # the next ask serves the re-queued parameters
    assert retry.suggest_float("x", 0, 1) == dead.params["x"]
    reopened = optuna.load_study(study_name="s", storage=open_storage(url))  # a new driver sees the same state
    assert sum(t.state == TrialState.COMPLETE for t in reopened.get_trials()) == 1
    assert reap_stale(reopened, grace_s=30) == []


def test_study_name_changes_with_the_space_and_suggest_types():
    grid = load_grid(os.path.join(GRIDS, "tune_smoke.yaml"))
    gc = grid.expand()[0]
    name = study_name(grid, gc)
    assert name.startswith("tune_smoke/lightgcn-base-synthetic-") and study_name(grid, gc) == name
    other = dataclasses.replace(
        grid,
        study=dataclasses.replace(grid.study, space={**grid.study.space, "train.lr": ParamSpec(low=0.1, high=0.2)}),
    )
    assert study_name(other, gc) != name
    study = optuna.create_study()
    params = suggest(study.ask(), grid.study.space)
    assert isinstance(params["model_config.layers"], int) and 1e-4 <= params["train.lr"] <= 1e-2


def test_winner_is_merged_into_the_hparams_file_the_grids_read(tmp_path):
    shutil.copy(os.path.join(GRIDS, "tune_smoke.yaml"), tmp_path / "tune.yaml")
    (tmp_path / "hparams").mkdir()
    (tmp_path / "hparams" / "lightgcn-base-synthetic.yaml").write_text(yaml.safe_dump({"train": {"batch_size": 512}}))
    grid = load_grid(str(tmp_path / "tune.yaml"))
    gc = grid.expand()[0]
    path = write_hparams(grid, gc, {"train.lr": 0.003, "model_config.layers": 2}, {"study": "s", "value": 0.3})
    body = yaml.safe_load(path.read_text())
    assert body == {
        "model_config": {"layers": 2},
        "train": {"batch_size": 512, "lr": 0.003},
        "source": {"study": "s", "value": 0.3},
    }
    tuned = load_grid(str(tmp_path / "tune.yaml")).expand()[0]  # the grid now runs the winner
    assert tuned.config.train["lr"] == 0.003 and tuned.config.model_config == {"layers": 2}
    assert tuned.cell_id != gc.cell_id


def test_the_winner_written_back_keeps_the_study_name(tmp_path):
    """Rerunning a finished study must find it finished: the winner it writes into the cell's hparams file
    changes the cell (and its id), but not the study's name. Anything else the file sets still renames it."""
    shutil.copy(os.path.join(GRIDS, "tune_smoke.yaml"), tmp_path / "tune_smoke.yaml")
    grid = load_grid(str(tmp_path / "tune_smoke.yaml"))
    gc = grid.expand()[0]
    name = study_name(grid, gc)
    write_hparams(grid, gc, {"train.lr": 0.003, "model_config.layers": 2}, {"study": name})
    tuned = load_grid(str(tmp_path / "tune_smoke.yaml")).expand()[0]
    assert tuned.cell_id != gc.cell_id and tuned.resolved.train_cfg.lr == 0.003
    assert study_name(grid, tuned) == name
    write_hparams(grid, gc, {"train.batch_size": 512}, {"study": name})  # not searched: another study
    assert study_name(grid, load_grid(str(tmp_path / "tune_smoke.yaml")).expand()[0]) != name
