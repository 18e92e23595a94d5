"""Named datasets: where they live, how to load one by name or path, and what their counts should be.

Names resolve in this order (`load_dataset`):
1. `synthetic` or `synthetic:key=value,...` -> `make_synthetic` (keys of `SyntheticConfig`);
2. a known RLMRec dataset (`amazon`, `yelp`, `steam`) -> `<data_dir>/<name>/` with `load_rlmrec`;
3. a dataset card (`my-data.yaml`) or a table with its card keys (`ratings.csv?user_col=userId&...`), see
   `proex.data.cards`;
4. an existing path: a directory holding `trn_mat.pkl` (RLMRec format) or a .csv/.tsv/.parquet table
   (loaded with the default `TableConfig`: columns user, item);
5. any other `<data_dir>/<name>/` that holds `trn_mat.pkl` (a dataset the user brought).
`data_dir` defaults to $PROEX_DATA_DIR, else `<repo>/../shared/data`. Expected counts are those measured in
the RLMRec splits (Steam's train count is inferred from the paper's Table 1 total).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import build, parse_overrides
from .cards import is_card_spec, load_spec
from .interactions import DataError, Interactions
from .rlmrec import SPLIT_FILES, load_rlmrec
from .synthetic import SyntheticConfig, make_synthetic
from .tables import TableConfig, load_table

DATA_ENV = "PROEX_DATA_DIR"
_TABLE_EXT = (".csv", ".tsv", ".tab", ".parquet", ".pq", ".csv.gz", ".tsv.gz", ".csv.bz2", ".csv.xz")


@dataclass(frozen=True)
class Expected:
    """Counts a known dataset must have: users, items and nnz of each split (the RLMRec splits)."""

    users: int
    items: int
    train: int
    val: int
    test: int
    note: str = ""


KNOWN: OrderedDict[str, Expected] = OrderedDict(
    amazon=Expected(11000, 9332, 120464, 40290, 40106, "Amazon-Book"),
    yelp=Expected(11091, 11010, 166620, 55479, 55436, "Yelp"),
    steam=Expected(23310, 5237, 316190, 104897, 104835, "Steam; train count inferred from the paper's Table 1 total"),
)


def default_data_dir() -> Path:
    """$PROEX_DATA_DIR if set, else `<repo root>/../shared/data` (repo root = the folder holding `proex/`)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def dataset_path(name: str, data_dir: str | Path | None = None) -> Path:
    """Where dataset `name` is (or would be): an existing path as given, else `<data_dir>/<name>`."""
    if name not in KNOWN and Path(name).expanduser().exists():
        return Path(name).expanduser()
    return Path(data_dir or default_data_dir()) / name


def available(data_dir: str | Path | None = None) -> list[str]:
    """The known datasets whose three split files are present under `data_dir`, in registry order."""
    root = Path(data_dir or default_data_dir())
    return [n for n in KNOWN if all((root / n / f).is_file() for f in SPLIT_FILES.values())]


def load_dataset(name: str, data_dir: str | Path | None = None, **synthetic_overrides: Any) -> Interactions:
    """Load a dataset by name or path (see module doc); keyword overrides apply to `synthetic` only."""
    if name == "synthetic" or name.startswith("synthetic:"):
        return make_synthetic(synthetic_config(name, synthetic_overrides))
    if synthetic_overrides:
        raise DataError(
            f"dataset {name!r}: keyword overrides {sorted(synthetic_overrides)} apply only to 'synthetic'; remove them."
        )
    if is_card_spec(name):
        return load_spec(name)
    root = Path(data_dir or default_data_dir())
    if name in KNOWN:
        path = root / name
        if not (path / SPLIT_FILES["train"]).is_file():
            raise DataError(_not_found(name, root, f"{path} has no {SPLIT_FILES['train']}"))
        return load_rlmrec(path, name)
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / SPLIT_FILES["train"]).is_file():
            return load_rlmrec(path)
        raise DataError(
            f"{path}: directory without {SPLIT_FILES['train']}; an RLMRec dataset folder holds "
            f"{', '.join(SPLIT_FILES.values())}. Point at that folder, or at a .csv/.parquet table."
        )
    if path.is_file():
        if path.name.lower().endswith(_TABLE_EXT):
            return load_table(path, TableConfig())  # columns user, item: others need a card or flags
        hint = (
            " For the RLMRec archive, install it with `proex data fetch` / fetch_rlmrec(url='file:///...zip')."
            if path.suffix.lower() == ".zip"
            else ""
        )
        raise DataError(f"{path}: not a dataset; give a .csv/.tsv/.parquet table or an RLMRec folder.{hint}")
    if (root / name / SPLIT_FILES["train"]).is_file():
        return load_rlmrec(root / name, name)
    raise DataError(_not_found(name, root, "it is neither a known name nor an existing path"))


def synthetic_config(spec: str = "synthetic", overrides: dict[str, Any] | None = None) -> SyntheticConfig:
    """`synthetic:n_users=100,seed=3` plus keyword overrides -> SyntheticConfig (values parsed as YAML scalars)."""
    items = [s for s in spec.partition(":")[2].split(",") if s.strip()]
    values = parse_overrides(items, where=f"dataset {spec!r}")
    values.update(overrides or {})
    return build(SyntheticConfig, values, where=f"dataset {spec!r}")


def check_expected(data: Interactions) -> list[str]:
    """Differences between `data` and the registry's counts for `data.name`; [] when all match or not known."""
    exp = KNOWN.get(data.name)
    if exp is None:
        return []
    got = {
        "users": data.n_users,
        "items": data.n_items,
        "train": data.train.nnz,
        "val": data.val.nnz,
        "test": data.test.nnz,
    }
    return [
        f"{data.name}: {key} = {got[key]}, expected {getattr(exp, key)}"
        for key in got
        if int(got[key]) != getattr(exp, key)
    ]


def _not_found(name: str, root: Path, why: str) -> str:
    env = os.environ.get(DATA_ENV)
    where = f"${DATA_ENV}={env}" if env else f"default; ${DATA_ENV} is not set"
    return (
        f"dataset {name!r} not found: {why}. Searched {root} ({where}). Known datasets: "
        f"{', '.join(KNOWN)} (present: {', '.join(available(root)) or 'none'}), plus 'synthetic[:key=value,...]', "
        f"a path to an RLMRec folder or a .csv/.parquet table. To fix: set {DATA_ENV} to the folder that holds "
        f"<name>/{SPLIT_FILES['train']}, or run `proex data fetch` to download the RLMRec datasets."
    )
