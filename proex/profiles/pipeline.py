"""The LLM profile job: Interactions -> four-step CoT per entity -> profiles.jsonl per side.

    ProfileJobConfig  one job's settings (typed; the key is never one of them, only its variable's name)
    run_entities      a pool of `concurrency` async workers over a list of entities, sharing one client and
                      limiter; the Ray workers of `proex.infra.profile_actors` run this same function
    generate          the in-process job (or, with `batch`, the Batch API path of `proex.profiles.batch`):
                      run, then `outputs.write_outputs`
    estimate          the dry run: exactly the calls `generate` would send now (the same walk over the cache as
                      `chain.profile_entity`: cached first answers, cached repairs and earlier attempts are
                      reused), their tokens and cost; nothing is sent
    rerun_plan        what rerunning the same command will do, in one sentence (printed after failures)

Entity inputs come from `prompts.entity_inputs` (own text + train-split history only, never val/test).
Outputs in `out_dir`: `<side>/profiles.jsonl` (id, original, new, reasoning, aspects, latent preferences),
`failures.jsonl` (every entity that has no profiles, with the reason), `summary.json` (config without the key,
counts, tokens, cost, wall time). Every entity ends in exactly one of profiles.jsonl and failures.jsonl.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import ConfigError
from ..data.interactions import Interactions
from .cache import AsyncCallCache, CallCache
from .chain import EXPECTED_COMPLETION, DryAnswerer, EntityFailure, OnlineAnswerer, Totals, profile_entity  # noqa: F401
from .client import RESPONSE_FORMATS, TOKEN_FIELDS, LLMClient, ProfileAPIError
from .limiter import AsyncLimiter
from .outputs import Progress, job_cost, load_prices, write_lines, write_outputs  # noqa: F401 (re-exported)
from .prompts import DOMAINS, PROMPT_VERSION, SIDES, EntityInput, entity_inputs

_write_lines = write_lines  # the name offline.py imports


@dataclass
class ProfileJobConfig:
    """One profile-generation job. The key itself is never part of the config: only the variable's name."""

    base_url: str = "https://api.openai.com/v1"  # any OpenAI-compatible endpoint (vLLM, Ollama, a proxy)
    model: str = "gpt-3.5-turbo"  # the paper's LLM (sec. 3.1)
    api_key_env: str = "OPENAI_API_KEY"  # NAME of the environment variable holding the key; "" = no auth
    k: int = 4  # profiles per entity: the original + K-1 new ones (paper: K=4)
    domain: str = "generic"  # books | businesses | games | movies | generic
    rpm: float = 500.0  # requests per minute allowed by the key
    tpm: float = 200_000.0  # tokens per minute allowed by the key
    burst_s: float = 1.0  # seconds of traffic a full client bucket may send at once
    headroom: float = 0.97  # fraction of the limit (configured or advertised) aimed at
    concurrency: int = 16  # entities in flight (per process; per worker on Ray)
    max_attempts: int = 6  # tries per call (429, 5xx, timeouts), one retry layer
    backoff_s: float = 1.0  # base of the exponential backoff with full jitter
    timeout_s: float = 60.0  # per request
    max_tokens: int = 800  # completion cap per call
    max_tokens_field: str = "auto"  # auto (OpenAI: max_completion_tokens, else max_tokens) | either name
    temperature: float = 0.7
    response_format: str = "json_schema"  # json_schema (strict; falls back to json_object) | json_object | none
    seed: int | None = 0  # sent where supported (attempt a: seed + a - 1); None = never
    repairs: int = 1  # repair rounds per step for an invalid answer
    max_input_chars: int = 6000  # evidence per entity sent to F1/F2
    max_history: int = 50  # interacted item titles per user
    max_snippets: int = 5  # user snippets per item
    cache_path: str = ""  # "" = <out_dir>/cache.sqlite
    out_dir: str = "profiles_out"
    sides: tuple[str, ...] = ("user", "item")
    limit: int = 0  # first N entities per side (0 = all)
    progress: bool = True  # progress bar on stderr
    prices_path: str = ""  # JSON {model: [USD per 1M input, per 1M output]} over PRICES
    batch: bool = False  # the OpenAI Batch API: half the price, one batch per round
    batch_poll_s: float = 30.0  # seconds between polls of a running batch
    batch_max_rows: int = 50_000  # requests per batch input file (OpenAI's limit: 50,000)
    batch_max_bytes: int = 200_000_000  # bytes per batch input file (OpenAI's limit: 200 MB)
    batch_enqueued_tokens: int = 0  # the account's enqueued-token limit for the model (0 = learn it
    # from the first batch refused with token_limit_exceeded)
    batch_row_attempts: int = 3  # rounds a row may fail (error file, expiry) before its entity does

    def check(self) -> ProfileJobConfig:
        bad = []
        if self.k < 2:
            bad.append("k must be >= 2 (the original profile plus at least one new one)")
        if self.domain not in DOMAINS:
            bad.append(f"domain must be one of {sorted(DOMAINS)}")
        if not self.sides or set(self.sides) - set(SIDES):
            bad.append(f"sides must be a non-empty subset of {SIDES}")
        if self.concurrency < 1 or self.max_attempts < 1 or self.timeout_s <= 0 or self.repairs < 0:
            bad.append("concurrency, max_attempts >= 1, timeout_s > 0, repairs >= 0")
        if not 0 < self.headroom <= 1:
            bad.append("headroom must be in (0, 1] (e.g. headroom=0.97)")
        if self.response_format not in RESPONSE_FORMATS:
            bad.append(f"response_format must be one of {RESPONSE_FORMATS}")
        if self.batch_poll_s <= 0 or not 1 <= self.batch_max_rows <= 50_000 or self.batch_row_attempts < 1:
            bad.append("batch_poll_s > 0, 1 <= batch_max_rows <= 50000, batch_row_attempts >= 1")
        if self.batch_max_bytes < 1024 or self.batch_enqueued_tokens < 0:
            bad.append("batch_max_bytes >= 1024 (OpenAI: 200000000), batch_enqueued_tokens >= 0")
        if self.max_tokens_field not in TOKEN_FIELDS:
            bad.append(f"max_tokens_field must be one of {TOKEN_FIELDS}")
        if bad:
            raise ConfigError("ProfileJobConfig: " + "; ".join(bad))
        return self

    @property
    def cache_file(self) -> str:
        return self.cache_path or os.path.join(self.out_dir, "cache.sqlite")


def make_client(cfg: ProfileJobConfig, limiter) -> LLMClient:
    """The job's LLMClient (reads the key from $cfg.api_key_env)."""
    return LLMClient(
        cfg.base_url,
        cfg.model,
        cfg.api_key_env,
        limiter,
        cfg.timeout_s,
        cfg.max_attempts,
        cfg.backoff_s,
        cfg.max_tokens,
        cfg.temperature,
        cfg.response_format,
        cfg.seed,
        cfg.max_tokens_field,
    )


def failure(ent: EntityInput, kind: str, message: str, step: str = "") -> dict:
    return {"side": ent.side, "id": ent.id, "kind": kind, "step": step, "message": message}


async def run_entities(
    entities: list[EntityInput], cfg: ProfileJobConfig, answerer, cache, on_done: Callable[[dict], None] | None = None
) -> dict:
    """Profile `entities` with `cfg.concurrency` workers. Returns {"records", "failures", "totals", "fatal"};
    after a fatal error the unfinished entities are listed as failures of kind "stopped"."""
    queue = list(reversed(entities))
    records, failures, totals = [], [], Totals()
    fatal: list[ProfileAPIError] = []
    pending: dict[int, EntityInput] = {}

    async def worker(slot: int) -> None:
        while queue and not fatal:
            ent = pending[slot] = queue.pop()
            try:
                result = await profile_entity(ent, cfg, answerer, cache, totals)
                records.append(result)
            except ProfileAPIError as exc:
                if exc.fatal:
                    fatal.append(exc)
                    for task in tasks:
                        if task is not asyncio.current_task():
                            task.cancel()
                    return
                failures.append(result := failure(ent, exc.kind, str(exc)))
            except EntityFailure as exc:
                failures.append(result := failure(ent, exc.kind, str(exc), exc.step))
            except Exception as exc:  # a bug or a broken cache file: report it with the entity, keep going
                failures.append(
                    result := failure(ent, "internal_error", f"{type(exc).__name__}: {answerer.redact(exc)}")
                )
            pending.pop(slot, None)
            if on_done:
                on_done(result)

    tasks = [asyncio.ensure_future(worker(i)) for i in range(cfg.concurrency)]
    await asyncio.gather(*tasks, return_exceptions=True)
    if fatal:
        why = f"job stopped before this entity finished: {fatal[0]}"
        failures.extend(failure(ent, "stopped", why) for ent in list(pending.values()) + queue[::-1])
    return {
        "records": records,
        "failures": failures,
        "totals": dataclasses.asdict(totals),
        "fatal": fatal[0] if fatal else None,
    }


def generate(cfg: ProfileJobConfig, inter: Interactions) -> dict:
    """Run the job in this process (asyncio; the Batch API path if cfg.batch); write the outputs; return the
    summary. A fatal API error is raised after the outputs of what finished are written (a rerun resumes)."""
    cfg.check()
    if cfg.batch:
        from .batch import generate_batch

        return generate_batch(cfg, inter)
    entities = [e for side in cfg.sides for e in entity_inputs(inter, side, cfg)]
    t0 = time.time()

    async def main() -> dict:
        limiter = AsyncLimiter(cfg.rpm, cfg.tpm, cfg.burst_s, cfg.headroom)
        llm = make_client(cfg, limiter)
        cache = CallCache(cfg.cache_file)
        bar = Progress(len(entities), cfg.progress, unit="entity")
        try:
            out = await run_entities(
                entities, cfg, OnlineAnswerer(llm), AsyncCallCache(cache), lambda r: bar.update(1, r)
            )
            out["limiter"] = await limiter.snapshot()
            return out
        finally:
            bar.close()
            cache.close()
            await llm.close()

    out = asyncio.run(main())
    summary = write_outputs(cfg, inter, out, time.time() - t0, backend="asyncio")
    if out["fatal"] is not None:
        raise out["fatal"]
    return summary


class _ReadOnlyCache:
    """The cache as the dry run sees it: lookups only (no file is created; nothing is written)."""

    def __init__(self, cache: CallCache | None):
        self.cache = cache

    async def get(self, key: str) -> dict | None:
        return self.cache.get(key) if self.cache is not None else None

    async def put(self, key: str, **row) -> None:
        pass


def estimate(cfg: ProfileJobConfig, inter: Interactions) -> dict:
    """Dry run: exactly the calls `generate` would send now if every new answer were valid (`calls`; of them
    `repair_calls` repairs of cached invalid answers and `retry_calls` new attempts at steps whose cached
    attempts stayed invalid), their prompt tokens (exact up to an entity's first new call, estimated after
    it), expected completion tokens and cost (at the batch price with cfg.batch). Repairs of answers not yet
    received cannot be foreseen: `cost_usd_upper` bounds the completion side by max_tokens."""
    cfg.check()
    cache = CallCache(cfg.cache_file) if os.path.exists(cfg.cache_file) else None
    pending = set()
    if cfg.batch and cache is not None:
        from .batch_store import BatchStore

        pending = BatchStore(cache.db).pending_keys()
    totals, n = Totals(), {"entities": 0, "no_input": 0}
    answerer = DryAnswerer(cfg.k, pending)

    async def walk() -> None:
        for side in cfg.sides:
            for ent in entity_inputs(inter, side, cfg):
                n["entities"] += 1
                try:
                    await profile_entity(ent, cfg, answerer, _ReadOnlyCache(cache), totals)
                except EntityFailure as exc:
                    n["no_input"] += exc.kind == "no_input"

    try:
        asyncio.run(walk())
    finally:
        if cache is not None:
            cache.close()
    held = answerer.in_batches  # calls already in submitted batches: the batch path waits for them
    calls, prompt, completion = (
        totals.sent - held.sent,
        totals.prompt_tokens - held.prompt_tokens,
        totals.completion_tokens - held.completion_tokens,
    )
    return {
        **n,
        "calls": calls,
        "repair_calls": totals.repairs - held.repairs,
        "retry_calls": totals.retries - held.retries,
        "cached_calls": totals.cached,
        "pending_in_batches": held.sent,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "model": cfg.model,
        "prompt_version": PROMPT_VERSION,
        "completion_tokens_upper": calls * cfg.max_tokens,
        "cost_usd": job_cost(cfg, prompt, completion),
        "cost_usd_upper": job_cost(cfg, prompt, calls * cfg.max_tokens),
        "price": "batch (half the online price)" if cfg.batch else "online",
        "minutes_at_rpm": round(calls / (cfg.rpm * cfg.headroom), 1) if cfg.rpm > 0 and not cfg.batch else None,
        "price_known": cfg.model in load_prices(cfg),
        "note": "nothing was sent; repairs of answers not yet received are not included",
    }


def rerun_plan(cfg: ProfileJobConfig, inter: Interactions, failures: list[dict]) -> str:
    """One paragraph for the user after a run with failures: what rerunning the same command sends (from
    `estimate`, so it is exactly what the rerun sends if the new answers are valid) and what it cannot fix."""
    kinds: dict[str, int] = {}
    for f in failures:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    est = estimate(cfg, inter)
    why = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
    hopeless = kinds.get("no_input", 0)
    text = (
        f"{len(failures)} entities have no profiles ({why}); reasons in {cfg.out_dir}/failures.jsonl. "
        f"Rerunning the same command sends {est['calls']} calls (more only if new answers need repairs) for "
        f"{'these' if not hopeless else 'the ' + str(len(failures) - hopeless) + ' with input'} "
        f"({est['retry_calls']} of them new attempts at answers that stayed invalid, {est['repair_calls']} "
        f"repairs of cached invalid answers); everything else ({est['cached_calls']} calls) comes from the "
        "cache (`proex profiles estimate` with the same flags prints the count and its cost)."
    )
    if est.get("pending_in_batches"):
        text += f" {est['pending_in_batches']} calls are in submitted batches: the rerun waits for them."
    if hopeless:
        text += f" The {hopeless} with no input fail again until they get text or interactions."
    return text
