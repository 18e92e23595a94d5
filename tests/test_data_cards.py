"""Dataset cards and the card flags: MovieLens-style files loaded without renaming, the same dataset from a card
file and from flags, clear errors naming flags that exist, and interaction text (tags) kept for TRAINING pairs
only, so no profile (offline or LLM input) ever sees a validation or test interaction."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from movielens_files import CARD, UNKNOWN_MOVIE, marker, write_movielens

from proex.cli import main
from proex.config import ConfigError
from proex.data.cards import card_from_spec, load_spec
from proex.data.interactions import DataError
from proex.data.registry import load_dataset
from proex.experiment import dataset_key
from proex.grid import load_grid
from proex.profiles.offline import offline_records
from proex.profiles.prompts import entity_inputs, render_input

FLAGS = [
    "--user-col",
    "userId",
    "--item-col",
    "movieId",
    "--rating-col",
    "rating",
    "--timestamp-col",
    "timestamp",
    "--item-text",
    "data/movies.csv",
    "--item-text-id",
    "movieId",
    "--interaction-text",
    "data/tags.csv",
    "--interaction-text-cols",
    "tag",
    "--text-unknown-ids",
    "ignore",
]


@pytest.fixture
def ml(tmp_path, monkeypatch):
    files = write_movielens(tmp_path / "data")
    (tmp_path / "data" / "mine.yaml").write_text(CARD)
    monkeypatch.chdir(tmp_path)
    return files


def pairs(m, inter):
    coo = m.tocoo()
    return {(str(inter.user_ids[u]), str(inter.item_ids[i])) for u, i in zip(coo.row, coo.col)}


def test_card_file_and_flags_give_the_same_dataset(ml, capsys):
    by_card = load_dataset("data/mine.yaml")
    assert by_card.name == "mine" and dataset_key("data/mine.yaml?min_rating=4") == "mine"
    assert main(["-q", "data", "inspect", "data/ratings.csv", "--card", "data/mine.yaml"]) == 2  # not both
    capsys.readouterr()
    assert main(["-q", "data", "inspect", "data/ratings.csv"] + FLAGS) == 0
    info = json.loads(capsys.readouterr().out)
    by_flags = load_dataset(info["dataset"])
    assert info["dataset"].startswith("data/ratings.csv?") and "user_col=userId" in info["dataset"]
    for split in ("train", "val", "test"):
        assert (by_card.split(split) != by_flags.split(split)).nnz == 0
    assert by_card.item_text.equals(by_flags.item_text) and by_card.user_text.equals(by_flags.user_text)
    assert info["counts"]["interaction_text"]["kept_train"] == by_card.train.nnz
    assert info["text_columns"] == {"user": ["tag"], "item": ["title", "genres", "tag"]}
    # ids with gaps stay the original ids; a movie without a text row has empty text, the unknown id is skipped
    assert set(by_card.item_ids.astype(int)) <= set(pd.read_csv(ml["ratings"]).movieId)
    missing = list(by_card.item_ids.astype(int)).index(ml["movie_without_text"])
    assert by_card.item_text.title[missing] == "" and UNKNOWN_MOVIE not in set(by_card.item_ids.astype(int))
    assert any("東京物語" in t for t in by_card.item_text.title) and any("é" in t for t in by_card.item_text.title)
    # flags given with a card override its keys
    stricter = load_dataset("data/mine.yaml?min_rating=4")
    assert (
        stricter.train.nnz + stricter.val.nnz + stricter.test.nnz
        < by_card.train.nnz + by_card.val.nnz + by_card.test.nnz
    )
    assert card_from_spec("data/mine.yaml?min_rating=4&split=0.8,0.1,0.1").split == (0.8, 0.1, 0.1)


def test_errors_name_flags_that_exist(ml, capsys):
    assert main(["data", "inspect", "data/ratings.csv"]) == 2  # default columns user, item
    err = capsys.readouterr().err
    assert "missing column 'user'" in err and "userId" in err and "--user-col" in err
    assert main(["train", "--dataset", "data/ratings.csv", "--user-col", "userId", "--item-col", "wrong"]) == 2
    err = capsys.readouterr().err
    assert "missing column 'wrong'" in err and "--item-col" in err
    assert main(["data", "inspect", "data/mine.yaml", "--min-rating", "four"]) == 2
    assert "--min-rating" in capsys.readouterr().err
    assert main(["data", "inspect", "data/mine.yaml", "--text-unknown-ids", "error"]) == 2
    err = capsys.readouterr().err
    assert str(UNKNOWN_MOVIE) in err and "--text-unknown-ids ignore" in err and "--item-text-id" in err
    assert main(["train", "--dataset", "synthetic", "--user-col", "userId"]) == 2
    assert "--user-col" in capsys.readouterr().err
    (ml["ratings"].parent / "typo.yaml").write_text(CARD + "user_column: userId\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown key\(s\) \['user_column'\].*user_col"):
        load_spec("data/typo.yaml")
    (ml["ratings"].parent / "bad.yaml").write_text(
        CARD.replace("interaction_text_cols: [tag]", "interaction_text_cols: [tags]")
    )
    with pytest.raises(DataError, match=r"tags\.csv: missing column 'tags'.*--interaction-text-cols"):
        load_spec("data/bad.yaml")


def test_interaction_text_of_held_out_pairs_never_reaches_a_profile(ml):
    """Every rated pair has a tag with a marker naming the pair. Only training pairs' markers may appear in the
    text tables, the offline profiles and the LLM inputs; held-out ones never."""
    inter = load_dataset("data/mine.yaml")
    train, held = pairs(inter.train, inter), pairs(inter.val, inter) | pairs(inter.test, inter)
    assert train and held
    found = lambda text: {tuple(m) for m in re.findall(r"mk(\d+)x(\d+)", text)}  # noqa: E731
    tables = all_text(inter)
    assert found(tables) == train  # all training tags are there, and nothing else
    for side in ("user", "item"):
        recs = offline_records(inter, side, k=6, domain="movies")
        text = json.dumps(recs, ensure_ascii=False)
        assert found(text) and found(text) <= train
        llm = json.dumps([render_input(e, 10**6) for e in entity_inputs(inter, side, _Knobs())], ensure_ascii=False)
        assert found(llm) and found(llm) <= train
    counts = inter.extras["counts"]["interaction_text"]
    assert counts["dropped_val_test"] == inter.val.nnz + inter.test.nnz and counts["kept_train"] == inter.train.nnz
    some_user = next(iter(held))
    assert marker(*some_user) not in tables


def all_text(inter) -> str:
    return "\n".join(str(v) for t in (inter.user_text, inter.item_text) for v in t.to_numpy().ravel())


class _Knobs:
    limit, max_history, max_snippets = 0, 10**6, 10**6


def test_train_grid_and_profile_commands_take_the_card(ml, tmp_path, capsys):
    assert (
        main(
            [
                "-q",
                "train",
                "--card",
                "data/mine.yaml",
                "--min-rating",
                "3",
                "--model",
                "lightgcn",
                "--train",
                "epochs=1",
                "--out",
                "runs/a",
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "runs" / "a" / "metrics.json").read_text())
    assert result["config"]["dataset"] == "data/mine.yaml?min_rating=3"  # the cell reloads it the same way
    card = result["dataset_card"]  # every key that ran, with the card's paths resolved
    assert card["user_col"] == "userId" and card["min_rating"] == 3.0 and card["item_text"] == "data/movies.csv"
    capsys.readouterr()
    assert main(["-q", "profiles", "estimate", "--card", "data/mine.yaml", "--out", "prof/est", "--model", "m"]) == 0
    est = json.loads(capsys.readouterr().out)
    mine = load_dataset("data/mine.yaml")
    assert est["entities"] == mine.n_users + mine.n_items and est["calls"] > 0, est
    (tmp_path / "g.yaml").write_text(
        "name: g\naxes: {model: [lightgcn], plugin: [base, proex], "
        "dataset: [data/mine.yaml], seed: [0]}\nfixed:\n  profiles: prof/{dataset}/bank\n"
    )
    cells = load_grid(tmp_path / "g.yaml").expand()
    assert {c.labels["dataset"] for c in cells} == {"mine"}
    assert [c.runnable().profiles for c in cells if c.config.plugin == "proex"] == ["prof/mine/bank"]


def test_review_text_in_the_interaction_table_is_kept_for_training_pairs_only(tmp_path):
    """Amazon-style: the review is a column of the interaction table itself (no interaction_text file)."""
    rows = [(u, i, f"review mk{u}x{i}") for u in range(1, 30) for i in range(100, 140) if (u * 7 + i) % 3 == 0]
    pd.DataFrame(rows, columns=["reviewerID", "asin", "reviewText"]).to_csv(tmp_path / "reviews.csv", index=False)
    inter = load_dataset(f"{tmp_path}/reviews.csv?user_col=reviewerID&item_col=asin&interaction_text_cols=reviewText")
    train, held = pairs(inter.train, inter), pairs(inter.val, inter) | pairs(inter.test, inter)
    found = {tuple(m) for m in re.findall(r"mk(\d+)x(\d+)", all_text(inter))}
    assert held and found == train
