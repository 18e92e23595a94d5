"""Dataset cards: a user's own dataset described once, as a small YAML file or as command-line flags.

A card names the interaction table, its columns, the rating threshold, the k-core, the split, optional user
and item text tables (id column, text columns) and the text that comes from interactions (reviews, tags):

    # movielens.yaml (paths are relative to the card's folder)
    interactions: ratings.csv
    user_col: userId
    item_col: movieId
    rating_col: rating
    min_rating: 3.5
    item_text: movies.csv
    item_text_id: movieId
    interaction_text: tags.csv          # per-interaction text; omit to read it from the interaction table
    interaction_text_cols: [tag]
    text_unknown_ids: ignore            # movies.csv lists movies nobody rated

The keys are those of `TableConfig` plus the text keys below; the same keys are flags on every command that
takes `--dataset` (`--user-col`, `--item-text FILE`, ...; the split seed is `--split-seed`). A dataset is named
by one string, so that a grid cell, a Ray worker and a checkpoint all reload it the same way:

    movielens.yaml                         a card file
    movielens.yaml?min_rating=4            a card file with keys overridden (what `--card F --min-rating 4` gives)
    ratings.csv?user_col=userId&item_col=movieId     a table with keys given (what the flags give)

Interaction text (reviews, tags) is kept only for the (user, item) pairs of the TRAINING split: a row whose pair
is in validation or test, was filtered out (rating, k-core) or never interacted is dropped and counted, so
no profile built from the dataset sees held-out interactions. A user's kept rows become a column of
`user_text` (what they wrote), an item's a column of `item_text` (what was written about it).
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import ConfigError, build, read_yaml_mapping
from .interactions import DataError, Interactions
from .tables import TableConfig, _id_keys, load_table, read_table

log = logging.getLogger("proex.data")
CARD_EXT = (".yaml", ".yml")
PATH_KEYS = ("interactions", "item_text", "user_text", "interaction_text")


@dataclass
class DatasetCard(TableConfig):
    """A dataset: TableConfig's keys (columns, min_rating, k-core, split) plus where the text is.

    interactions: the interaction table (.csv/.tsv/.parquet, optionally compressed).
    item_text, user_text: optional text tables with an id column (`item_text_id`, `user_text_id`).
    item_text_cols, user_text_cols: the text columns to keep (default: all but the id column).
    interaction_text: a table of per-interaction text (one row per user, item and text: MovieLens tags.csv);
        None reads `interaction_text_cols` from the interaction table itself (Amazon reviews).
    interaction_text_cols: its text columns (none: no interaction text).
    interaction_text_user_col, interaction_text_item_col: its id columns (default: user_col, item_col).
    """

    interactions: str = ""
    item_text: str | None = None
    item_text_cols: tuple[str, ...] | None = None
    user_text: str | None = None
    user_text_cols: tuple[str, ...] | None = None
    interaction_text: str | None = None
    interaction_text_cols: tuple[str, ...] = ()
    interaction_text_user_col: str | None = None
    interaction_text_item_col: str | None = None

    def table_config(self) -> TableConfig:
        names = {f.name for f in dataclasses.fields(TableConfig)}
        return TableConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})

    def check(self) -> DatasetCard:
        super().check()
        if not self.interactions:
            raise ConfigError("dataset card: `interactions` (the interaction table) is required (CLI: --dataset TABLE)")
        if self.interaction_text and not self.interaction_text_cols:
            raise ConfigError(
                f"dataset card: interaction_text={self.interaction_text!r} needs "
                "interaction_text_cols, e.g. [tag] (CLI: --interaction-text-cols tag)"
            )
        return self


def flag(key: str) -> str:
    """The command-line flag of card key `key` (`user_col` -> `--user-col`; `seed` -> `--split-seed`)."""
    return "--split-seed" if key == "seed" else "--" + key.replace("_", "-")


def card_keys() -> list[str]:
    """Every card key that has a flag (all but `interactions`, which is `--dataset`)."""
    return [f.name for f in dataclasses.fields(DatasetCard) if f.name != "interactions"]


def is_card_spec(name: str) -> bool:
    """True for a card file or a `path?key=value` spec (see module doc)."""
    base = name.partition("?")[0]
    return "?" in name or base.lower().endswith(CARD_EXT)


def spec_string(dataset: str, overrides: dict[str, str]) -> str:
    """`dataset` (a table, a card or a registry name) with `overrides` (key -> text) as `?key=value&...`."""
    if not overrides:
        return dataset
    base, _, query = dataset.partition("?")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True) + sorted(overrides.items())
    merged = dict(pairs)
    return base + "?" + urllib.parse.urlencode(merged, safe="/,.:[]")


def load_card_file(path: str | Path) -> DatasetCard:
    """Read a card YAML; its relative paths become relative to the card's folder. ConfigError names the key."""
    path = Path(path)
    raw = read_yaml_mapping(path, "dataset card", "interactions, user_col, item_col, ...", missing=DataError)
    for key in PATH_KEYS:
        if raw.get(key):
            given = Path(str(raw[key])).expanduser()
            raw[key] = str(given if given.is_absolute() else path.parent / given)
    return build(DatasetCard, raw, str(path))


def card_from_spec(name: str) -> DatasetCard:
    """The DatasetCard of a spec string (see module doc); query values are parsed by the key's type."""
    base, _, query = name.partition("?")
    card = load_card_file(base) if base.lower().endswith(CARD_EXT) else DatasetCard(interactions=base)
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError(f"dataset {name!r}: after '?' give key=value pairs joined by '&'") from None
    values = {k: parse_value(k, v, f"dataset {name!r}") for k, v in pairs}
    merged = {**dataclasses.asdict(card), **values}
    return build(DatasetCard, merged, f"dataset {name!r}").check()


def parse_value(key: str, text: str, where: str):
    """A card value from text (a flag or a spec): numbers for numeric keys, comma lists for list keys."""
    hints = typing.get_type_hints(DatasetCard)
    if key not in hints:
        raise ConfigError(f"{where}: unknown key {key!r}; valid keys are {sorted(hints)}")
    hint = hints[key]
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if text == "" and optional:
        return None
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if typing.get_origin(kind) is tuple or kind is tuple:
            inner = typing.get_args(kind)[0] if typing.get_args(kind) else str
            parts = [p.strip() for p in text.strip("[]()").split(",") if p.strip()]
            return tuple(inner(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"{where}: {key}={text!r} is not a {getattr(kind, '__name__', kind)} (flag {flag(key)})"
        ) from None
    return text


def load_card(card: DatasetCard, name: str | None = None, source: str | None = None) -> Interactions:
    """Load the dataset a card describes (see module doc); extras["card"] holds every key that ran."""
    card.check()
    cfg = card.table_config()
    inter = load_table(
        card.interactions,
        cfg,
        name=name,
        user_text=card.user_text,
        item_text=card.item_text,
        user_text_cols=card.user_text_cols,
        item_text_cols=card.item_text_cols,
    )
    if card.interaction_text_cols:
        _attach_interaction_text(inter, card)
    inter.extras["card"] = dataclasses.asdict(card)
    if source:
        inter.source = source
    return inter.validate()


def load_spec(name: str) -> Interactions:
    """Load a dataset named by a card path or `path?key=value` spec; its name is the file stem."""
    base = name.partition("?")[0]
    stem = Path(base).name.split(".")[0]
    return load_card(card_from_spec(name), name=stem, source=name)


def _attach_interaction_text(inter: Interactions, card: DatasetCard) -> None:
    """Add per-interaction text of TRAINING pairs to user_text/item_text; count what was dropped and why."""
    path = Path(card.interaction_text or card.interactions)
    ucol = card.interaction_text_user_col or card.user_col
    icol = card.interaction_text_item_col or card.item_col
    cols = {"interaction_text_user_col": ucol, "interaction_text_item_col": icol}
    cols.update({f"interaction_text_cols[{j}]": c for j, c in enumerate(card.interaction_text_cols)})
    df = read_table(path, cols, card.sep)
    users = pd.Index(_id_keys(pd.Series(inter.user_ids))).get_indexer(_id_keys(df[ucol]))
    items = pd.Index(_id_keys(pd.Series(inter.item_ids))).get_indexer(_id_keys(df[icol]))
    known = (users >= 0) & (items >= 0)
    in_train = np.zeros(len(df), dtype=bool)
    in_train[known] = np.asarray(inter.train[users[known], items[known]]).ravel() > 0
    held_out = np.zeros(len(df), dtype=bool)
    held = (inter.val + inter.test).tocsr()
    held_out[known] = np.asarray(held[users[known], items[known]]).ravel() > 0
    counts = {
        "rows": len(df),
        "kept_train": int(in_train.sum()),
        "dropped_val_test": int(held_out.sum()),
        "dropped_not_in_train": int((~in_train & ~held_out).sum()),
    }
    inter.extras.setdefault("counts", {})["interaction_text"] = counts
    log.info("%s: interaction text %s (only training pairs are kept)", path, counts)
    kept = df.loc[in_train, list(card.interaction_text_cols)].fillna("").astype(str)
    for side, idx, n in (("user", users[in_train], inter.n_users), ("item", items[in_train], inter.n_items)):
        table = getattr(inter, f"{side}_text")
        table = pd.DataFrame(index=pd.RangeIndex(n)) if table is None else table
        for col in card.interaction_text_cols:
            values = pd.Series(kept[col].to_numpy(), index=idx)
            values = values[values.str.strip() != ""]
            joined = values.groupby(level=0, sort=True).agg(_join_unique).reindex(pd.RangeIndex(n), fill_value="")
            name = col if col not in table.columns else f"{col} (interactions)"
            table[name] = joined.to_numpy()
            inter.extras.setdefault("interaction_text_columns", {}).setdefault(side, []).append(name)
        setattr(inter, f"{side}_text", table)


def _join_unique(values: pd.Series) -> str:
    """Distinct texts in file order, one per line (a tag given by many users is listed once)."""
    return "\n".join(dict.fromkeys(v.strip() for v in values))
