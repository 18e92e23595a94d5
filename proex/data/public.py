"""Well-known public datasets as dataset cards: `proex data fetch <name>` downloads one from its official URL,
verifies it against the checksum its publisher serves next to it, writes UTF-8 CSV files with headers and a card.

    proex data fetch movielens-small      # GroupLens ml-latest-small.zip (ratings, movies, per-interaction tags)
    proex data fetch movielens-1m         # GroupLens ml-1m.zip ('::'-separated, Latin-1 .dat files)
    proex train --card <data dir>/movielens-small/movielens-small.yaml --model lightgcn

GroupLens publishes `<archive>.md5` beside each archive (https://files.grouplens.org/datasets/movielens/); the
download is refused unless its MD5 matches. That guards against truncated or corrupted downloads; it is not a
signature (the checksum comes from the same server). Nothing is installed until the check passed and the
files converted; a rerun with the card present downloads nothing. Files land in `<dest>/<name>/`.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .fetch import _download
from .interactions import DataError

GROUPLENS = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class PublicDataset:
    url: str  # the official archive
    convert: Callable[[zipfile.ZipFile, Path], None]  # archive -> UTF-8 CSVs with headers in the folder
    card: str  # the card YAML written next to them
    note: str = ""


def _movielens_small(zf: zipfile.ZipFile, out: Path) -> None:
    for name in ("ratings.csv", "movies.csv", "tags.csv"):
        _copy(zf, f"ml-latest-small/{name}", out / name)


def _movielens_1m(zf: zipfile.ZipFile, out: Path) -> None:
    specs = {"ratings": ["userId", "movieId", "rating", "timestamp"], "movies": ["movieId", "title", "genres"]}
    for name, cols in specs.items():
        raw = _member(zf, f"ml-1m/{name}.dat")
        df = pd.read_csv(io.BytesIO(raw), sep="::", engine="python", header=None, names=cols, encoding="latin-1")
        df.to_csv(out / f"{name}.csv", index=False, encoding="utf-8")


_ML_CARD = """\
# {title} (GroupLens, {url}); fetched by `proex data fetch {name}`
interactions: ratings.csv
user_col: userId
item_col: movieId
rating_col: rating
timestamp_col: timestamp
item_text: movies.csv
item_text_id: movieId
text_unknown_ids: ignore      # movies.csv also lists movies without ratings
"""
_TAGS = """\
interaction_text: tags.csv    # per-(user, movie) tags; only training pairs reach a profile
interaction_text_cols: [tag]
"""

PUBLIC = {
    "movielens-small": PublicDataset(
        GROUPLENS + "ml-latest-small.zip", _movielens_small,
        _ML_CARD.format(title="MovieLens latest-small", url=GROUPLENS + "ml-latest-small.zip",
                        name="movielens-small") + _TAGS,
        "610 users, 9.7k movies, 100k ratings, 3.7k tags"),
    "movielens-1m": PublicDataset(
        GROUPLENS + "ml-1m.zip", _movielens_1m,
        _ML_CARD.format(title="MovieLens 1M", url=GROUPLENS + "ml-1m.zip", name="movielens-1m"),
        "6,040 users, 3.7k movies, 1M ratings; no tags"),
}


def fetch_public(name: str, dest_dir: str | Path | None = None, url: str | None = None, timeout: float = 60) -> Path:
    """Install public dataset `name` under `<dest_dir>/<name>/` (default: the registry's data dir) and return
    the path of its card. `url` replaces the official archive URL (a mirror, or `file:///...zip`); the checksum
    is read from `<url>.md5`. DataError on an unknown name, a network error or a checksum mismatch."""
    from .cards import load_spec
    from .registry import default_data_dir

    if name not in PUBLIC:
        raise DataError(f"unknown public dataset {name!r}; known: {', '.join(PUBLIC)} "
                        "(and `proex data fetch` without a name for the RLMRec archive)")
    spec = PUBLIC[name]
    url = url or spec.url
    out = Path(dest_dir or default_data_dir()) / name
    card = out / f"{name}.yaml"
    if card.is_file():
        return card
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=out.parent) as tmp:
        archive, md5_file = Path(tmp) / "archive.zip", Path(tmp) / "archive.md5"
        _download(url, archive, timeout, out)
        _download(url + ".md5", md5_file, timeout, out)
        found = re.search(r"\b[0-9a-fA-F]{32}\b", md5_file.read_text(errors="replace"))  # 'hash  file' or BSD
        expected = found.group(0).lower() if found else ""
        got = hashlib.md5(archive.read_bytes()).hexdigest()
        if got != expected:
            raise DataError(f"{url}: MD5 {got} does not match the published {expected or '(empty)'} "
                            f"({url}.md5); the download is truncated or corrupt. Nothing was installed; retry.")
        staging = Path(tmp) / name
        staging.mkdir()
        try:
            with zipfile.ZipFile(archive) as zf:
                spec.convert(zf, staging)
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise DataError(f"{url}: not the expected archive ({type(exc).__name__}: {exc}). Nothing was "
                            "installed.") from None
        (staging / card.name).write_text(spec.card)
        load_spec(str(staging / card.name))  # the card loads before anything is installed
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    return card


def _member(zf: zipfile.ZipFile, member: str) -> bytes:
    try:
        return zf.read(member)
    except KeyError:
        raise KeyError(f"no member {member!r} in the archive") from None


def _copy(zf: zipfile.ZipFile, member: str, target: Path) -> None:
    target.write_bytes(_member(zf, member))
