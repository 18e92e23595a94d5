"""Well-known public datasets as dataset cards: `proex data fetch <name>` downloads the official files, checks
each against a checksum, converts them to UTF-8 CSV files with headers and writes a card beside them.

    proex data fetch movielens-small      # GroupLens ml-latest-small.zip (ratings, movies, per-interaction tags)
    proex data fetch movielens-1m         # GroupLens ml-1m.zip ('::'-separated, Latin-1 .dat files)
    proex data fetch goodbooks-10k        # GitHub zygmuntz/goodbooks-10k at a pinned commit (ratings, books, tags)
    proex data fetch steam-reviews        # UCSD steam_reviews.json.gz + steam_games.json.gz (reviews, game tags)
    proex data fetch amazon-all-beauty    # Amazon Review Data 2018, a 5-core category + its product metadata
                                          # (also amazon-software, amazon-video-games)
    proex train --card <data dir>/goodbooks-10k/goodbooks-10k.yaml --model lightgcn

Checksums, by source (`Remote.checksum`):
- `md5-file`: GroupLens publishes `<archive>.md5` beside each archive; the download must match it.
- `git-blob:<sha1>`: Goodbooks-10k is read from raw.githubusercontent.com at a pinned commit; the repository's
  tree at that commit names each file's git blob id, sha1(b"blob <size>\\0" + content), pinned here.
- `first-download`: the UCSD Steam and Amazon 2018 files have no published checksum that we could find. Their
  gzip streams are read to the end (CRC-checked) and parsed; the SHA-256 and size of the first download go to
  `<name>/sources.json` and the card, and `proex data fetch <name> --refresh` refuses files that differ from
  them. This detects a later change or corruption, not a bad first download.
A checksum from the same server guards against truncated or corrupted downloads; it is not a signature.

Nothing is installed until every file passed its check and converted and the card loads; a rerun with the card
present downloads nothing; `--refresh` downloads again and replaces the folder only if all checks pass. Files
land in `<dest>/<name>/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import public_formats as formats
from .fetch import _download
from .interactions import DataError

GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
GOODBOOKS_COMMIT = "6dd165b555a7b47b2dd36743a425776e641ff50c"  # master of zygmuntz/goodbooks-10k (2018-10-01)
GOODBOOKS = f"https://raw.githubusercontent.com/zygmuntz/goodbooks-10k/{GOODBOOKS_COMMIT}/"
STEAM = "https://cseweb.ucsd.edu/~wckang/"  # the Steam files of jmcauley's dataset page (Version 2)
# Amazon Review Data (2018), linked from nijianmo.github.io/amazon; older links: jmcauley.ucsd.edu/data/amazon_v2/
AMAZON_2018 = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2/"
AMAZON_CATEGORIES = {
    "amazon-all-beauty": "All_Beauty",
    "amazon-software": "Software",
    "amazon-video-games": "Video_Games",
}  # 5-core categories of Amazon Review Data (2018)


@dataclass(frozen=True)
class Remote:
    name: str  # path under the dataset's base URL
    checksum: str  # "md5-file" | "git-blob:<sha1>" | "first-download" (see module doc)

    @property
    def basename(self) -> str:  # the converters' key
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class PublicDataset:
    base: str  # the official folder URL
    files: tuple[Remote, ...]
    convert: Callable[[dict[str, Path], Path], None]  # {file name: downloaded path}, folder -> CSVs in it
    card: str  # the card YAML written next to them
    note: str = ""


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
_GOODBOOKS_CARD = f"""\
# Goodbooks-10k (GitHub zygmuntz/goodbooks-10k at {GOODBOOKS_COMMIT}); fetched by `proex data fetch goodbooks-10k`
interactions: ratings.csv     # user_id,book_id,rating (1-5), sorted by time; no timestamps
user_col: user_id
item_col: book_id
rating_col: rating
item_text: book_text.csv      # title, authors and the book's tags (book_tags.csv joined on goodreads_book_id)
item_text_id: book_id
item_text_cols: [title, authors, tags]
text_unknown_ids: ignore      # a book of books.csv that nobody rated (none in the full data) is skipped
"""
_STEAM_CARD = f"""\
# Steam (UCSD, {STEAM}steam_reviews.json.gz + steam_games.json.gz); fetched by `proex data fetch steam-reviews`
interactions: reviews.csv     # one row per review: username, product_id, timestamp (review day, UTC), hours, text
user_col: username
item_col: product_id
timestamp_col: timestamp
interaction_text_cols: [text] # the review texts; only training pairs reach a profile
item_text: games.csv          # title, genres, tags, specs of each game (steam_games.json.gz)
item_text_id: id
item_text_cols: [title, genres, tags, specs]
text_unknown_ids: ignore      # games.csv also lists games nobody reviewed
"""

_AMAZON_CARD = """\
# Amazon Review Data 2018, {cat} 5-core ({base}categoryFilesSmall/{cat}_5.json.gz + metaFiles2/meta_{cat}.json.gz);
# fetched by `proex data fetch {name}`
interactions: reviews.csv     # reviewerID, asin, rating (1-5), timestamp (unix), summary, reviewText
user_col: reviewerID
item_col: asin
rating_col: rating
timestamp_col: timestamp
interaction_text_cols: [summary, reviewText]   # the reviews; only training pairs reach a profile
item_text: items.csv          # title, brand, categories, description of each reviewed product
item_text_id: asin
item_text_cols: [title, brand, categories, description]
"""


def _amazon(name: str, cat: str) -> PublicDataset:
    return PublicDataset(
        AMAZON_2018,
        (
            Remote(f"categoryFilesSmall/{cat}_5.json.gz", "first-download"),
            Remote(f"metaFiles2/meta_{cat}.json.gz", "first-download"),
        ),
        formats.amazon_2018,
        _AMAZON_CARD.format(cat=cat, base=AMAZON_2018, name=name),
        f"Amazon Review Data 2018: {cat} 5-core reviews with product metadata",
    )


PUBLIC = {
    "movielens-small": PublicDataset(
        GROUPLENS,
        (Remote("ml-latest-small.zip", "md5-file"),),
        formats.movielens_small,
        _ML_CARD.format(title="MovieLens latest-small", url=GROUPLENS + "ml-latest-small.zip", name="movielens-small")
        + _TAGS,
        "610 users, 9.7k movies, 100k ratings, 3.7k tags",
    ),
    "movielens-1m": PublicDataset(
        GROUPLENS,
        (Remote("ml-1m.zip", "md5-file"),),
        formats.movielens_1m,
        _ML_CARD.format(title="MovieLens 1M", url=GROUPLENS + "ml-1m.zip", name="movielens-1m"),
        "6,040 users, 3.7k movies, 1M ratings; no tags",
    ),
    "goodbooks-10k": PublicDataset(
        GOODBOOKS,
        (
            Remote("ratings.csv", "git-blob:0d245a10acfe3c89b2e4004cdbc805b99771ac5d"),
            Remote("books.csv", "git-blob:d694afdf5f555b51c1128c6ff562b6e54a7f75e3"),
            Remote("book_tags.csv", "git-blob:f82218f199850f533568eaf22529b5df1c545412"),
            Remote("tags.csv", "git-blob:65b5424eeec23554e9b034933e438cd12017a985"),
        ),
        formats.goodbooks,
        _GOODBOOKS_CARD,
        "53,424 users, 10k books, ~6M ratings; ratings.csv alone is 69 MB (its README)",
    ),
    "steam-reviews": PublicDataset(
        STEAM,
        (Remote("steam_reviews.json.gz", "first-download"), Remote("steam_games.json.gz", "first-download")),
        formats.steam,
        _STEAM_CARD,
        "millions of reviews (Version 2 review data) with game metadata; gigabytes, parsed line by line (minutes)",
    ),
    **{name: _amazon(name, cat) for name, cat in AMAZON_CATEGORIES.items()},
}


def fetch_public(
    name: str, dest_dir: str | Path | None = None, url: str | None = None, timeout: float = 60, refresh: bool = False
) -> Path:
    """Install public dataset `name` under `<dest_dir>/<name>/` (default: the registry's data dir) and return
    the path of its card. `url` replaces the official location: the folder holding the dataset's files
    (`<url>/<file>`), or for a one-file dataset that file's URL (a mirror, or `file:///.../ml-1m.zip`).
    `refresh` downloads again even if installed, checked against the same checksums (first-download ones from
    the installed sources.json). DataError on an unknown name, a network error or a failed check."""
    from .cards import load_spec
    from .registry import default_data_dir

    if name not in PUBLIC:
        raise DataError(
            f"unknown public dataset {name!r}; known: {', '.join(PUBLIC)} "
            "(and `proex data fetch` without a name for the RLMRec archive)"
        )
    spec = PUBLIC[name]
    out = Path(dest_dir or default_data_dir()) / name
    card = out / f"{name}.yaml"
    if card.is_file() and not refresh:
        return card
    if out.exists() and not card.is_file():
        raise DataError(
            f"{out} exists but holds no {card.name}: it is not a dataset installed by `proex data fetch "
            f"{name}` and is left alone. Pass another --dest, or move that folder away."
        )
    recorded = _read_sources(out) if refresh else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=out.parent) as tmp:
        got, sources = {}, []
        for remote in spec.files:
            file_url = _file_url(url, spec, remote)
            path = Path(tmp) / remote.basename
            _download(file_url, path, timeout, out, _hint(name, spec))
            sources.append(_check(remote, path, file_url, Path(tmp), timeout, out, recorded.get(remote.name)))
            got[remote.basename] = path
        staging = Path(tmp) / name
        staging.mkdir()
        try:
            spec.convert(got, staging)
        except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError, zlib.error) as exc:
            raise DataError(
                f"{name}: the downloaded files are not in the expected format ({type(exc).__name__}: "
                f"{exc}). Nothing was installed."
            ) from None
        (staging / "sources.json").write_text(json.dumps(sources, indent=2) + "\n")
        (staging / card.name).write_text(
            spec.card
            + "".join(
                f"# source: {s['url']} ({s['checksum']}; sha256 {s['sha256']}, {s['size']} bytes)\n" for s in sources
            )
        )
        load_spec(str(staging / card.name))  # the card loads before anything is installed
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    return card


def git_blob_sha1(path: Path) -> str:
    """The git blob id of a file: sha1(b"blob <size>\\0" + content), what `git ls-tree` lists."""
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    _feed(path, h)
    return h.hexdigest()


def _file_url(url: str | None, spec: PublicDataset, remote: Remote) -> str:
    if url is None:
        return spec.base + remote.name
    if len(spec.files) == 1 and not url.endswith("/") and url.rsplit("/", 1)[-1] == remote.name:
        return url  # the one file's own URL
    return url.rstrip("/") + "/" + remote.name


def _hint(name: str, spec: PublicDataset) -> str:
    md5 = " (with its .md5)" if any(r.checksum == "md5-file" for r in spec.files) else ""
    return (
        f"Download {', '.join(r.name for r in spec.files)}{md5} from {spec.base} by hand into one folder "
        f"(same sub-folders) and rerun `proex data fetch {name} --url file:///that/folder/`; the checksums are "
        "still checked."
    )


def _check(remote: Remote, path: Path, url: str, tmp: Path, timeout: float, out: Path, recorded: dict | None) -> dict:
    """Verify one downloaded file (see module doc); return its sources.json record. DataError on a mismatch."""
    size, sha256 = path.stat().st_size, _feed(path, hashlib.sha256()).hexdigest()
    kind, _, pinned = remote.checksum.partition(":")
    if kind == "md5-file":
        md5_file = tmp / (remote.basename + ".md5")
        _download(
            url + ".md5",
            md5_file,
            timeout,
            out,
            f"Download it with {remote.name} by hand, put both in "
            f"one folder and rerun with --url file:///that/folder/{remote.name}.",
        )
        found = re.search(r"\b[0-9a-fA-F]{32}\b", md5_file.read_text(errors="replace"))  # 'hash  file' or BSD
        expected, got, what = (
            (found.group(0).lower() if found else ""),
            _feed(path, hashlib.md5()).hexdigest(),
            f"the published MD5 ({url}.md5)",
        )
    elif kind == "git-blob":
        expected, got, what = pinned, git_blob_sha1(path), "the git blob SHA-1 pinned in proex.data.public"
    elif kind == "first-download":
        expected = got = sha256
        what = "the SHA-256 of the first download (sources.json)"
        if recorded and recorded.get("sha256"):
            expected = recorded["sha256"]
    else:
        raise AssertionError(remote.checksum)
    if got != expected:
        raise DataError(
            f"{url}: checksum {got} does not match {what}, {expected or '(empty)'}; the download is "
            "truncated or corrupt, or the source changed. Nothing was installed; retry."
        )
    return {"file": remote.name, "url": url, "checksum": remote.checksum, "sha256": sha256, "size": size}


def _read_sources(out: Path) -> dict[str, dict]:
    try:
        return {s["file"]: s for s in json.loads((out / "sources.json").read_text())}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _feed(path: Path, h):
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h
