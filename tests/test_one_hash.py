"""One hash of what ran: on every cell of a grid run through the real entry point (a local Ray, an SQLite
MLflow store), the cell id, the run's key and config_hash tags, config.json, result.json and the checkpoint
agree; `proex train` writes the same hash to metrics.json, its checkpoint and its folder name. The derived
profile-MLP width is in the logged config, and left out of the hash, so a cell's id does not wait on its bank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("ray")
pytest.importorskip("mlflow")

from infra_services import REPO  # noqa: E402

from proex import checkpoint  # noqa: E402
from proex.cli import main as proex_main  # noqa: E402
from proex.experiment import CellConfig, resolve, with_text_dim  # noqa: E402
from proex.grid import load_grid  # noqa: E402
from proex.infra.tracker import Tracker  # noqa: E402

GRID = """
name: onehash
axes: {model: [lightgcn, multvae], plugin: [base, proex], dataset: [synthetic], seed: [0]}
fixed: {profiles: synthetic-latent, train: {epochs: 2, eval_every: 1}}
select: val/recall@20
"""


@pytest.mark.slow
def test_every_cell_of_a_grid_has_one_hash_in_its_id_tags_config_json_and_checkpoint(tmp_path):
    grid_path = tmp_path / "onehash.yaml"
    grid_path.write_text(textwrap.dedent(GRID))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "ray_jobs", "grid.py"),
            str(grid_path),
            "--tracking-uri",
            uri,
            "--num-cpus",
            "2",
            "--report-dir",
            str(tmp_path / "report"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cells = load_grid(str(grid_path)).expand()
    tracker = Tracker(uri, "proex-onehash")
    finished = tracker.finished("cell")
    assert set(finished) == {c.cell_id for c in cells}
    for gc in cells:
        run = finished[gc.cell_id]
        where = str(tmp_path / gc.cell_id)
        config = json.load(open(tracker.download(run.info.run_id, "checkpoint/config.json", where)))
        result = json.load(open(tracker.download(run.info.run_id, "result.json", where)))
        payload = checkpoint.read(tracker.download(run.info.run_id, "checkpoint/checkpoint.pt", where))
        hashes = {
            "cell id": gc.cell_id,
            "key tag": run.data.tags["key"],
            "config_hash tag": run.data.tags["config_hash"],
            "config.json": config["config_hash"],
            "result.json": result["config_hash"],
            "checkpoint": payload["config_hash"],
        }
        assert len(set(hashes.values())) == 1, (gc.run_name(), hashes)
        assert config["config"] == json.loads(json.dumps(payload["config"])) == result["config"]
        if gc.config.plugin == "proex" and gc.config.model == "lightgcn":  # the width derived from the bank
            derived = with_text_dim(gc.resolved, 64).plugin_cfg.hidden_dim
            assert (
                gc.resolved.plugin_cfg.hidden_dim is None and config["config"]["plugin_config"]["hidden_dim"] == derived
            )


@pytest.mark.slow
def test_proex_train_writes_one_hash_to_metrics_json_its_checkpoint_and_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (
        proex_main(
            [
                "-q",
                "train",
                "--dataset",
                "synthetic",
                "--model",
                "lightgcn",
                "--plugin",
                "proex",
                "--profiles",
                "synthetic-latent",
                "--train",
                "epochs=2",
                "eval_every=1",
            ]
        )
        == 0
    )
    cell = CellConfig(
        dataset="synthetic",
        model="lightgcn",
        plugin="proex",
        profiles="synthetic-latent",
        train={"epochs": 2, "eval_every": 1},
    )
    expected = resolve(cell).config_hash()
    (out,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((out / "metrics.json").read_text())
    assert out.name.endswith(f"-{expected}")
    assert metrics["config_hash"] == checkpoint.read(str(out / "checkpoint.pt"))["config_hash"] == expected
    derived = with_text_dim(resolve(cell), 64).plugin_cfg.hidden_dim  # synthetic-latent's width is 64
    assert resolve(cell).plugin_cfg.hidden_dim is None and metrics["config"]["plugin_config"]["hidden_dim"] == derived
