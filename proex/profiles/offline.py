"""An offline profiler that needs no LLM: K readable profiles per entity, each a different view of its data.

Why: the profile -> embedding -> ProfileBank -> ProEx pipeline must run with no key and no network (tests, CI,
laptops, data whose owners cannot send text to an API). Where the paper's LLM writes an original profile and
K-1 new ones that describe the entity from other perspectives (sec. 2.3.1), this profiler quotes the data
itself, so nothing in a profile is invented and every sentence is about the entity. It says so in every output:
each record has `"profiler": "offline (no LLM)"`, and the summary and the bank manifest name it.

The views, in the order they are used (empty ones are skipped; profile 0 is the first that is not empty):
    item   own text      its title and other text columns ("Toy Story (1995). Genres: Adventure, Animation.")
           categories    its list-like columns alone (genres, categories, tags of the item table)
           interactions  what users wrote about it (tags, reviews) in TRAINING interactions only
           co-liked      titles of the items its training users liked most (cosine of co-occurrence)
           audience      the categories its training users like beyond its own
           who liked it  the first words of its training users' own text (user table)
           more co-liked the next co-liked titles
    user   own text      its own text columns, if the user table has any
           history       titles of its most popular training items
           categories    its favourite categories over its training items, with counts
           interactions  what it wrote (tags, reviews) in TRAINING interactions only
           liked texts   the first words of its most popular training items' descriptions
           niche         titles of its least popular training items
           more history  further titles, until K profiles exist
Interaction text reaches the profiler only through `user_text`/`item_text`, which `proex.data.cards` fills from
training pairs only; histories come from the training split. Deterministic: the same dataset gives identical
files. An entity with no text and no interactions gets distinct placeholder profiles, counted as `no_input`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.interactions import DataError, Interactions
from .prompts import DOMAINS, SIDES

LABEL = "offline (no LLM)"
OFFLINE_VERSION = "offline-views-v2"
_LIST_NAME = re.compile(r"genre|categor|tag|keyword|label|topic", re.I)
_SPLIT = re.compile(r"\s*[|;]\s*|\s*,\s*")
_TITLE_NAMES = ("title", "name", "product_title", "item_name")


def _clip(text: str, n: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + "..."


def _first_words(text: str, n: int = 12) -> str:
    words = str(text).split()
    return " ".join(words[:n]).rstrip(".,;:") + ("..." if len(words) > n else "")


def _listing(values: list[str]) -> str:
    return "; ".join(values)


class _Views:
    """Everything the views need, computed once per dataset: titles, categories, popularity, co-likes."""

    def __init__(self, inter: Interactions, domain: str):
        self.d = DOMAINS[domain]
        self.train = inter.train.tocsr().astype(np.float32)
        self.by_item = self.train.T.tocsr()
        self.pop = np.asarray(self.train.sum(0)).ravel()
        inter_cols = inter.extras.get("interaction_text_columns", {})
        self.item_own, self.item_inter = _split_columns(inter.item_text, inter_cols.get("item", []))
        self.user_own, self.user_inter = _split_columns(inter.user_text, inter_cols.get("user", []))
        self.title_col = _title_column(self.item_own)
        n_items = inter.n_items
        self.titles = [""] * n_items
        if self.title_col is not None:
            self.titles = [_clip(t) for t in self.item_own[self.title_col].reindex(range(n_items), fill_value="")]
        self.list_cols = [
            c
            for c in (self.item_own.columns if self.item_own is not None else [])
            if c != self.title_col and _is_list_column(self.item_own[c])
        ]
        self.cats, self.item_cats = _categories(self.item_own, self.list_cols, n_items)  # names, [I, C] binary
        self.user_cats = (self.train @ self.item_cats).tocsr()  # [U, C] counts over training items
        self.audience = (self.by_item @ self.user_cats).tocsr()  # [I, C] categories of its users' items
        self._co = None

    def co_liked(self, item: int, n: int = 5) -> list[int]:
        """The n items most co-liked with `item` by training users (cosine of co-occurrence counts)."""
        if self._co is None:
            self._co = (self.by_item @ self.train).tocsr()  # [I, I] co-occurrence counts
        row = self._co.getrow(item)
        cols, counts = row.indices, row.data
        keep = cols != item
        cols, counts = cols[keep], counts[keep]
        if not len(cols):
            return []
        score = counts / np.sqrt(np.maximum(self.pop[cols], 1) * max(self.pop[item], 1))
        order = np.lexsort((cols, -score))[:n]
        return [int(c) for c in cols[order]]

    def item_views(self, i: int) -> list[str]:
        d, views = self.d, []
        own = _own_text(self.item_own, i, self.title_col)
        views.append(own)
        cats = [
            c
            for col, text in _texts(self.item_own, i)
            if col in self.list_cols
            for c in _SPLIT.split(text)
            if c.strip() and not c.startswith("(")
        ]  # in the file's order
        views.append(f"A {d.item} in {', '.join(cats)}." if cats else "")
        for col, text in _texts(self.item_inter, i):
            views.append(f"What {d.user}s wrote about it ({col}): {_clip(text.replace(chr(10), ', '), 300)}.")
        co = [self.titles[j] for j in self.co_liked(i, 10) if self.titles[j]]
        views.append(f"{d.user.capitalize()}s who {d.verb} it also {d.verb}: {_listing(co[:5])}." if co else "")
        aud = self.audience.getrow(i)
        mine = set(self.item_cats.getrow(i).indices)
        top = [self.cats[c] for c in aud.indices[np.lexsort((aud.indices, -aud.data))] if c not in mine][:4]
        views.append(f"Its {d.user}s also like {', '.join(top)} {d.item}s." if top else "")
        users = self.by_item.indices[self.by_item.indptr[i] : self.by_item.indptr[i + 1]]
        said = [_first_words(t) for u in users[:3] for _, t in _texts(self.user_own, int(u))][:3]
        views.append(f"What its {d.user}s say about themselves: {_listing(said)}." if said else "")
        views.append(f"Also popular with its {d.user}s: {_listing(co[5:])}." if co[5:] else "")
        return views

    def user_views(self, u: int) -> list[str]:
        d, views = self.d, []
        items = self.train.indices[self.train.indptr[u] : self.train.indptr[u + 1]]
        items = items[np.lexsort((items, -self.pop[items]))]  # most popular first
        titled = [self.titles[j] for j in items if self.titles[j]]
        views.append(_own_text(self.user_own, u, None))
        views.append(
            f"A {d.user} who {d.verb} {len(items)} {d.item}s, among them {_listing(titled[:5])}."
            if titled
            else (f"A {d.user} who {d.verb} {len(items)} {d.item}s." if len(items) else "")
        )
        row = self.user_cats.getrow(u)
        order = row.indices[np.lexsort((row.indices, -row.data))][:5]
        counts = dict(zip(row.indices, row.data))
        views.append(
            f"Favourite {d.item} categories: " + ", ".join(f"{self.cats[c]} ({int(counts[c])})" for c in order) + "."
            if len(order)
            else ""
        )
        for col, text in _texts(self.user_inter, u):
            views.append(f"What this {d.user} wrote ({col}): {_clip(text.replace(chr(10), ', '), 300)}.")
        about = [
            _first_words(t)
            for j in items[:3]
            for c, t in _texts(self.item_own, int(j))
            if c != self.title_col and c not in self.list_cols
        ][:3]
        views.append(f"About the {d.item}s it {d.verb}: {_listing(about)}." if about else "")
        niche = titled[5:][-5:][::-1]
        views.append(f"Less common picks: {_listing(niche)}." if niche else "")
        rest = titled[5:-5] if len(titled) > 10 else []
        for start in range(0, len(rest), 5):
            views.append(f"Also {d.verb}: {_listing(rest[start : start + 5])}.")
        return views


def _split_columns(df: pd.DataFrame | None, inter_cols: list[str]):
    """(own text columns, interaction text columns) of a text table; None when absent."""
    if df is None or not len(df.columns):
        return None, None
    inter = [c for c in df.columns if c in inter_cols]
    own = [c for c in df.columns if c not in inter_cols]
    return (df[own] if own else None), (df[inter] if inter else None)


def _title_column(df: pd.DataFrame | None) -> str | None:
    if df is None:
        return None
    lower = {str(c).lower(): c for c in df.columns}
    return next((lower[n] for n in _TITLE_NAMES if n in lower), df.columns[0])


def _is_list_column(col: pd.Series) -> bool:
    """A column of short category lists: named like one (genres, categories...) or mostly '|'-separated."""
    values = col[col.astype(str).str.strip() != ""].astype(str)
    if not len(values):
        return False
    return bool(_LIST_NAME.search(str(col.name))) or values.str.contains("|", regex=False).mean() > 0.3


def _categories(df: pd.DataFrame | None, cols: list[str], n: int) -> tuple[list[str], sp.csr_matrix]:
    """Category names and the binary item x category matrix [n, C] of the list columns."""
    rows, names, index = [], [], {}
    for col in cols:
        for i, text in df[col].reindex(range(n), fill_value="").items():
            for cat in _SPLIT.split(str(text)):
                cat = cat.strip()
                if cat and not cat.startswith("("):  # "(no genres listed)"
                    rows.append((i, index.setdefault(cat, len(index))))
    names = sorted(index, key=index.get)
    if not rows:
        return names, sp.csr_matrix((n, 0), dtype=np.float32)
    r, c = zip(*sorted(set(rows)))
    return names, sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, len(names)))


def _texts(df: pd.DataFrame | None, idx: int) -> list[tuple[str, str]]:
    if df is None or idx not in df.index:
        return []
    return [(str(c), str(v)) for c, v in df.loc[idx].items() if isinstance(v, str) and v.strip()]


def _own_text(df: pd.DataFrame | None, idx: int, title_col: str | None) -> str:
    """'Title. Col: value. Col2: value.' (list columns joined with commas); '' without text."""
    parts = []
    for col, text in _texts(df, idx):
        text = _clip(text, 400)
        if col == title_col:
            parts.insert(0, text.rstrip(".") + ".")
        else:
            value = ", ".join(p for p in _SPLIT.split(text) if p) if "|" in text else text
            parts.append(f"{col.replace('_', ' ').capitalize()}: {value.rstrip('.')}.")
    return " ".join(parts)


def _profiles(views: list[str], k: int, side: str, idx: int, noun: str) -> list[str]:
    """The first k distinct non-empty views; readable fillers when the data has fewer views than k."""
    out: list[str] = []
    for v in views:
        if v and v not in out:
            out.append(v)
    base = out[0] if out else ""
    while len(out) < k:
        out.append(
            f"No further evidence about this {noun} ({side} {idx}), view {len(out) + 1} of {k}."
            + (f" In short: {_clip(base, 120)}" if base else "")
        )
    return out[:k]


def offline_records(inter: Interactions, side: str, k: int = 4, domain: str = "generic", limit: int = 0) -> list[dict]:
    """K offline profiles for each user or item of `inter` (see module doc), as profiles.jsonl records."""
    if inter.user_text is None and inter.item_text is None:
        raise DataError(
            f"{inter.source or inter.name}: no user or item text; offline profiles quote the data's "
            "text (titles, categories, tags). Attach it with --item-text FILE / --user-text FILE / "
            "--interaction-text FILE (or a dataset card)."
        )
    views = _Views(inter, domain)
    n = inter.n_users if side == "user" else inter.n_items
    noun = views.d.user if side == "user" else views.d.item
    make = views.user_views if side == "user" else views.item_views
    out = []
    for idx in range(min(n, limit) if limit else n):
        found = make(idx)
        profiles = _profiles(found, k, side, idx, noun)
        rec = {
            "side": side,
            "id": idx,
            "original": profiles[0],
            "new": profiles[1:],
            "profiler": LABEL,
            "reasoning": {
                "facets": "own text, categories, training-interaction text, co-liked titles, "
                "audience categories (items); history, categories, text, niche (users)"
            },
        }
        if not any(found):
            rec["no_input"] = True
        out.append(rec)
    return out


def write_offline_profiles(
    inter: Interactions,
    out_dir: str,
    k: int = 4,
    domain: str = "generic",
    sides: tuple[str, ...] = SIDES,
    limit: int = 0,
) -> dict:
    """Write `<out_dir>/<side>/profiles.jsonl` and `summary.json` in the layout of the LLM pipeline."""
    from .pipeline import _write_lines  # the same atomic writer as the LLM outputs

    if k < 2:
        raise ValueError(f"k = {k}: the offline profiler writes the original plus at least one new profile")
    t0 = time.time()
    per_side = {}
    for side in sides:
        recs = offline_records(inter, side, k, domain, limit)
        _write_lines(Path(out_dir) / side / "profiles.jsonl", recs)
        per_side[side] = {"profiled": len(recs), "no_input": sum(bool(r.get("no_input")) for r in recs)}
    _write_lines(Path(out_dir) / "failures.jsonl", [])
    summary = {
        "status": "done",
        "profiler": LABEL,
        "llm": f"none — {LABEL}",
        "prompt_version": OFFLINE_VERSION,
        "k": k,
        "domain": domain,
        "dataset": inter.name,
        "n_users": inter.n_users,
        "n_items": inter.n_items,
        "sides": per_side,
        "calls": {"sent": 0},
        "cost_usd": {"this_run": 0.0},
        "wall_s": round(time.time() - t0, 2),
    }
    _write_lines(Path(out_dir) / "summary.json", [summary], indent=1)
    return summary
