"""The API key never reaches MLflow or any file a run writes: a profile stage (LLM chat + OpenAI embeddings, over
HTTP to the local fake server) runs with OPENAI_API_KEY=sk-test-<random> set, then a grid's cells train on
that bank through the grid's own trial body (`run_tracked_cell`) into an MLflow store, with the key still in the
environment. Every param, tag and metric name of every run, every artifact, the store itself, the profile
outputs, caches and the bank are scanned for the key (and for its secret half alone)."""

from __future__ import annotations

import json
import os
import secrets
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mlflow")
pytestmark = pytest.mark.slow

from fake_openai_server import FakeConfig, FakeOpenAI  # noqa: E402

from proex.data.registry import load_dataset  # noqa: E402
from proex.grid import load_grid  # noqa: E402
from proex.infra.tracked_cell import TrackedCell, TrialContext, run_tracked_cell  # noqa: E402
from proex.infra.tracker import Tracker  # noqa: E402
from proex.profiles.embed import EmbedConfig, embed_profiles  # noqa: E402
from proex.profiles.pipeline import ProfileJobConfig, generate  # noqa: E402

SPEC = "synthetic:n_users=24,n_items=16,mean_interactions=6"
ENV = "OPENAI_API_KEY"


def files_holding(root: Path, needles: list[bytes]) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


def test_key_reaches_no_mlflow_run_artifact_or_file(tmp_path, monkeypatch):
    key = f"sk-test-{secrets.token_hex(16)}"
    needles = [key.encode(), key.removeprefix("sk-test-").encode()]
    monkeypatch.setenv(ENV, key)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact folder (./mlruns) lands under the scanned root
    inter = load_dataset(SPEC)
    with FakeOpenAI(FakeConfig(api_key=key)) as srv:
        summary = generate(
            ProfileJobConfig(
                base_url=srv.base_url,
                model="fake-llm",
                api_key_env=ENV,
                out_dir=str(tmp_path / "profiles"),
                rpm=60000,
                tpm=1e8,
                concurrency=6,
                backoff_s=0.02,
                progress=False,
            ),
            inter,
        )
        assert summary["sides"]["user"]["profiled"] == inter.n_users
        bank = embed_profiles(
            str(tmp_path / "profiles"),
            inter,
            EmbedConfig(embedder="openai", base_url=srv.base_url, api_key_env=ENV, model="text-embedding-3-small"),
            out_dir=str(tmp_path / "bank"),
        )
        embedded = sum(e["path"].endswith("/embeddings") and e["outcome"] == "completed" for e in srv.log())
    assert embedded > 0 and bank.k == 4  # the OpenAI embeddings path was really taken

    (tmp_path / "grid.yaml").write_text(
        textwrap.dedent(f"""
        name: keyscan
        axes: {{model: [lightgcn], plugin: [base, proex], dataset: ["{SPEC}"], seed: [0]}}
        fixed: {{profiles: {tmp_path / "bank"}, train: {{epochs: 3, eval_every: 3, device: cpu}}}}
        select: val/recall@20
    """)
    )
    grid = load_grid(str(tmp_path / "grid.yaml"))
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(store, "proex-keyscan")
    parent, _ = tracker.run_for("grid", grid.name, tags={"grid": grid.name})
    ctx = TrialContext(store, "proex-keyscan", parent.info.run_id, "cell", grid.name, "recall@20", 1, "test")
    cells = grid.expand()
    for gc in cells:
        out = run_tracked_cell(
            ctx,
            TrackedCell(gc, gc.cell_id, gc.cell_id, gc.labels),
            str(tmp_path / "state.pt"),
            str(tmp_path / "work" / gc.cell_id),
        )
        assert not out.already_finished and 0 <= out.test["recall@20"] <= 1
        os.remove(tmp_path / "state.pt")
    tracker.finish(parent.info.run_id)

    runs = tracker.find()
    assert len(runs) == 1 + len(cells) and any(r.data.tags.get("profile_bank", "none") != "none" for r in runs)
    logged = json.dumps(
        [{"params": r.data.params, "tags": r.data.tags, "metrics": sorted(r.data.metrics)} for r in runs]
    )
    assert "proex" in logged and not any(n.decode() in logged for n in needles)
    for r in runs:  # every artifact, fetched through MLflow
        tracker.client.download_artifacts(r.info.run_id, "", str(tmp_path / "downloaded" / r.info.run_id))
    downloaded = list((tmp_path / "downloaded").rglob("*.pt"))
    assert downloaded  # the checkpoints came back, so the artifact scan saw real files
    # the store, the artifact folders, the profile outputs and caches, the bank, the trainer's work files
    assert files_holding(tmp_path, needles) == []
