"""Small generated files in the exact formats of the public datasets `proex data fetch` installs.

Goodbooks-10k (GitHub zygmuntz/goodbooks-10k): ratings.csv `user_id,book_id,rating`; books.csv with the real
23-column header, where goodreads_book_id differs from book_id; book_tags.csv `goodreads_book_id,tag_id,count`;
tags.csv `tag_id,tag_name`. Each book carries a tag `g<goodreads id>` naming itself, and every book carries the
shelf `to-read` (the most common tag), so a join on the wrong id or a missed common-tag filter shows.

Steam (UCSD): steam_reviews.json.gz and steam_games.json.gz, one Python 2 dict literal per line (u'' strings,
non-ASCII as \\x/\\u escapes, True/False), as the published files are. Each review text holds a marker
`mk<user>x<game>end` naming its pair.
"""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

BOOKS_HEADER = (
    "book_id,goodreads_book_id,best_book_id,work_id,books_count,isbn,isbn13,authors,"
    "original_publication_year,original_title,title,language_code,average_rating,ratings_count,"
    "work_ratings_count,work_text_reviews_count,ratings_1,ratings_2,ratings_3,ratings_4,ratings_5,"
    "image_url,small_image_url"
).split(",")
AUTHORS = [
    "J.K. Rowling, Mary GrandPré",
    "Gabriel García Márquez",
    "Fyodor Dostoyevsky, Constance Garnett",
    "Haruki Murakami, 村上春樹",
    "Suzanne Collins",
]
GENRES = ["fantasy", "classics", "romance", "science-fiction"]


def git_blob(path: Path) -> str:
    """The git blob id of a file as git itself computes it (an implementation independent of proex)."""
    return subprocess.run(["git", "hash-object", str(path)], check=True, capture_output=True, text=True).stdout.strip()


def write_goodbooks(root: Path, n_users: int = 40, n_books: int = 30, per_user: int = 10, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    users = 1 + 2 * np.arange(n_users)  # ids with gaps
    books = np.arange(1, n_books + 1) + (np.arange(n_books) >= n_books // 2) * 100
    goodreads = 2767052 + 7 * np.arange(n_books)[::-1]  # never equal to book_id, reversed order
    genre = rng.integers(0, len(GENRES), n_books)
    rows = [(u, b, int(rng.integers(1, 6))) for u in users for b in rng.choice(books, per_user, replace=False)]
    pd.DataFrame(rows, columns=["user_id", "book_id", "rating"]).to_csv(root / "ratings.csv", index=False)
    meta = pd.DataFrame({c: [""] * n_books for c in BOOKS_HEADER})
    meta["book_id"], meta["goodreads_book_id"] = books, goodreads
    meta["best_book_id"], meta["work_id"] = goodreads, goodreads + 1
    meta["authors"] = [AUTHORS[i % len(AUTHORS)] for i in range(n_books)]
    meta["title"] = [f'"Cien años", vol. {b} (Série {GENRES[g]}, #{b})' for b, g in zip(books, genre)]
    meta["average_rating"] = 4.1
    meta.to_csv(root / "books.csv", index=False, encoding="utf-8")
    tag_names = ["to-read", "favorites"] + GENRES + [f"g{g}" for g in goodreads] + ["unused-tag"]
    pd.DataFrame({"tag_id": np.arange(len(tag_names)) * 3, "tag_name": tag_names}).to_csv(
        root / "tags.csv", index=False
    )
    tag_id = {name: 3 * i for i, name in enumerate(tag_names)}
    bt = []
    for g, k in zip(goodreads, genre):
        bt += [(g, tag_id["to-read"], 9000), (g, tag_id[GENRES[k]], 500), (g, tag_id[f"g{g}"], 40)]
        bt += [(g, tag_id["favorites"], 300)] if g % 2 else []
    pd.DataFrame(bt, columns=["goodreads_book_id", "tag_id", "count"]).sort_values(
        ["goodreads_book_id", "count"], ascending=[True, False]
    ).to_csv(root / "book_tags.csv", index=False)
    return {"ratings": rows, "books": books, "goodreads": goodreads, "genre": genre}


def py2(value) -> str:
    """A value as Python 2's repr writes it (u'' strings with escapes), as in the UCSD Steam files."""
    if isinstance(value, str):
        return "u" + ascii(value)
    if isinstance(value, list):
        return "[" + ", ".join(py2(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py2(k)}: {py2(v)}" for k, v in value.items()) + "}"
    return repr(value)


STEAM_USERS = [
    "Zoë",
    "Chaos Syren",
    "76561197970982479",
    "ᴅᴀʀᴋ",
    "O'Brien, Pat",
    'user "q"',
    "Łukasz",
    "xX_N00b_Xx",
    "Ayşe",
    "Mañana",
    "NA",
    "None",
    "null",
]  # the last three: pandas NA strings


def marker(user: str, game: str) -> str:
    return f"mk{STEAM_USERS.index(user)}x{game}end"


def write_steam(root: Path, n_games: int = 24, per_user: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    games = [str(10 + 1000 * i + (i > n_games // 2) * 7) for i in range(n_games)]  # app ids with gaps
    reviews = []
    for u in STEAM_USERS:
        for g in rng.choice(games, per_user, replace=False):
            r = {
                "username": u,
                "hours": float(rng.integers(1, 500)) / 10,
                "products": 12,
                "product_id": str(g),
                "page_order": 0,
                "date": f"2017-0{rng.integers(1, 10)}-1{rng.integers(0, 10)}",
                "text": f'Très bon jeu, "{marker(u, g)}"\nwould play again, 10/10',
                "early_access": False,
                "page": 1,
            }
            if rng.random() < 0.3:
                r["found_funny"] = 1
            reviews.append(r)
    reviews.append(
        {
            "username": STEAM_USERS[0],
            "product_id": "999999",
            "date": "2016-01-01",
            "text": "no metadata",
            "hours": 1.0,
            "early_access": True,
            "page": 2,
            "page_order": 1,
            "products": 3,
        }
    )
    with gzip.open(root / "steam_reviews.json.gz", "wt", encoding="utf-8") as f:
        for i, r in enumerate(reviews):
            f.write((py2(r) if i % 2 else repr(r)) + "\n")  # Python 2 and 3 literal styles
    metas = []
    for i, g in enumerate(games + ["777"]):  # 777: a game nobody reviewed
        m = {
            "publisher": "Kotoshiro",
            "genres": ["Action", "Indie"] if i % 2 else ["Simulation"],
            "app_name": f"App {g}",
            "title": f"Jeu № {g}: l'été",
            "url": f"http://store.steampowered.com/app/{g}/",
            "release_date": "2018-01-04",
            "tags": ["Strategy", f"tag{g}"],
            "discount_price": 4.49,
            "reviews_url": f"http://steamcommunity.com/app/{g}/reviews/?browsefilter=mostrecent&p=1",
            "specs": ["Single-player"],
            "price": 4.99,
            "early_access": False,
            "id": g,
            "developer": "Kotoshiro",
            "sentiment": "Mostly Positive",
            "metascore": 80,
        }
        if i == 3:
            del m["title"]  # a few games have only app_name
        metas.append(m)
    metas.insert(5, {"url": "http://store.steampowered.com/", "app_name": "no id", "tags": ["x"]})  # no id
    with gzip.open(root / "steam_games.json.gz", "wt", encoding="utf-8") as f:
        for m in metas:
            f.write(py2(m) + "\n")
    return {"reviews": reviews, "games": games}


AMAZON_USERS = [f"A{n:03d}XYZ" for n in (3, 7, 8, 15, 42, 99, 100, 512)]


def write_amazon_2018(root: Path, cat: str = "All_Beauty", n_items: int = 16, per_user: int = 7, seed: int = 0) -> dict:
    """`categoryFilesSmall/<cat>_5.json.gz` and `metaFiles2/meta_<cat>.json.gz` as in Amazon Review Data 2018:
    one JSON object per line (the metadata with one Python-literal line too). Each review's text holds a marker
    `mk<user>x<asin>end`; the metadata lists a product nobody reviewed and repeats one asin."""
    import json

    rng = np.random.default_rng(seed)
    (root / "categoryFilesSmall").mkdir(parents=True, exist_ok=True)
    (root / "metaFiles2").mkdir(parents=True, exist_ok=True)
    asins = [f"B00{i * 37:05d}X" for i in range(n_items)]
    reviews = []
    for u in AMAZON_USERS:
        for a in rng.choice(asins, per_user, replace=False):
            reviews.append(
                {
                    "overall": float(rng.integers(1, 6)),
                    "verified": True,
                    "reviewTime": "09 13, 2009",
                    "reviewerID": u,
                    "asin": str(a),
                    "style": {"Size:": " 7.1 oz"},
                    "reviewerName": 'Zoë "Z" Ñ',
                    "reviewText": f"Crème très douce, mk{u}x{a}end",
                    "summary": "Five Stars ★",
                    "unixReviewTime": int(1252800000 + rng.integers(0, 1e8)),
                    **({"vote": "2"} if rng.random() < 0.3 else {}),
                }
            )
    with gzip.open(root / "categoryFilesSmall" / f"{cat}_5.json.gz", "wt", encoding="utf-8") as f:
        for r in reviews:
            f.write(json.dumps(r) + "\n")
    metas = [
        {
            "category": ["All Beauty", f"Shelf {i % 3}"],
            "tech1": "",
            "description": [f"Sérum n°{i}.", "Vegan."],
            "fit": "",
            "title": f"Crème {a} – 50 ml",
            "also_buy": [],
            "image": [],
            "tech2": "",
            "brand": "L'Oréal" if i % 2 else "",
            "feature": [],
            "rank": "1,633,549 in Beauty & Personal Care (",
            "also_view": [],
            "details": {},
            "main_cat": "All Beauty",
            "similar_item": "",
            "date": "",
            "price": "$9.99",
            "asin": a,
        }
        for i, a in enumerate(asins + ["B0UNREVIEWED"])
    ]
    metas.append({**metas[0], "title": "a repeated asin: the first row wins"})
    with gzip.open(root / "metaFiles2" / f"meta_{cat}.json.gz", "wt", encoding="utf-8") as f:
        for i, m in enumerate(metas):
            f.write((repr(m) if i == 2 else json.dumps(m)) + "\n")
    return {"reviews": reviews, "asins": asins}
