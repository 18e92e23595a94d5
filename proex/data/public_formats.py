"""Converters from the official files of public datasets to UTF-8 CSV files with headers that a card names.

Each converter takes the downloaded files (`{file name at the source: local path}`) and the output folder. The
formats are the publishers' own:

- MovieLens (GroupLens): ml-latest-small.zip holds CSVs with headers; ml-1m.zip holds '::'-separated Latin-1
  .dat files without headers (README of ml-1m: UserID::MovieID::Rating::Timestamp, MovieID::Title::Genres).
- Goodbooks-10k (GitHub zygmuntz/goodbooks-10k, README.md): ratings.csv `user_id,book_id,rating`; books.csv with
  `book_id,goodreads_book_id,...,authors,...,title,...`; book_tags.csv `goodreads_book_id,tag_id,count` (keyed by
  the goodreads id, not book_id); tags.csv `tag_id,tag_name`.
- Steam (UCSD, the files SASRec and many since use): steam_reviews.json.gz and steam_games.json.gz hold one
  Python dict literal per line (single quotes, u'' strings; not JSON), read with `ast.literal_eval`. A review has
  `username`, `product_id`, `date` (YYYY-MM-DD), `hours`, `text`; a game `id`, `app_name`, `title`, `genres`,
  `tags`, `specs`, `developer`, ...
- Amazon Review Data 2018 (Ni, Li, McAuley, EMNLP'19; nijianmo.github.io/amazon): `<Category>_5.json.gz`, the
  5-core reviews, one JSON object per line with `reviewerID`, `asin`, `overall`, `unixReviewTime`, `summary`,
  `reviewText`; `meta_<Category>.json.gz`, one product per line with `asin`, `title`, `brand`, `category` (list),
  `description` (list), ... Lines are read as JSON, falling back to `ast.literal_eval` (Python-literal lines).
"""

from __future__ import annotations

import ast
import calendar
import csv
import datetime as dt
import gzip
import io
import json
import shutil
import zipfile
from pathlib import Path

import pandas as pd

Files = dict[str, Path]


def movielens_small(files: Files, out: Path) -> None:
    with zipfile.ZipFile(files["ml-latest-small.zip"]) as zf:
        for name in ("ratings.csv", "movies.csv", "tags.csv"):
            (out / name).write_bytes(_member(zf, f"ml-latest-small/{name}"))


def movielens_1m(files: Files, out: Path) -> None:
    specs = {"ratings": ["userId", "movieId", "rating", "timestamp"], "movies": ["movieId", "title", "genres"]}
    with zipfile.ZipFile(files["ml-1m.zip"]) as zf:
        for name, cols in specs.items():
            raw = _member(zf, f"ml-1m/{name}.dat")
            df = pd.read_csv(io.BytesIO(raw), sep="::", engine="python", header=None, names=cols, encoding="latin-1")
            df.to_csv(out / f"{name}.csv", index=False, encoding="utf-8")


GOODBOOKS_MAX_TAGS = 20  # a book's most-counted distinctive tags kept as its text


def goodbooks(files: Files, out: Path) -> None:
    """ratings.csv and books.csv as published, plus book_text.csv `book_id,title,authors,tags`.

    tags: the book's tag names in descending count (book_tags.csv joined on goodreads_book_id, then tags.csv),
    at most GOODBOOKS_MAX_TAGS, leaving out tags on more than half of all books ("to-read", "favorites", ...),
    which say nothing about one book.
    """
    shutil.copyfile(files["ratings.csv"], out / "ratings.csv")
    shutil.copyfile(files["books.csv"], out / "books.csv")
    books = _read_csv(files["books.csv"], ["book_id", "goodreads_book_id", "title", "authors"])
    book_tags = _read_csv(files["book_tags.csv"], ["goodreads_book_id", "tag_id", "count"])
    tags = _read_csv(files["tags.csv"], ["tag_id", "tag_name"])
    bt = book_tags.groupby(["goodreads_book_id", "tag_id"], as_index=False)["count"].sum()
    spread = bt.groupby("tag_id")["goodreads_book_id"].nunique()
    common = spread.index[spread > 0.5 * books.goodreads_book_id.nunique()]
    bt = bt[~bt.tag_id.isin(common)].merge(tags, on="tag_id", how="inner")
    bt = bt.sort_values(["goodreads_book_id", "count", "tag_name"], ascending=[True, False, True], kind="stable")
    top = bt.groupby("goodreads_book_id", sort=False).head(GOODBOOKS_MAX_TAGS)
    joined = top.groupby("goodreads_book_id", sort=False)["tag_name"].agg(", ".join).rename("tags")
    text = books.merge(joined, left_on="goodreads_book_id", right_index=True, how="left")
    text["tags"] = text["tags"].fillna("")
    text[["book_id", "title", "authors", "tags"]].to_csv(out / "book_text.csv", index=False, encoding="utf-8")


def steam(files: Files, out: Path) -> None:
    """reviews.csv `username,product_id,timestamp,hours,text` (one row per review line with both ids; the date as
    UTC seconds) and games.csv `id,title,genres,tags,specs,developer` (lists joined with ', '; title falls back
    to app_name; the first row of a repeated id wins)."""
    with open(out / "reviews.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["username", "product_id", "timestamp", "hours", "text"])
        for line_no, r in _literal_lines(files["steam_reviews.json.gz"]):
            user, item = _text(r.get("username")), _text(r.get("product_id"))
            if user and item:
                w.writerow([user, item, _day_seconds(r.get("date"), line_no), r.get("hours", ""), _text(r.get("text"))])
    games, seen = [], set()
    for _, g in _literal_lines(files["steam_games.json.gz"]):
        gid = _text(g.get("id"))
        if gid and gid not in seen:
            seen.add(gid)
            games.append(
                {
                    "id": gid,
                    "title": _text(g.get("title") or g.get("app_name")),
                    **{k: _text(g.get(k)) for k in ("genres", "tags", "specs", "developer")},
                }
            )
    pd.DataFrame(games, columns=["id", "title", "genres", "tags", "specs", "developer"]).to_csv(
        out / "games.csv", index=False, encoding="utf-8"
    )


def amazon_2018(files: Files, out: Path) -> None:
    """reviews.csv `reviewerID,asin,rating,timestamp,summary,reviewText` (the 5-core file's rows with both ids)
    and items.csv `asin,title,brand,categories,description` for the reviewed products only (lists joined; the
    first row of a repeated asin wins)."""
    reviews_file = next(p for n, p in files.items() if not n.startswith("meta_"))
    meta_file = next(p for n, p in files.items() if n.startswith("meta_"))
    asins = set()
    with open(out / "reviews.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["reviewerID", "asin", "rating", "timestamp", "summary", "reviewText"])
        for _, r in _dict_lines(reviews_file, json_first=True):
            user, item = _text(r.get("reviewerID")), _text(r.get("asin"))
            if user and item:
                asins.add(item)
                w.writerow(
                    [
                        user,
                        item,
                        r.get("overall", ""),
                        r.get("unixReviewTime", ""),
                        _text(r.get("summary")),
                        _text(r.get("reviewText")),
                    ]
                )
    items, seen = [], set()
    for _, m in _dict_lines(meta_file, json_first=True):
        asin = _text(m.get("asin"))
        if asin in asins and asin not in seen:
            seen.add(asin)
            items.append(
                {
                    "asin": asin,
                    "title": _text(m.get("title")),
                    "brand": _text(m.get("brand")),
                    "categories": _text(m.get("category") or m.get("categories")),
                    "description": " ".join(_text(d) for d in _as_list(m.get("description"))),
                }
            )
    pd.DataFrame(items, columns=["asin", "title", "brand", "categories", "description"]).to_csv(
        out / "items.csv", index=False, encoding="utf-8"
    )


def _as_list(value) -> list:
    return value if isinstance(value, (list, tuple)) else [] if value is None else [value]


def _literal_lines(path: Path):
    return _dict_lines(path, json_first=False)


def _dict_lines(path: Path, json_first: bool):
    """(line number, dict) for each non-empty line of a gzip file of JSON objects or Python dict literals, read
    with `json.loads` (tried first when `json_first`) or `ast.literal_eval`, never `eval`."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, _parse_line(line, path, n, json_first)


def _parse_line(line: str, path: Path, n: int, json_first: bool) -> dict:
    value = None
    if json_first:
        try:
            value = json.loads(line)
        except ValueError:
            pass
    if value is None:
        try:
            value = ast.literal_eval(line)
        except (ValueError, SyntaxError) as exc:
            kind = "JSON, nor a Python dict literal" if json_first else "a Python dict literal"
            raise ValueError(f"{path.name} line {n}: not {kind} ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path.name} line {n}: a {type(value).__name__}, not a dict")
    return value


def _text(value) -> str:
    """A value as the text of a CSV cell: lists joined with ', ', NUL characters dropped."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(t for t in (_text(v) for v in value) if t)
    return str(value).replace("\x00", "").strip()


def _day_seconds(date, line_no: int) -> int | str:
    if not date:
        return ""
    try:
        return calendar.timegm(dt.datetime.strptime(str(date), "%Y-%m-%d").timetuple())
    except ValueError:
        raise ValueError(f"steam_reviews.json.gz line {line_no}: date {date!r} is not YYYY-MM-DD") from None


def _read_csv(path: Path, cols: list[str]) -> pd.DataFrame:
    df = pd.read_csv(path, encoding="utf-8")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name} lacks column(s) {missing}; it has {list(df.columns)}")
    return df[cols]


def _member(zf: zipfile.ZipFile, member: str) -> bytes:
    try:
        return zf.read(member)
    except KeyError:
        raise KeyError(f"no member {member!r} in the archive") from None
