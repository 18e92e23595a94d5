"""The dataset flags shared by every command that takes `--dataset` (train, data inspect, profiles ...).

    proex train --dataset ratings.csv --user-col userId --item-col movieId --rating-col rating --min-rating 4
    proex profiles offline --card movielens.yaml --out prof/ml
    proex data inspect movielens.yaml --min-rating 4

Each flag is a key of `proex.data.cards.DatasetCard` (`--user-col` = `user_col`, `--split-seed` = `seed`);
`--card FILE` (or a card path as `--dataset`) names a card, and flags given with it override its keys. The
result is one dataset string (`ratings.csv?user_col=userId&...`) that the cell records and every worker
reloads the same way. Paths given as flags are relative to the current directory.
"""

from __future__ import annotations

import argparse

from ..config import ConfigError
from ..data.cards import card_keys, flag, parse_value, spec_string

_HELP = {
    "user_col": "user id column (MovieLens userId, Amazon reviewerID)",
    "item_col": "item id column (MovieLens movieId, Amazon asin)",
    "rating_col": "rating column (needed by --min-rating)",
    "timestamp_col": "timestamp column (needed by --split-by time)",
    "min_rating": "drop interactions rated below this",
    "min_user_interactions": "k-core: users with fewer interactions are removed (repeatedly)",
    "min_item_interactions": "k-core: items with fewer interactions are removed (repeatedly)",
    "split": "train,val,test ratios per user (default 0.6,0.2,0.2)",
    "split_by": "random (default) or time (oldest to train, newest to test)",
    "seed": "seed of the random split (default 2023)",
    "sep": "CSV separator (default , or tab for .tsv)",
    "item_text": "item text table FILE (id column + title, genres, description ...)",
    "item_text_id": "id column of --item-text (default item)",
    "item_text_cols": "text columns of --item-text to use, comma-separated (default all)",
    "user_text": "user text table FILE (id column + text columns)",
    "user_text_id": "id column of --user-text (default user)",
    "user_text_cols": "text columns of --user-text to use, comma-separated (default all)",
    "interaction_text": "per-interaction text FILE (reviews, tags: user id, item id, text); only rows of "
    "TRAINING interactions are used",
    "interaction_text_cols": "its text columns, comma-separated (without --interaction-text: columns of the "
    "interaction table itself)",
    "interaction_text_user_col": "user id column of --interaction-text (default --user-col)",
    "interaction_text_item_col": "item id column of --interaction-text (default --item-col)",
    "text_unknown_ids": "error (default) or ignore text rows whose id is not in the interactions",
}


def add_dataset_args(p: argparse.ArgumentParser, positional: bool = False, default: str = "synthetic") -> None:
    """Add `--dataset` (or a positional `dataset`), `--card` and one flag per card key to `p`; `default` is
    what the help says is used without them."""
    if positional:
        p.add_argument("dataset", nargs="?", default=None, help="registry name, path, table or dataset card")
    else:
        p.add_argument(
            "--dataset",
            default=None,
            help="registry name (amazon, yelp, steam), synthetic[:key=value,"
            f"...], an RLMRec folder, a .csv/.tsv/.parquet table or a dataset card .yaml "
            f"(default: {default})",
        )
    g = p.add_argument_group("dataset card (a table's columns, filters, split and text; see proex.data.cards)")
    g.add_argument("--card", default=None, metavar="FILE", help="a dataset card YAML (the flags below override it)")
    for key in card_keys():
        g.add_argument(flag(key), dest=f"card_{key}", default=None, metavar="VALUE", help=_HELP.get(key, key))


def dataset_spec(args: argparse.Namespace, default: str | None = "synthetic") -> str | None:
    """The dataset string of parsed flags: the card or table, plus `?key=value` for each card flag given;
    `default` when no dataset, card or card flag was given."""
    dataset = getattr(args, "dataset", None)
    card = getattr(args, "card", None)
    if card and dataset:
        raise ConfigError(f"give --card {card} or --dataset {dataset}, not both (a card names its table)")
    base = card or dataset or default
    overrides = {}
    for key in card_keys():
        value = getattr(args, f"card_{key}", None)
        if value is not None:
            parse_value(key, value, f"{flag(key)} {value}")  # fail now, naming the flag
            overrides[key] = value
    if overrides and not _is_table_or_card(base or ""):
        raise ConfigError(
            f"{', '.join(flag(k) for k in overrides)} describe a table or a card; dataset {base!r} "
            "is neither. Give --dataset FILE.csv|.tsv|.parquet or --card FILE.yaml."
        )
    return spec_string(base, overrides) if base is not None else None


def _is_table_or_card(name: str) -> bool:
    base = name.partition("?")[0].lower()
    return base.endswith(
        (
            ".yaml",
            ".yml",
            ".csv",
            ".tsv",
            ".tab",
            ".txt",
            ".dat",
            ".parquet",
            ".pq",
            ".gz",
            ".bz2",
            ".xz",
            ".zst",
            ".zip",
        )
    )
