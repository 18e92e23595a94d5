"""Loader for plain interaction tables (CSV/TSV or Parquet): MovieLens `ratings.csv`, Amazon/Steam review dumps...

`load_table` turns a table with one row per (user, item) event into an `Interactions` with the protocol of
the RLMRec data: optional rating threshold (the RLMRec datasets dropped ratings below 3), duplicate
(user, item) rows collapsed, iterative k-core filtering, ids remapped to dense 0..n-1 (original ids kept in
`user_ids`/`item_ids`, sorted so the mapping is deterministic), and a per-user 3:1:1 train/val/test split
drawn with a seeded numpy Generator in which every user keeps at least one training interaction.
Optional user/item text tables (an id column plus any text columns) become `user_text`/`item_text`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..config import ConfigError
from .interactions import DataError, Interactions, to_binary_csr

_CSV_EXT = (".csv", ".tsv", ".tab", ".txt", ".dat")
_PARQUET_EXT = (".parquet", ".pq")


@dataclass
class TableConfig:
    """How to read an interaction table. Build it from a dict with `proex.config.build(TableConfig, d, where)`.

    user_col, item_col: id columns (MovieLens: userId, movieId; Amazon: reviewerID, asin; Steam: username, product_id).
    rating_col, min_rating: drop rows whose rating is below `min_rating` (or missing); needs `rating_col`.
    timestamp_col: needed only by `split_by="time"`.
    min_user_interactions, min_item_interactions: k-core thresholds, applied repeatedly until stable.
    split: train/val/test ratios per user (normalised; default 3:1:1, spec 1.1).
    split_by: "random" (each user's interactions shuffled with `seed`) or "time" (oldest -> train, newest -> test).
    sep: CSV separator; None -> "," (tab for .tsv/.tab).
    user_text_id, item_text_id: id column of the optional text tables.
    text_unknown_ids: "error" or "ignore" text rows whose id never occurs in the interaction table.
    """

    user_col: str = "user"
    item_col: str = "item"
    rating_col: str | None = None
    timestamp_col: str | None = None
    min_rating: float | None = None
    min_user_interactions: int = 1
    min_item_interactions: int = 1
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split_by: str = "random"
    seed: int = 2023
    sep: str | None = None
    user_text_id: str = "user"
    item_text_id: str = "item"
    text_unknown_ids: str = "error"

    def check(self) -> TableConfig:
        """Raise ConfigError on inconsistent settings; return self."""
        if len(self.split) != 3 or any(r < 0 for r in self.split) or self.split[0] <= 0:
            raise ConfigError(
                f"TableConfig.split={self.split}: need three ratios >= 0 with train > 0, e.g. (0.6, 0.2, 0.2)"
            )
        if self.split_by not in ("random", "time"):
            raise ConfigError(f"TableConfig.split_by={self.split_by!r}: use 'random' or 'time'")
        if self.split_by == "time" and not self.timestamp_col:
            raise ConfigError("TableConfig.split_by='time' needs timestamp_col (CLI: --timestamp-col)")
        if self.min_rating is not None and not self.rating_col:
            raise ConfigError("TableConfig.min_rating needs rating_col (CLI: --rating-col)")
        if self.min_user_interactions < 1 or self.min_item_interactions < 1:
            raise ConfigError("TableConfig.min_user_interactions / min_item_interactions must be >= 1")
        if self.text_unknown_ids not in ("error", "ignore"):
            raise ConfigError(f"TableConfig.text_unknown_ids={self.text_unknown_ids!r}: use 'error' or 'ignore'")
        return self


def load_table(
    path: str | Path,
    cfg: TableConfig | None = None,
    name: str | None = None,
    user_text: str | Path | None = None,
    item_text: str | Path | None = None,
    user_text_cols: tuple[str, ...] | None = None,
    item_text_cols: tuple[str, ...] | None = None,
) -> Interactions:
    """Read an interaction table into a validated `Interactions` (see module doc); extras["table_config"] = cfg.
    user_text_cols, item_text_cols: the text columns to keep (default: all but the id column)."""
    cfg = (cfg or TableConfig()).check()
    path = Path(path)
    fields = ["user_col", "item_col"] + [f for f in ("rating_col", "timestamp_col") if getattr(cfg, f)]
    df = read_table(path, {f: getattr(cfg, f) for f in fields}, cfg.sep)
    counts = {"rows": len(df)}
    for f in ("user_col", "item_col"):
        n_null = int(df[getattr(cfg, f)].isna().sum())
        if n_null:
            raise DataError(f"{path}: column '{getattr(cfg, f)}' has {n_null} empty id(s); drop those rows first.")
    raw_ids = {
        "user": set(_id_keys(df[cfg.user_col].drop_duplicates())),
        "item": set(_id_keys(df[cfg.item_col].drop_duplicates())),
    }
    if cfg.min_rating is not None:
        rating = pd.to_numeric(df[cfg.rating_col], errors="coerce")
        df = df[rating >= cfg.min_rating]
        counts["after_min_rating"] = len(df)
    u_codes, u_uniques = _factorize(df[cfg.user_col])
    i_codes, i_uniques = _factorize(df[cfg.item_col])
    time = _timestamps(df[cfg.timestamp_col], path) if cfg.split_by == "time" else None
    users, items, time = _dedupe(u_codes, i_codes, len(i_uniques), time)
    counts["unique_pairs"] = len(users)
    keep = kcore_mask(users, items, cfg.min_user_interactions, cfg.min_item_interactions)
    users, items = users[keep], items[keep]
    time = None if time is None else time[keep]
    counts["after_kcore"] = len(users)
    if not len(users):
        raise DataError(
            f"{path}: no interaction left after filtering (rows {counts}); lower min_rating or the "
            "min_user_interactions / min_item_interactions thresholds."
        )
    kept_u, users = np.unique(users, return_inverse=True)
    kept_i, items = np.unique(items, return_inverse=True)
    shape = (len(kept_u), len(kept_i))
    train, val, test = split_per_user(users, items, shape, cfg.split, cfg.seed, time)
    user_ids, item_ids = np.asarray(u_uniques)[kept_u], np.asarray(i_uniques)[kept_i]
    data = Interactions(
        name=name or path.name.split(".")[0],
        train=train,
        val=val,
        test=test,
        user_ids=user_ids,
        item_ids=item_ids,
        user_text=None
        if user_text is None
        else load_text(
            user_text, cfg.user_text_id, user_ids, raw_ids["user"], cfg.text_unknown_ids, "user", user_text_cols
        ),
        item_text=None
        if item_text is None
        else load_text(
            item_text, cfg.item_text_id, item_ids, raw_ids["item"], cfg.text_unknown_ids, "item", item_text_cols
        ),
        source=str(path),
        extras={"format": "table", "table_config": dataclasses.asdict(cfg), "counts": counts},
    )
    return data.validate()


def read_table(path: Path, columns: dict[str, str], sep: str | None = None, everything: bool = False) -> pd.DataFrame:
    """Read the `columns` (config field -> column name) of a CSV/TSV/Parquet file, or all columns when
    `everything`; DataError names a missing file, an unknown extension or a missing column and its fix."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found. Check the path.")
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".zip", ".xz", ".zst")]
    ext = suffixes[-1] if suffixes else ""
    if ext not in _PARQUET_EXT + _CSV_EXT:
        raise DataError(
            f"{path}: unknown table extension {ext!r}; use .csv, .tsv or .parquet "
            "(optionally compressed, e.g. .csv.gz)."
        )
    sep = sep or ("\t" if ext in (".tsv", ".tab") else ",")
    opts = {"sep": sep, "engine": "python" if len(sep) > 1 else "c"}
    try:
        if ext in _PARQUET_EXT:
            import pyarrow.parquet as pq

            present = list(pq.read_schema(path).names)
        else:
            present = list(pd.read_csv(path, nrows=0, **opts).columns)
        missing = [(f, c) for f, c in columns.items() if c not in present]
        if missing:
            f, c = missing[0]
            raise DataError(
                f"{path}: missing column '{c}' ({f}); the file has columns {present}. "
                f"Name the right column with {_flag(f)} (dataset card key {f.split('[')[0]})."
            )
        wanted = present if everything else list(dict.fromkeys(columns.values()))
        if ext in _PARQUET_EXT:
            return pd.read_parquet(path, columns=wanted)
        # only an empty cell is missing: "NA", "None", "null" are ids and words (a Steam user is called "NA")
        return pd.read_csv(path, usecols=wanted, keep_default_na=False, na_values=[""], **opts)
    except DataError:
        raise
    except (ValueError, OSError, UnicodeDecodeError) as e:  # pandas ParserError and pyarrow errors are ValueErrors
        raise DataError(
            f"{path}: cannot parse the table ({type(e).__name__}: {e}). Check the format "
            "and the separator (--sep, card key sep)."
        ) from None


def load_text(
    path: str | Path,
    id_col: str,
    ids: np.ndarray,
    raw_ids: set[str] | None = None,
    unknown: str = "error",
    kind: str = "item",
    text_cols: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Text table -> DataFrame [len(ids), text columns] indexed by dense id; missing text is "".

    ids: original ids of the dense ids. Rows whose id is in `raw_ids` but not `ids` (removed by filtering)
    are skipped; rows whose id is in neither raise DataError unless unknown == "ignore". Several rows for one
    id (e.g. one per review) are joined with newlines, in file order.
    """
    path = Path(path)
    wanted = {f"{kind}_text_id": id_col, **{f"{kind}_text_cols[{j}]": c for j, c in enumerate(text_cols or ())}}
    df = read_table(path, wanted, everything=not text_cols)
    text_cols = list(text_cols) if text_cols else [c for c in df.columns if c != id_col]
    if not text_cols:
        raise DataError(f"{path}: only the id column '{id_col}' is present; add at least one text column.")
    keys = _id_keys(df[id_col])
    dense = pd.Index(_id_keys(pd.Series(ids))).get_indexer(keys)
    unseen = (dense < 0) & ~np.isin(keys, list(raw_ids or ()))
    if unseen.any() and unknown == "error":
        examples = pd.unique(keys[unseen])[:5].tolist()
        raise DataError(
            f"{path}: column '{id_col}' has {int(unseen.sum())} row(s) whose {kind} id is not in the "
            f"interaction table (e.g. {examples}). Check that '{id_col}' holds the same ids as the "
            f"interactions (--{kind}-text-id), or skip those rows with --text-unknown-ids ignore "
            "(card key text_unknown_ids)."
        )
    known = df.loc[dense >= 0, text_cols].fillna("").astype(str)
    known.index = dense[dense >= 0]
    if known.index.has_duplicates:
        known = known.groupby(level=0, sort=True).agg("\n".join)
    out = known.reindex(pd.RangeIndex(len(ids)), fill_value="")
    return out


def split_per_user(
    users: np.ndarray,
    items: np.ndarray,
    shape: tuple[int, int],
    ratios: tuple[float, ...],
    seed: int,
    time: np.ndarray | None = None,
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Per-user train/val/test split of unique (user, item) pairs [E] -> three float32 binary CSR [n_users, n_items].

    Each user's pairs are ordered by a seeded random key (or by `time`, ties broken randomly), then cut at
    round(n * r_train) and round(n * (r_train + r_val)), with at least one pair kept in train. The pairs are
    put in (user, item) order first, so the result does not depend on the input row order.
    """
    canon = np.lexsort((items, users))
    users, items = users[canon], items[canon]
    key = np.random.default_rng(seed).random(len(users))
    perm = np.lexsort((key, users)) if time is None else np.lexsort((key, time[canon], users))
    users, items = users[perm], items[perm]
    counts = np.bincount(users, minlength=shape[0])
    rank = np.arange(len(users)) - (np.cumsum(counts) - counts)[users]
    r = np.asarray(ratios, dtype=np.float64) / float(np.sum(ratios))
    cut1 = np.maximum(np.floor(counts * r[0] + 0.5), 1)
    cut2 = np.maximum(np.floor(counts * (r[0] + r[1]) + 0.5), cut1)
    part = (rank >= cut1[users]).astype(np.int8) + (rank >= cut2[users])
    ones = np.ones(len(users), dtype=np.float32)
    return tuple(
        to_binary_csr(sp.coo_matrix((ones[part == k], (users[part == k], items[part == k])), shape=shape))
        for k in range(3)
    )  # type: ignore[return-value]


def kcore_mask(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Boolean mask [E] of the pairs kept by iterative k-core filtering (repeat until no pair is removed)."""
    keep = np.ones(len(users), dtype=bool)
    while True:
        u_deg = np.bincount(users[keep], minlength=users.max(initial=-1) + 1)
        i_deg = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        new = keep & (u_deg[users] >= min_user) & (i_deg[items] >= min_item)
        if new.sum() == keep.sum():
            return new
        keep = new


def _dedupe(users: np.ndarray, items: np.ndarray, n_items: int, time: np.ndarray | None):
    """Unique (user, item) pairs; with `time`, each pair keeps its earliest timestamp."""
    key = users.astype(np.int64) * n_items + items
    order = np.lexsort((time, key)) if time is not None else np.argsort(key, kind="stable")
    _, first = np.unique(key[order], return_index=True)
    idx = order[first]
    return users[idx], items[idx], None if time is None else time[idx]


def _timestamps(col: pd.Series, path: Path) -> np.ndarray:
    """Numeric timestamps, or dates parsed to nanoseconds, as float64 [rows]; DataError on anything else."""
    num = pd.to_numeric(col, errors="coerce")
    if not num.isna().any():
        return num.to_numpy(np.float64)
    with warnings.catch_warnings():  # pandas warns when it has to guess the date format per element
        warnings.simplefilter("ignore", UserWarning)
        dates = pd.to_datetime(col, errors="coerce")
    if not dates.isna().any():
        return dates.astype("int64").to_numpy(np.float64)
    bad = (num.isna() & dates.isna()).to_numpy()
    what = (
        f"{int(bad.sum())} value(s) that are neither numbers nor dates (first: {col.iloc[np.argmax(bad)]!r})"
        if bad.any()
        else "a mix of numbers and dates"
    )
    raise DataError(f"{path}: column '{col.name}' has {what}; make it one format or use split_by='random'.")


def _flag(field: str) -> str:
    """The command-line flag of a config field (`user_col` -> `--user-col`, `item_text_cols[0]` -> its list)."""
    return "--" + field.split("[")[0].replace("_", "-")


def _factorize(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes [rows] and sorted unique original ids; mixed-type columns are compared as strings."""
    try:
        codes, uniques = pd.factorize(col, sort=True)
    except TypeError:
        codes, uniques = pd.factorize(col.astype(str), sort=True)
    return codes.astype(np.int64), np.asarray(uniques)


def _id_keys(col: pd.Series) -> np.ndarray:
    """Ids as strings for joining text tables; integral floats (ints read next to NaNs) lose the '.0'."""
    if col.dtype.kind == "f" and np.all(np.mod(col.dropna(), 1) == 0):
        col = col.astype("Int64")
    return col.astype(str).to_numpy()
