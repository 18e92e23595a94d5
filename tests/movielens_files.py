"""Small generated files in the exact MovieLens formats (ratings.csv, movies.csv, tags.csv) for tests.

    ratings.csv  userId,movieId,rating,timestamp     users 1, 4, 7, ... and movies 10, 13, ... (ids with gaps)
    movies.csv   movieId,title,genres                 non-ASCII titles, 'A|B' genres; one row for a movie nobody
                                                      rated (unknown id) and no row for one rated movie
    tags.csv     userId,movieId,tag,timestamp         one tag per (user, movie) pair for every rated pair; each
                                                      tag holds a marker `mk<user>x<movie>` naming its pair

Users prefer one or two of six genres, so the interactions and the text share a signal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

GENRES = ["Comedy", "Drama", "Sci-Fi", "Horror", "Romance", "Animation"]
WORDS = {
    "Comedy": "funny",
    "Drama": "moving",
    "Sci-Fi": "spaceships",
    "Horror": "scary",
    "Romance": "romantic",
    "Animation": "cartoon",
}
STEMS = ["Amélie", "Crème brûlée", "東京物語", "Ça ira", "Smörgåsbord", "Mañana", "Łódź nights", "Zoë"]
UNKNOWN_MOVIE = 99999


def marker(user, movie) -> str:
    return f"mk{user}x{movie}"


def write_movielens(root: Path, n_users: int = 60, n_movies: int = 90, per_user: int = 24, seed: int = 0) -> dict:
    """Write the three files under `root`; returns their paths and the id of the rated movie without text."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    users = 1 + 3 * np.arange(n_users)
    movies = 10 + 3 * np.arange(n_movies) + (np.arange(n_movies) > n_movies // 2) * 1000  # a big gap too
    genre_of = rng.integers(0, len(GENRES), n_movies)
    second = rng.integers(0, len(GENRES), n_movies)
    rows, tags = [], []
    for u in users:
        liked = rng.choice(len(GENRES), 2, replace=False)
        weight = np.where(np.isin(genre_of, liked), 8.0, 1.0)
        picks = rng.choice(n_movies, per_user, replace=False, p=weight / weight.sum())
        for j in picks:
            good = genre_of[j] in liked
            rating = float(rng.choice([4.0, 4.5, 5.0]) if good else rng.choice([1.0, 2.5, 3.5, 4.0]))
            ts = int(1_500_000_000 + rng.integers(0, 10**7))
            rows.append((int(u), int(movies[j]), rating, ts))
            tags.append((int(u), int(movies[j]), f"{WORDS[GENRES[genre_of[j]]]} {marker(u, movies[j])}", ts + 5))
    ratings = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    no_text = int(movies[3])
    titles = [
        (
            int(m),
            f"{STEMS[j % len(STEMS)]} {j} ({1990 + j % 30})",
            "|".join(dict.fromkeys([GENRES[genre_of[j]], GENRES[second[j]]])),
        )
        for j, m in enumerate(movies)
        if int(m) != no_text
    ]
    titles.append((UNKNOWN_MOVIE, "Nobody rated this (2020)", "Documentary"))
    paths = {"ratings": root / "ratings.csv", "movies": root / "movies.csv", "tags": root / "tags.csv"}
    ratings.to_csv(paths["ratings"], index=False)
    pd.DataFrame(titles, columns=["movieId", "title", "genres"]).to_csv(paths["movies"], index=False, encoding="utf-8")
    pd.DataFrame(tags, columns=["userId", "movieId", "tag", "timestamp"]).to_csv(paths["tags"], index=False)
    return {**paths, "movie_without_text": no_text}


CARD = """\
# MovieLens-style files, no renaming: the card names the columns
interactions: ratings.csv
user_col: userId
item_col: movieId
rating_col: rating
timestamp_col: timestamp
item_text: movies.csv
item_text_id: movieId
interaction_text: tags.csv
interaction_text_cols: [tag]
text_unknown_ids: ignore
"""
