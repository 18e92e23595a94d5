"""Prompts of the four-step chain of thought that builds K profiles per entity (paper sec. 2.3.1, appendix A.1).

    P = F4 ∘ F3 ∘ F2 ∘ F1 (x, r)          (paper eq. 4)
    F1  original profile (OP) from the interaction history and side text (RLMRec-style, as the paper says)
    F2  positive and negative aspects, extracted from the OP and the source text
    F3  latent preferences behind the OP and the aspects
    F4  K-1 new profiles (NPs) that differ from the OP, and from each other, in wording and structure

Every step answers one JSON object (`SCHEMAS`), parsed and validated by `parse_answer`; an invalid answer gets
the `repair_messages` follow-up. Domain templates (books, businesses, games, movies, generic) only change the
nouns. `PROMPT_VERSION` is part of every cache key: change it whenever a prompt or schema changes, so cached
answers of the old prompts are never reused for the new ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..data.interactions import DataError, Interactions

PROMPT_VERSION = "proex-cot-v1"
STEPS = ("F1", "F2", "F3", "F4")
SIDES = ("user", "item")


@dataclass(frozen=True)
class Domain:
    """Nouns of one domain: who interacts (user), with what (item), and how (verb, past tense)."""

    user: str
    item: str
    verb: str


DOMAINS = {
    "books": Domain("reader", "book", "read"),
    "businesses": Domain("customer", "business", "visited"),
    "games": Domain("player", "game", "played"),
    "movies": Domain("viewer", "movie", "watched"),
    "generic": Domain("user", "item", "interacted with"),
}


@dataclass
class EntityInput:
    """What the LLM sees about one entity. fields: its own text (column -> text); history: for a user the
    titles of the items it interacted with in the *training* split, for an item snippets of a few of its users."""

    side: str
    id: int
    fields: dict = field(default_factory=dict)
    history: list = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(str(v).strip() for v in self.fields.values()) and not self.history


SCHEMAS = {
    "F1": '{"summarization": "<the profile, 80-150 words>", "reasoning": "<one or two sentences>"}',
    "F2": '{"positive_aspects": ["<aspect>", ...], "negative_aspects": ["<aspect>", ...], "reasoning": "<...>"}',
    "F3": '{"latent_preferences": ["<preference>", ...], "reasoning": "<...>"}',
    "F4": '{"profiles": ["<new profile 1>", ...], "reasoning": "<...>"}',
}


def json_schema(step: str) -> dict:
    """The strict JSON schema of a step's answer (`SCHEMAS` as a structured-output schema). The number of F4
    profiles and their distinctness are not expressible there for every endpoint: `parse_answer` checks them."""
    strings = {"type": "array", "items": {"type": "string"}}
    props = {
        "F1": {"summarization": {"type": "string"}},
        "F2": {"positive_aspects": strings, "negative_aspects": strings},
        "F3": {"latent_preferences": strings},
        "F4": {"profiles": strings},
    }[step]
    props = {**props, "reasoning": {"type": "string"}}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


_USER = {
    "F1": "You will serve as an assistant to help me determine which types of {items} a {user} is likely to enjoy. "
    "I will give you the titles of {items} the {user} has {verb} and the {user}'s own text (such as reviews). "
    "Summarise the {user}'s preferences as an original profile: the kinds of {items} they enjoy and dislike.",
    "F2": "You analyse a {user}'s original profile and the source information it came from. Identify the positive "
    "aspects (what the {user} liked in the {items} they {verb}) and the negative aspects (what they disliked "
    "or avoid). The original profile may contain wrong or empty statements: rely on the evidence.",
    "F3": "From a {user}'s original profile and their positive and negative aspects, infer the latent preferences: "
    "underlying tastes, motivations and habits that are not stated explicitly but explain the evidence.",
    "F4": "Using the original profile, the aspects and the latent preferences of a {user}, write exactly {n} new "
    "profiles of this {user}. Each describes the {user} from a different perspective. Each must differ "
    "entirely from the original profile and from the other new profiles in wording and sentence structure "
    "(different vocabulary, different syntax), while staying faithful to the {user}'s preferences.",
}
_ITEM = {
    "F1": "You will serve as an assistant to help me determine which types of {users} would enjoy a {item}. I will "
    "give you the {item}'s own text (such as title and description) and snippets from {users} who {verb} it. "
    "Summarise what the {item} offers and the kinds of {users} it appeals to as an original profile.",
    "F2": "You analyse a {item}'s original profile and the source information it came from. Identify the positive "
    "aspects ({users} appreciate) and the negative aspects ({users} criticise or that limit its appeal). The "
    "original profile may contain wrong or empty statements: rely on the evidence.",
    "F3": "From a {item}'s original profile and its positive and negative aspects, infer its latent appeal: "
    "underlying qualities, moods and audiences that are not stated explicitly but explain the evidence.",
    "F4": "Using the original profile, the aspects and the latent appeal of a {item}, write exactly {n} new "
    "profiles of this {item}. Each describes the {item} from a different perspective. Each must differ "
    "entirely from the original profile and from the other new profiles in wording and sentence structure "
    "(different vocabulary, different syntax), while staying faithful to what the {item} is.",
}


def system_prompt(step: str, side: str, domain: str, k: int) -> str:
    """The system prompt pi_step of the paper for one side and domain; asks for `SCHEMAS[step]` only."""
    if step not in STEPS or side not in SIDES:
        raise ValueError(f"unknown step {step!r} or side {side!r}; steps {STEPS}, sides {SIDES}")
    d = DOMAINS[domain]
    text = (_USER if side == "user" else _ITEM)[step].format(
        user=d.user, users=d.user + "s", item=d.item, items=d.item + "s", verb=d.verb, n=k - 1
    )
    return f"{text}\nAnswer with only a JSON object, no other text, of this form:\n{SCHEMAS[step]}" + (
        f'\nThe "profiles" list must hold exactly {k - 1} strings.' if step == "F4" else ""
    )


def _texts(df, idx: int) -> dict:
    if df is None or idx not in df.index:
        return {}
    row = df.loc[idx]
    return {str(c): str(v) for c, v in row.items() if isinstance(v, str) and v.strip()}


def _clip(text: str, n: int) -> str:
    """At most n characters, cut at a word boundary."""
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0]


def entity_inputs(inter: Interactions, side: str, cfg) -> list[EntityInput]:
    """EntityInput per user or item (first `cfg.limit` if set). Users: own text + titles of *training* items;
    items: own text + snippets of a few training users. DataError if the dataset has no text at all."""
    if inter.user_text is None and inter.item_text is None:
        raise DataError(
            f"{inter.source or inter.name}: no user_text or item_text; LLM profiles need text (titles, "
            "descriptions, reviews). Load the interactions with their text tables (proex.data.tables) "
            "or use the synthetic dataset."
        )
    train = inter.train.tocsr() if side == "user" else inter.train.tocsc()
    n = inter.n_users if side == "user" else inter.n_items
    title_col = None
    if inter.item_text is not None and len(inter.item_text.columns):
        title_col = "title" if "title" in inter.item_text.columns else inter.item_text.columns[0]
    out = []
    for idx in range(min(n, cfg.limit) if cfg.limit else n):
        nbrs = train.indices[train.indptr[idx] : train.indptr[idx + 1]]
        if side == "user":
            fields = _texts(inter.user_text, idx)
            hist = [
                _clip(t, 150) for i in nbrs[: cfg.max_history] if (t := _texts(inter.item_text, int(i)).get(title_col))
            ]
        else:
            fields = _texts(inter.item_text, idx)
            hist = [_clip(" ".join(_texts(inter.user_text, int(u)).values()), 200) for u in nbrs[: cfg.max_snippets]]
            hist = [h for h in hist if h]
        out.append(EntityInput(side, idx, fields, hist))
    return out


def render_input(ent: EntityInput, max_chars: int) -> dict:
    """The entity's evidence as a JSON-able dict, history cut to fit `max_chars` characters in all."""
    fields = {k: str(v)[: max_chars // 2] for k, v in ent.fields.items() if str(v).strip()}
    budget = max(0, max_chars - sum(len(v) for v in fields.values()))
    history, used = [], 0
    for h in ent.history:
        if used + len(h) > budget:
            break
        history.append(h)
        used += len(h) + 4
    key = "interacted_items" if ent.side == "user" else "user_snippets"
    return {"id": ent.id, **fields, key: history}


def build_messages(step: str, ent: EntityInput, outputs: dict, domain: str, k: int, max_chars: int) -> list[dict]:
    """Chat messages of `step` for `ent`, given the parsed answers of the earlier steps in `outputs`."""
    source = render_input(ent, max_chars)
    if step == "F1":
        body = source
    elif step == "F2":
        body = {"source": source, "original_profile": outputs["F1"]["summarization"]}
    elif step == "F3":
        body = {
            "original_profile": outputs["F1"]["summarization"],
            "positive_aspects": outputs["F2"]["positive_aspects"],
            "negative_aspects": outputs["F2"]["negative_aspects"],
        }
    else:
        body = {
            "original_profile": outputs["F1"]["summarization"],
            "positive_aspects": outputs["F2"]["positive_aspects"],
            "negative_aspects": outputs["F2"]["negative_aspects"],
            "latent_preferences": outputs["F3"]["latent_preferences"],
        }
    return [
        {"role": "system", "content": system_prompt(step, ent.side, domain, k)},
        {"role": "user", "content": json.dumps(body, ensure_ascii=False)},
    ]


def repair_messages(messages: list[dict], answer: str, problem: str, step: str, k: int) -> list[dict]:
    """The conversation plus the invalid answer and a request to fix `problem` (one repair round)."""
    ask = f"Your answer is invalid: {problem}. Answer again with only a JSON object of this form:\n{SCHEMAS[step]}" + (
        f'\nThe "profiles" list must hold exactly {k - 1} distinct strings, each different from the original profile.'
        if step == "F4"
        else ""
    )
    return messages + [{"role": "assistant", "content": answer[:4000]}, {"role": "user", "content": ask}]


def normalise(text: str) -> str:
    """Lower case, letters and digits only, single spaces: the text equality used for distinctness."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def extract_json(text: str) -> dict:
    """The JSON object in an answer, tolerating code fences and text around it; ValueError if none."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the answer")
    obj = json.loads(text[start : end + 1])
    if not isinstance(obj, dict):
        raise ValueError("the answer is not a JSON object")
    return obj


def _strings(obj: dict, key: str, min_len: int) -> list[str]:
    value = obj.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'"{key}" must be a list of strings')
    value = [v.strip() for v in value if v.strip()]
    if len(value) < min_len:
        raise ValueError(f'"{key}" must hold at least {min_len} non-empty string(s)')
    return value


def parse_answer(step: str, text: str, k: int, original: str | None = None) -> tuple[dict | None, str | None]:
    """(parsed answer, None) if `text` is a valid answer of `step`, else (None, what is wrong).

    F4: exactly k-1 non-empty profiles, distinct from each other and from `original` after `normalise`.
    """
    try:
        obj = extract_json(text or "")
        reasoning = obj.get("reasoning", "")
        out: dict = {"reasoning": reasoning if isinstance(reasoning, str) else json.dumps(reasoning)}
        if step == "F1":
            summary = obj.get("summarization")
            if not isinstance(summary, str) or not summary.strip():
                raise ValueError('"summarization" must be a non-empty string')
            out["summarization"] = summary.strip()
        elif step == "F2":
            out["positive_aspects"] = _strings(obj, "positive_aspects", 1)
            out["negative_aspects"] = _strings(obj, "negative_aspects", 0)
        elif step == "F3":
            out["latent_preferences"] = _strings(obj, "latent_preferences", 1)
        else:
            profiles = obj.get("profiles")
            if not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles):
                raise ValueError('"profiles" must be a list of strings')
            profiles = [p.strip() for p in profiles]
            if len(profiles) != k - 1:
                raise ValueError(f'"profiles" holds {len(profiles)} profiles, expected exactly {k - 1}')
            if not all(profiles):
                raise ValueError("a new profile is empty")
            norms = [normalise(p) for p in profiles]
            if len(set(norms)) != len(norms):
                raise ValueError("two new profiles are identical")
            if original is not None and normalise(original) in norms:
                raise ValueError("a new profile repeats the original profile")
            out["profiles"] = profiles
        return out, None
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        return None, str(exc)
