"""Interaction tables (CSV/Parquet): column config, dedupe, rating filter, k-core, seeded split, text join, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from proex.config import ConfigError, build
from proex.data.interactions import DataError
from proex.data.tables import TableConfig, kcore_mask, load_table

ML = TableConfig(user_col="userId", item_col="movieId", rating_col="rating", timestamp_col="timestamp")


def movielens(n_users=60, n_items=80, seed=0) -> pd.DataFrame:
    """MovieLens-like ratings: userId, movieId (sparse ids), rating 0.5..5, timestamp; some duplicates."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        k = rng.integers(5, 25)
        for m in rng.choice(n_items, size=k, replace=False):
            rows.append((u * 3 + 1, int(m) * 10 + 7, rng.integers(1, 11) / 2, int(rng.integers(10**9))))
    df = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    return pd.concat([df, df.iloc[:15]], ignore_index=True)  # duplicated (user, movie) rows


def observed(data) -> set[tuple]:
    """All (original user id, original item id) pairs across the three splits."""
    out = set()
    for m in (data.train, data.val, data.test):
        c = m.tocoo()
        out |= set(zip(data.user_ids[c.row].tolist(), data.item_ids[c.col].tolist()))
    return out


@pytest.fixture
def ml_csv(tmp_path):
    path = tmp_path / "ratings.csv"
    movielens().to_csv(path, index=False)
    return path


def test_csv_movielens_columns_and_id_mapping(ml_csv):
    df = pd.read_csv(ml_csv)
    data = load_table(ml_csv, ML)
    assert data.name == "ratings" and data.source == str(ml_csv)
    assert data.user_ids.tolist() == sorted(df.userId.unique())
    assert data.item_ids.tolist() == sorted(df.movieId.unique())
    assert observed(data) == set(zip(df.userId, df.movieId))  # duplicates collapsed, nothing lost or invented
    total = data.train.nnz + data.val.nnz + data.test.nnz
    assert total == len(df.drop_duplicates(["userId", "movieId"]))
    assert 0.55 < data.train.nnz / total < 0.65 and 0.15 < data.val.nnz / total < 0.25
    assert np.diff(data.train.indptr).min() >= 1
    assert data.extras["table_config"] == dataclasses.asdict(ML)


def test_parquet_gives_same_result_as_csv(ml_csv, tmp_path):
    pq = tmp_path / "ratings.parquet"
    pd.read_csv(ml_csv).to_parquet(pq)
    a, b = load_table(ml_csv, ML), load_table(pq, ML)
    for s in ("train", "val", "test"):
        assert (a.split(s) != b.split(s)).nnz == 0
    assert a.item_ids.tolist() == b.item_ids.tolist()


def test_split_deterministic_per_seed_and_independent_of_row_order(ml_csv, tmp_path):
    shuffled = tmp_path / "shuffled.csv"
    pd.read_csv(ml_csv).sample(frac=1.0, random_state=1).to_csv(shuffled, index=False)
    a, b = load_table(ml_csv, ML), load_table(shuffled, ML)
    c = load_table(ml_csv, dataclasses.replace(ML, seed=7))
    for s in ("train", "val", "test"):
        assert (a.split(s) != b.split(s)).nnz == 0
    assert (a.test != c.test).nnz > 0
    assert observed(a) == observed(c)


def test_split_counts_per_user(tmp_path):
    sizes = {"a": 1, "b": 2, "c": 3, "d": 5, "e": 10}
    df = pd.DataFrame([(u, f"i{k}") for u, n in sizes.items() for k in range(n)], columns=["user", "item"])
    df.to_csv(tmp_path / "t.csv", index=False)
    data = load_table(tmp_path / "t.csv")
    per_user = np.stack([np.diff(m.indptr) for m in (data.train, data.val, data.test)], axis=1)
    assert per_user.tolist() == [[1, 0, 0], [1, 1, 0], [2, 0, 1], [3, 1, 1], [6, 2, 2]]


def test_min_rating_and_kcore(tmp_path):
    # user x9 rates low only; k-core needs two rounds: dropping item z (1 user) leaves user w with 1 item
    rows = [
        ("u", "a", 5),
        ("u", "b", 4),
        ("v", "a", 4),
        ("v", "b", 5),
        ("w", "a", 5),
        ("w", "z", 5),
        ("x9", "a", 1),
        ("x9", "b", 2),
        ("x9", "c", 1),
    ]
    pd.DataFrame(rows, columns=["user", "item", "stars"]).to_csv(tmp_path / "r.csv", index=False)
    cfg = TableConfig(rating_col="stars", min_rating=3, min_user_interactions=2, min_item_interactions=2)
    data = load_table(tmp_path / "r.csv", cfg)
    assert data.user_ids.tolist() == ["u", "v"] and data.item_ids.tolist() == ["a", "b"]
    assert data.extras["counts"] == {"rows": 9, "after_min_rating": 6, "unique_pairs": 6, "after_kcore": 4}


def test_kcore_matches_bruteforce():
    rng = np.random.default_rng(3)
    users, items = rng.integers(0, 40, 500), rng.integers(0, 30, 500)
    pairs = sorted(set(zip(users.tolist(), items.tolist())))
    users, items = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    keep = set(pairs)
    while True:  # reference: drop users/items under threshold until stable
        uc = pd.Series([u for u, _ in keep]).value_counts()
        ic = pd.Series([i for _, i in keep]).value_counts()
        new = {(u, i) for u, i in keep if uc[u] >= 8 and ic[i] >= 9}
        if new == keep:
            break
        keep = new
    mask = kcore_mask(users, items, 8, 9)
    assert set(zip(users[mask].tolist(), items[mask].tolist())) == keep
    one_pass = (np.bincount(users)[users] >= 8) & (np.bincount(items)[items] >= 9)
    assert 0 < mask.sum() < one_pass.sum() < len(pairs)  # the case needs more than one round


@pytest.mark.parametrize("dates", [False, True])
def test_time_split_puts_newest_in_test(tmp_path, dates):
    ts = [5, 4, 3, 2, 1, 10, 20, 30, 40, 50]
    df = pd.DataFrame(
        {
            "user": ["u"] * 5 + ["v"] * 5,
            "item": list(range(5)) * 2,
            "ts": [str(pd.Timestamp("2020-01-01") + pd.Timedelta(days=t)) for t in ts] if dates else ts,
        }
    )
    df.to_csv(tmp_path / "t.csv", index=False)
    data = load_table(tmp_path / "t.csv", TableConfig(timestamp_col="ts", split_by="time"))
    assert data.test[0].indices.tolist() == [0] and data.test[1].indices.tolist() == [4]
    assert sorted(data.train[1].indices.tolist()) == [0, 1, 2]


def test_missing_column_error(ml_csv):
    with pytest.raises(DataError) as err:
        load_table(ml_csv, TableConfig())  # default column "user" is not in a MovieLens file
    msg = str(err.value)
    assert str(ml_csv) in msg and "'user'" in msg and "userId" in msg and "--user-col" in msg
    with pytest.raises(DataError, match="missing column 'stars'.*--rating-col"):
        load_table(ml_csv, dataclasses.replace(ML, rating_col="stars"))


def test_bad_config_and_extension(tmp_path, ml_csv):
    with pytest.raises(ConfigError, match="min_rating needs rating_col"):
        load_table(ml_csv, TableConfig(min_rating=3))
    with pytest.raises(ConfigError, match="unknown key"):
        build(TableConfig, {"user_column": "x"}, "test")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown table extension"):
        load_table(tmp_path / "t.xlsx")


def test_text_tables(ml_csv, tmp_path):
    df = pd.read_csv(ml_csv)
    movies = sorted(df.movieId.unique())
    item_text = pd.DataFrame({"movieId": movies[1:], "title": [f"Movie {m}" for m in movies[1:]]})
    item_text.to_parquet(tmp_path / "movies.parquet")
    u0 = int(df.userId.min())
    pd.DataFrame({"uid": [u0, u0], "review": ["great", "again"]}).to_csv(tmp_path / "reviews.csv", index=False)
    cfg = dataclasses.replace(ML, item_text_id="movieId", user_text_id="uid")
    data = load_table(ml_csv, cfg, user_text=tmp_path / "reviews.csv", item_text=tmp_path / "movies.parquet")
    assert data.item_text.shape == (data.n_items, 1) and list(data.item_text.index) == list(range(data.n_items))
    assert data.item_text.title[0] == "" and data.item_text.title[1] == f"Movie {data.item_ids[1]}"
    assert data.user_text.review[0] == "great\nagain" and data.user_text.review[1] == ""


def test_text_table_unknown_ids(ml_csv, tmp_path):
    pd.DataFrame({"movieId": [17, 999999, 888888], "title": ["a", "b", "c"]}).to_csv(tmp_path / "m.csv", index=False)
    cfg = dataclasses.replace(ML, item_text_id="movieId")
    with pytest.raises(DataError) as err:
        load_table(ml_csv, cfg, item_text=tmp_path / "m.csv")
    msg = str(err.value)
    assert "m.csv" in msg and "'movieId'" in msg and "999999" in msg and "text_unknown_ids" in msg
    data = load_table(ml_csv, dataclasses.replace(cfg, text_unknown_ids="ignore"), item_text=tmp_path / "m.csv")
    assert set(data.item_text.title) <= {"a", ""}
    with pytest.raises(DataError, match=r"m\.csv: missing column 'item'.*--item-text-id"):
        load_table(ml_csv, ML, item_text=tmp_path / "m.csv")


def test_text_ids_removed_by_filtering_are_skipped(tmp_path):
    rows = [("u", "a"), ("u", "b"), ("v", "a"), ("v", "b"), ("w", "z")]
    pd.DataFrame(rows, columns=["user", "item"]).to_csv(tmp_path / "r.csv", index=False)
    pd.DataFrame({"item": ["a", "z"], "title": ["A", "Z"]}).to_csv(tmp_path / "i.csv", index=False)
    data = load_table(tmp_path / "r.csv", TableConfig(min_item_interactions=2), item_text=tmp_path / "i.csv")
    assert data.item_ids.tolist() == ["a", "b"] and data.item_text.title.tolist() == ["A", ""]
