"""The four-step chain of one entity against the call cache: what is cached is reused, what is missing is asked.

    profile_entity   F1 -> F2 -> F3 -> F4 for one entity, in order (paper sec. 2.3.1, eq. 4); each call looked
                     up in the cache first and stored there before it counts as done; an invalid answer gets up
                     to `cfg.repairs` repair calls
    Call             one chat call: its cache key, the messages, the seed and JSON schema it is sent with
    OnlineAnswerer   asks the LLM now (`client.LLMClient`): the online job, in process and on Ray
    DryAnswerer      answers nothing, counts what would be sent (`pipeline.estimate`)
    Deferred         raised by the Batch API path's answerer: the call goes into the next batch round

Attempts: an invalid answer is not final. When every round of a step (the first answer and its repairs) is
cached and still invalid, the step's next *attempt* asks again, under its own cache keys ("F2@2",
"F2@2.repair1"), so a rerun retries exactly the entities that failed that way and a paid answer is never
bought twice for the same attempt. One run completes at most one new attempt per step; attempt a is sent with
seed `cfg.seed + a - 1` (the same seed would give the same answer back).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .cache import call_key, input_hash
from .client import ProfileAPIError, estimate_tokens
from .prompts import PROMPT_VERSION, STEPS, EntityInput, build_messages, json_schema, parse_answer, repair_messages

EXPECTED_COMPLETION = {"F1": 180, "F2": 120, "F3": 100, "F4": 110}  # F4: per new profile, plus 40


@dataclass
class Totals:
    """Calls and tokens: sent now vs answered from the cache."""

    sent: int = 0
    cached: int = 0
    repairs: int = 0  # of `sent`: repair calls
    retries: int = 0  # of `sent`: calls of a new attempt (a step whose earlier attempt stayed invalid)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    cached_batch_prompt_tokens: int = 0  # of the cached tokens: those bought through the Batch API
    cached_batch_completion_tokens: int = 0

    def add(self, other: Totals | dict) -> None:
        other = other if isinstance(other, dict) else dataclasses.asdict(other)
        for k, v in other.items():
            setattr(self, k, getattr(self, k) + v)


class EntityFailure(Exception):
    def __init__(self, kind: str, step: str, message: str):
        super().__init__(message)
        self.kind, self.step = kind, step


def call_name(step: str, attempt: int, round_: int) -> str:
    """Cache name of a call: "F2" (attempt 1, first answer), "F2.repair1", "F2@2", "F2@2.repair1", ..."""
    base = step if attempt == 1 else f"{step}@{attempt}"
    return base if round_ == 0 else f"{base}.repair{round_}"


@dataclass
class Call:
    """One chat call of one entity: everything the online and the batch paths send, and the cache row's keys."""

    key: str
    side: str
    entity: int
    name: str  # call_name(step, attempt, round)
    step: str
    attempt: int
    input_hash: str
    messages: list
    seed: int | None
    items: int | None = None  # entries the answer's list must hold (F4: k-1 new profiles)

    def row(self, model: str) -> dict:
        """The cache row fields that identify this call (cache.put's keyword arguments, minus the answer)."""
        return {
            "prompt_version": PROMPT_VERSION,
            "model": model,
            "side": self.side,
            "entity": self.entity,
            "step": self.name,
            "input_hash": self.input_hash,
        }


class Deferred(Exception):
    """The Batch API path does not answer now: `call` goes into the next batch round."""

    def __init__(self, call: Call):
        super().__init__(call.key)
        self.call = call


class OnlineAnswerer:
    """Asks the LLM now; returns the answer row to cache (response, tokens, seed and format actually sent)."""

    def __init__(self, llm):
        self.llm = llm
        self.redact = llm.redact

    async def answer(self, call: Call) -> dict:
        ans = await self.llm.chat(
            call.messages,
            what=f"{call.side} {call.entity} step {call.name}",
            schema=json_schema(call.step),
            schema_name=f"proex_{call.step}",
            seed=call.seed,
            items=call.items,
        )
        return {
            "response": ans.text,
            "prompt_tokens": ans.prompt_tokens,
            "completion_tokens": ans.completion_tokens,
            "seed": ans.seed,
            "response_format": ans.response_format,
            "via": "online",
        }


class DryAnswerer:
    """Sends nothing: a valid placeholder answer of the expected length, with estimated token counts.
    in_batches counts the calls among them that are already in a submitted batch (`pending` keys): the batch
    path waits for those instead of sending them."""

    def __init__(self, k: int, pending: set | None = None):
        self.k, self.pending, self.in_batches = k, pending or set(), Totals()
        self.redact = str

    async def answer(self, call: Call) -> dict:
        n = EXPECTED_COMPLETION[call.step]
        row = {
            "response": json.dumps(placeholder(call.step, n * 4, self.k)),
            "prompt_tokens": sum(estimate_tokens(m["content"]) + 4 for m in call.messages),
            "completion_tokens": n * (self.k - 1 if call.step == "F4" else 1) + 40,
            "seed": call.seed,
            "response_format": None,
            "via": "dry",
        }
        if call.key in self.pending:
            self.in_batches.add(
                {
                    "sent": 1,
                    "prompt_tokens": row["prompt_tokens"],
                    "completion_tokens": row["completion_tokens"],
                    "repairs": int("repair" in call.name),
                    "retries": int(call.attempt > 1),
                }
            )
        return row


def placeholder(step: str, chars: int, k: int) -> dict:
    """A valid answer of `step` with about `chars` characters per text (the estimate's stand-in)."""
    text = "x" * chars
    return {
        "summarization": text,
        "positive_aspects": [text[: chars // 3]],
        "negative_aspects": [text[: chars // 3]],
        "latent_preferences": [text[: chars // 2]],
        "profiles": [f"{i} {text}" for i in range(k - 1)],
        "reasoning": "",
    }


async def profile_entity(
    ent: EntityInput, cfg, answerer: Any, cache, totals: Totals, since: float = float("inf")
) -> dict:
    """F1..F4 for one entity; returns its record, raises EntityFailure (or a fatal ProfileAPIError, or
    Deferred from the batch path's answerer). cfg: a ProfileJobConfig. since: when this run started; cached
    answers created since then are this run's own (the batch path walks every entity once per round), so an
    attempt holding one of them is this run's attempt and is not followed by another."""
    if ent.empty:
        raise EntityFailure(
            "no_input",
            "F1",
            f"{ent.side} {ent.id} has no text and no interactions; nothing to "
            "profile (add text for it or drop it from the dataset)",
        )
    outputs: dict = {}
    for step in STEPS:
        first = build_messages(step, ent, outputs, cfg.domain, cfg.k, cfg.max_input_chars)
        original = outputs["F1"]["summarization"] if step == "F4" else None
        attempt = 1
        while step not in outputs:
            messages, asked, problem = first, False, ""
            for round_ in range(cfg.repairs + 1):
                name, h = call_name(step, attempt, round_), input_hash(messages)
                seed = None if cfg.seed is None else cfg.seed + attempt - 1
                call = Call(
                    call_key(PROMPT_VERSION, cfg.model, ent.side, ent.id, name, h),
                    ent.side,
                    ent.id,
                    name,
                    step,
                    attempt,
                    h,
                    messages,
                    seed,
                    cfg.k - 1 if step == "F4" else None,
                )
                row = await cache.get(call.key)
                if row is None:
                    row = await _ask(answerer, call)
                    await cache.put(call.key, **call.row(cfg.model), **row)
                    asked = True
                    totals.add(
                        {
                            "sent": 1,
                            "prompt_tokens": row["prompt_tokens"],
                            "repairs": int(round_ > 0),
                            "completion_tokens": row["completion_tokens"],
                            "retries": int(attempt > 1),
                        }
                    )
                else:
                    batch = str(row.get("via") or "").startswith("batch")
                    totals.add(
                        {
                            "cached": 1,
                            "cached_prompt_tokens": row["prompt_tokens"],
                            "cached_completion_tokens": row["completion_tokens"],
                            "cached_batch_prompt_tokens": row["prompt_tokens"] * batch,
                            "cached_batch_completion_tokens": row["completion_tokens"] * batch,
                        }
                    )
                    asked = asked or row.get("created", 0.0) >= since
                parsed, problem = parse_answer(step, row["response"], cfg.k, original)
                if parsed is not None:
                    outputs[step] = parsed
                    break
                messages = repair_messages(messages, row["response"], problem, step, cfg.k)
            else:
                if asked:  # this run's attempt stayed invalid: the entity fails; the next run asks again
                    raise EntityFailure(
                        "invalid_answer",
                        step,
                        f"{ent.side} {ent.id} step {step}: attempt {attempt} "
                        f"still invalid after {cfg.repairs} repair(s): {problem}; a rerun sends "
                        f"attempt {attempt + 1}",
                    )
                attempt += 1  # every round of this attempt is cached and invalid (an earlier run's): ask again
    return {
        "side": ent.side,
        "id": ent.id,
        "original": outputs["F1"]["summarization"],
        "new": outputs["F4"]["profiles"],
        "positive_aspects": outputs["F2"]["positive_aspects"],
        "negative_aspects": outputs["F2"]["negative_aspects"],
        "latent_preferences": outputs["F3"]["latent_preferences"],
        "reasoning": {s: outputs[s]["reasoning"] for s in STEPS},
    }


async def _ask(answerer: Any, call: Call) -> dict:
    try:
        return await answerer.answer(call)
    except ProfileAPIError as exc:
        if exc.fatal:
            raise
        raise EntityFailure(exc.kind, call.name, str(exc)) from None
