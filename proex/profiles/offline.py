"""An offline profiler that needs no LLM: K facet profiles per entity from the dataset's own text.

Why: the whole profile -> embedding -> ProfileBank -> ProEx pipeline must run with no key and no network
(tests, CI, laptops, datasets whose owners cannot send text to an API). It imitates the *structure* of the
paper's four steps (sec. 2.3.1) with counting instead of reasoning, and says so in every output: each record
has `"profiler": "offline (no LLM)"` and the summary and the bank manifest name it as such.

From TF-IDF over the same evidence the LLM would see (`prompts.entity_inputs`: own text + train history):
    profile 0   original summary: counts, example titles, the most characteristic words (~ F1)
    profile 1   liked vs avoided: its top words vs popular corpus themes absent from its text (~ F2)
    profile 2   latent co-occurring themes: words that co-occur with its top words elsewhere but never in
                its own text (~ F3)
    profile 3+  rephrased facets: lower-ranked words in other sentence templates (~ F4's rewording)
Deterministic: the same dataset gives byte-identical files. An entity with no text and no interactions gets
placeholder profiles (distinct per facet) and is counted under `no_input` in the summary.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..data.interactions import Interactions
from .prompts import DOMAINS, SIDES, entity_inputs

LABEL = "offline (no LLM)"
OFFLINE_VERSION = "offline-facets-v1"
STOP = set("the and for with that this was are but not you have his her they them their its from had has have "
           "were been would could about into than then there what when which who will your our out all any can "
           "one two very just more most some such also only other over own same too each".split())
_TEMPLATES = [
    "Another angle: {a}, {b} and {c} define this {noun}, with {d} in the background.",
    "Key words here are {a} and {b}; {c} and {d} complete the picture of this {noun}.",
    "If one had to sum up this {noun} in themes: {a}, then {b}, then {c}, {d}.",
    "Less obvious sides of this {noun}: {d}, {c}, {b} and {a}.",
]


@dataclass
class _Inputs:  # the knobs entity_inputs reads
    limit: int = 0
    max_history: int = 30
    max_snippets: int = 5


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z][a-z_0-9]{2,}", text.lower()) if w not in STOP]


def _pick(ranked: list[str], n: int, fill: str = "nothing specific") -> list[str]:
    out = ranked[:n]
    return out + [fill] * (n - len(out))


def offline_records(inter: Interactions, side: str, k: int = 4, domain: str = "generic", limit: int = 0) -> list[dict]:
    """K offline profiles for each user or item of `inter` (see module doc), as profiles.jsonl records."""
    ents = entity_inputs(inter, side, _Inputs(limit=limit))
    docs = [" ".join(list(e.fields.values()) + list(e.history)) for e in ents]
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for r, d in enumerate(docs):
        for w in _words(d):
            rows.append(r)
            cols.append(vocab.setdefault(w, len(vocab)))
    words = np.array(sorted(vocab, key=vocab.get), dtype=object)
    tf = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(docs), max(1, len(vocab))))
    tf.sum_duplicates()
    df = np.asarray((tf > 0).sum(0)).ravel()
    idf = np.log((1 + len(docs)) / (1 + df)) + 1
    common = df > 0.5 * len(docs)  # filler words every document uses carry no facet
    binary = (tf > 0).astype(np.float32).tocsc()
    cooc = (binary.T @ binary).tocsr()  # [V, V] document co-occurrence
    popular = [words[i] for i in np.lexsort((words.astype(str), -df)) if not common[i]][:30] if vocab else []
    d = DOMAINS[domain]
    noun = d.user if side == "user" else d.item
    out = []
    for e, r in zip(ents, range(len(docs))):
        row = tf.getrow(r)
        score = {int(c): v * idf[c] for c, v in zip(row.indices, row.data) if not common[c]}
        ranked = [str(words[c]) for c in sorted(score, key=lambda c: (-score[c], words[c]))]
        if not ranked:
            profiles = [f"Offline profile (no LLM) of {side} {e.id}: no usable text, facet {i + 1} of {k}."
                        for i in range(k)]
            out.append({"side": side, "id": e.id, "original": profiles[0], "new": profiles[1:], "profiler": LABEL,
                        "no_input": True, "reasoning": {"facets": "no text and no interactions"}})
            continue
        top = [vocab[w] for w in ranked[:5]]
        own = set(row.indices)
        co = np.asarray(cooc[top].sum(0)).ravel() / np.maximum(df, 1)
        latent = [str(words[c]) for c in np.lexsort((words.astype(str), -co)) if c not in own and not common[c]
                  and co[c] > 0][:4]
        avoided = [w for w in popular if w not in set(ranked)][:3]
        examples = "; ".join(h[:60] for h in e.history[:3]) or "none listed"
        what = (f"{d.verb} {len(e.history)} {d.item}s such as: {examples}" if side == "user"
                else f"has {len(e.history)} {d.user} snippets")
        original = (f"Offline profile (no LLM). This {noun} {what}. Most characteristic themes: "
                    f"{', '.join(ranked[:5])}.")
        liked = (f"Favoured aspects: {', '.join(_pick(ranked, 3))}. "
                 f"{'Rarely engages with' if side == 'user' else 'Rarely associated with'} "
                 f"{', '.join(_pick(avoided, 2, 'mainstream themes'))}.")
        hidden = (f"Latent themes that tend to co-occur with its interests: "
                  f"{', '.join(_pick(latent, 3, 'related themes'))}.")
        profiles = [original, liked, hidden]
        for i in range(3, k):
            lo = 5 + 4 * (i - 3)
            a, b, c, dd = _pick(ranked[lo:] or ranked, 4)
            profiles.append(_TEMPLATES[(i - 3) % len(_TEMPLATES)].format(a=a, b=b, c=c, d=dd, noun=noun)
                            + (f" (facet {i})" if i - 3 >= len(_TEMPLATES) else ""))
        profiles = profiles[:k]
        out.append({"side": side, "id": e.id, "original": profiles[0], "new": profiles[1:], "profiler": LABEL,
                    "positive_aspects": ranked[:3], "negative_aspects": avoided, "latent_preferences": latent,
                    "reasoning": {"facets": "tf-idf top words, popular-but-absent words, co-occurring words, "
                                            "lower-ranked words rephrased"}})
    return out


def write_offline_profiles(inter: Interactions, out_dir: str, k: int = 4, domain: str = "generic",
                           sides: tuple[str, ...] = SIDES, limit: int = 0) -> dict:
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
    summary = {"status": "done", "profiler": LABEL, "llm": f"none — {LABEL}", "prompt_version": OFFLINE_VERSION,
               "k": k, "domain": domain, "dataset": inter.name, "n_users": inter.n_users, "n_items": inter.n_items,
               "sides": per_side, "calls": {"sent": 0}, "cost_usd": {"this_run": 0.0},
               "wall_s": round(time.time() - t0, 2)}
    _write_lines(Path(out_dir) / "summary.json", [summary], indent=1)
    return summary
