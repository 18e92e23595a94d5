"""The LLM profile job (issue #4): Interactions -> four-step CoT per entity -> profiles.jsonl per side.

    profile_entity   F1 -> F2 -> F3 -> F4 for one entity, in order (paper sec. 2.3.1); each call looked up in
                     the cache first and stored there before it counts as done; invalid answers get a repair
    run_entities     a pool of `concurrency` async workers over a list of entities, sharing one client and
                     limiter; the Ray workers of `proex.infra.profile_actors` run this same function
    generate         the in-process job: run, then `write_outputs`
    estimate         the dry run: calls, tokens and cost, nothing sent (cached calls are not counted)

Entity inputs come from `prompts.entity_inputs` (own text + train-split history only, never val/test).
Outputs in `out_dir`: `<side>/profiles.jsonl` (id, original, new, reasoning, aspects, latent preferences),
`failures.jsonl` (every entity that has no profiles, with the reason), `summary.json` (config without the key,
counts, tokens, cost, wall time). Every entity ends in exactly one of profiles.jsonl and failures.jsonl.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import ConfigError
from ..data.interactions import Interactions
from .cache import AsyncCallCache, CallCache, call_key, input_hash
from .client import PRICES, LLMClient, ProfileAPIError, cost_usd, estimate_tokens
from .limiter import AsyncLimiter
from .prompts import (DOMAINS, PROMPT_VERSION, SIDES, STEPS, EntityInput, build_messages, entity_inputs, parse_answer,
                      repair_messages)

EXPECTED_COMPLETION = {"F1": 180, "F2": 120, "F3": 100, "F4": 110}  # F4: per new profile, plus 40


@dataclass
class ProfileJobConfig:
    """One profile-generation job. The key itself is never part of the config: only the variable's name."""

    base_url: str = "https://api.openai.com/v1"  # any OpenAI-compatible endpoint (vLLM, Ollama, a proxy)
    model: str = "gpt-3.5-turbo"                 # the paper's LLM (sec. 3.1)
    api_key_env: str = "OPENAI_API_KEY"          # NAME of the environment variable holding the key; "" = no auth
    k: int = 4                                   # profiles per entity: the original + K-1 new ones (paper: K=4)
    domain: str = "generic"                      # books | businesses | games | movies | generic
    rpm: float = 500.0                           # requests per minute allowed by the key
    tpm: float = 200_000.0                       # tokens per minute allowed by the key
    burst_s: float = 1.0                         # seconds of traffic a full client bucket may send at once
    concurrency: int = 16                        # entities in flight (per process; per worker on Ray)
    max_attempts: int = 6                        # tries per call (429, 5xx, timeouts), one retry layer
    backoff_s: float = 1.0                       # base of the exponential backoff with full jitter
    timeout_s: float = 60.0                      # per request
    max_tokens: int = 800                        # completion cap per call
    temperature: float = 0.7
    json_mode: bool = True                       # response_format=json_object (turn off if a server rejects it)
    repairs: int = 1                             # repair rounds per step for an invalid answer
    max_input_chars: int = 6000                  # evidence per entity sent to F1/F2
    max_history: int = 50                        # interacted item titles per user
    max_snippets: int = 5                        # user snippets per item
    cache_path: str = ""                         # "" = <out_dir>/cache.sqlite
    out_dir: str = "profiles_out"
    sides: tuple[str, ...] = ("user", "item")
    limit: int = 0                               # first N entities per side (0 = all)
    progress: bool = True                        # progress bar on stderr
    prices_path: str = ""                        # JSON {model: [USD per 1M input, per 1M output]} over PRICES

    def check(self) -> "ProfileJobConfig":
        bad = []
        if self.k < 2:
            bad.append("k must be >= 2 (the original profile plus at least one new one)")
        if self.domain not in DOMAINS:
            bad.append(f"domain must be one of {sorted(DOMAINS)}")
        if not self.sides or set(self.sides) - set(SIDES):
            bad.append(f"sides must be a non-empty subset of {SIDES}")
        if self.concurrency < 1 or self.max_attempts < 1 or self.timeout_s <= 0 or self.repairs < 0:
            bad.append("concurrency, max_attempts >= 1, timeout_s > 0, repairs >= 0")
        if bad:
            raise ConfigError("ProfileJobConfig: " + "; ".join(bad))
        return self

    @property
    def cache_file(self) -> str:
        return self.cache_path or os.path.join(self.out_dir, "cache.sqlite")


@dataclass
class Totals:
    """Calls and tokens: sent now vs answered from the cache."""

    sent: int = 0
    cached: int = 0
    repairs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0

    def add(self, other: "Totals | dict") -> None:
        other = other if isinstance(other, dict) else dataclasses.asdict(other)
        for k, v in other.items():
            setattr(self, k, getattr(self, k) + v)


class EntityFailure(Exception):
    def __init__(self, kind: str, step: str, message: str):
        super().__init__(message)
        self.kind, self.step = kind, step


async def profile_entity(ent: EntityInput, cfg: ProfileJobConfig, llm: LLMClient, cache, totals: Totals) -> dict:
    """F1..F4 for one entity; returns its record, raises EntityFailure (or a fatal ProfileAPIError)."""
    if ent.empty:
        raise EntityFailure("no_input", "F1", f"{ent.side} {ent.id} has no text and no interactions; nothing to "
                                              "profile (add text for it or drop it from the dataset)")
    outputs: dict = {}
    for step in STEPS:
        messages = build_messages(step, ent, outputs, cfg.domain, cfg.k, cfg.max_input_chars)
        original = outputs["F1"]["summarization"] if step == "F4" else None
        for round_ in range(cfg.repairs + 1):
            name = step if round_ == 0 else f"{step}.repair{round_}"
            h = input_hash(messages)
            key = call_key(PROMPT_VERSION, cfg.model, ent.side, ent.id, name, h)
            row = await cache.get(key)
            if row is None:
                try:
                    ans = await llm.chat(messages, what=f"{ent.side} {ent.id} step {name}")
                except ProfileAPIError as exc:
                    if exc.fatal:
                        raise
                    raise EntityFailure(exc.kind, name, str(exc)) from None
                row = {"response": ans.text, "prompt_tokens": ans.prompt_tokens,
                       "completion_tokens": ans.completion_tokens}
                await cache.put(key, prompt_version=PROMPT_VERSION, model=cfg.model, side=ent.side, entity=ent.id,
                                step=name, input_hash=h, **row)
                totals.add({"sent": 1, "prompt_tokens": row["prompt_tokens"],
                            "completion_tokens": row["completion_tokens"], "repairs": int(round_ > 0)})
            else:
                totals.add({"cached": 1, "cached_prompt_tokens": row["prompt_tokens"],
                            "cached_completion_tokens": row["completion_tokens"]})
            parsed, problem = parse_answer(step, row["response"], cfg.k, original)
            if parsed is not None:
                outputs[step] = parsed
                break
            messages = repair_messages(messages, row["response"], problem, step, cfg.k)
        else:
            raise EntityFailure("invalid_answer", step, f"{ent.side} {ent.id} step {step}: still invalid after "
                                                        f"{cfg.repairs} repair(s): {problem}")
    return {"side": ent.side, "id": ent.id, "original": outputs["F1"]["summarization"],
            "new": outputs["F4"]["profiles"], "positive_aspects": outputs["F2"]["positive_aspects"],
            "negative_aspects": outputs["F2"]["negative_aspects"],
            "latent_preferences": outputs["F3"]["latent_preferences"],
            "reasoning": {s: outputs[s]["reasoning"] for s in STEPS}}


async def run_entities(entities: list[EntityInput], cfg: ProfileJobConfig, llm: LLMClient, cache,
                       on_done: Callable[[dict], None] | None = None) -> dict:
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
                result = await profile_entity(ent, cfg, llm, cache, totals)
                records.append(result)
            except ProfileAPIError as exc:
                if exc.fatal:
                    fatal.append(exc)
                    for task in tasks:
                        if task is not asyncio.current_task():
                            task.cancel()
                    return
                result = {"side": ent.side, "id": ent.id, "kind": exc.kind, "step": "", "message": str(exc)}
                failures.append(result)
            except EntityFailure as exc:
                result = {"side": ent.side, "id": ent.id, "kind": exc.kind, "step": exc.step, "message": str(exc)}
                failures.append(result)
            except Exception as exc:  # a bug or a broken cache file: report it with the entity, keep going
                result = {"side": ent.side, "id": ent.id, "kind": "internal_error", "step": "",
                          "message": f"{type(exc).__name__}: {llm.redact(exc)}"}
                failures.append(result)
            pending.pop(slot, None)
            if on_done:
                on_done(result)

    tasks = [asyncio.ensure_future(worker(i)) for i in range(cfg.concurrency)]
    await asyncio.gather(*tasks, return_exceptions=True)
    if fatal:
        why = f"job stopped before this entity finished: {fatal[0]}"
        for ent in list(pending.values()) + queue[::-1]:
            failures.append({"side": ent.side, "id": ent.id, "kind": "stopped", "step": "", "message": why})
    return {"records": records, "failures": failures, "totals": dataclasses.asdict(totals),
            "fatal": fatal[0] if fatal else None}


def generate(cfg: ProfileJobConfig, inter: Interactions) -> dict:
    """Run the job in this process (asyncio); write the outputs; return the summary. A fatal API error is
    raised after the outputs of what finished are written (rerunning resumes from the cache)."""
    cfg.check()
    entities = [e for side in cfg.sides for e in entity_inputs(inter, side, cfg)]
    t0 = time.time()

    async def main() -> dict:
        limiter = AsyncLimiter(cfg.rpm, cfg.tpm, cfg.burst_s)
        llm = LLMClient(cfg.base_url, cfg.model, cfg.api_key_env, limiter, cfg.timeout_s, cfg.max_attempts,
                        cfg.backoff_s, cfg.max_tokens, cfg.temperature, cfg.json_mode)
        cache = CallCache(cfg.cache_file)
        bar = Progress(len(entities), cfg.progress, unit="entity")
        try:
            out = await run_entities(entities, cfg, llm, AsyncCallCache(cache), lambda r: bar.update(1, r))
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


def load_prices(cfg: ProfileJobConfig) -> dict:
    prices = dict(PRICES)
    if cfg.prices_path:
        prices.update({k: tuple(v) for k, v in json.loads(Path(cfg.prices_path).read_text()).items()})
    return prices


def _public_url(url: str) -> str:
    """base_url without any user:password@ part."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}" if rest else url


def write_outputs(cfg: ProfileJobConfig, inter: Interactions, out: dict, wall_s: float, backend: str) -> dict:
    """profiles.jsonl per side, failures.jsonl and summary.json in cfg.out_dir (each written atomically)."""
    root = Path(cfg.out_dir)
    per_side = {}
    for side in cfg.sides:
        recs = sorted((r for r in out["records"] if r["side"] == side), key=lambda r: r["id"])
        _write_lines(root / side / "profiles.jsonl", recs)
        per_side[side] = {"profiled": len(recs), "failed": sum(f["side"] == side for f in out["failures"])}
    _write_lines(root / "failures.jsonl", sorted(out["failures"], key=lambda f: (f["side"], f["id"])))
    t = out["totals"]
    prices = load_prices(cfg)
    fatal = out.get("fatal")
    summary = {
        "status": "stopped" if fatal else "done", "stopped_because": str(fatal) if fatal else None,
        "profiler": "llm-cot", "llm": cfg.model, "endpoint": _public_url(cfg.base_url),
        "prompt_version": PROMPT_VERSION, "k": cfg.k, "domain": cfg.domain, "dataset": inter.name,
        "n_users": inter.n_users, "n_items": inter.n_items, "sides": per_side, "backend": backend,
        "calls": t, "wall_s": round(wall_s, 2),
        "cost_usd": {"this_run": cost_usd(prices, cfg.model, t["prompt_tokens"], t["completion_tokens"]),
                     "incl_cached": cost_usd(prices, cfg.model, t["prompt_tokens"] + t["cached_prompt_tokens"],
                                             t["completion_tokens"] + t["cached_completion_tokens"])},
        "limiter": out.get("limiter"), "workers": out.get("workers"),
        "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "base_url"},
    }
    _write_lines(root / "summary.json", [summary], indent=1)
    return summary


def _write_lines(path: Path, rows: list[dict], indent: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, indent=indent, default=str) + "\n")
    os.replace(tmp, path)


def estimate(cfg: ProfileJobConfig, inter: Interactions) -> dict:
    """Dry run: calls still to send (cached ones skipped), their prompt tokens (exact prompts up to the first
    uncached step, estimated after it), expected completion tokens, and cost. Repairs are not counted."""
    cfg.check()
    cache = CallCache(cfg.cache_file) if os.path.exists(cfg.cache_file) else None
    n = {"entities": 0, "no_input": 0, "calls": 0, "cached_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    for side in cfg.sides:
        for ent in entity_inputs(inter, side, cfg):
            n["entities"] += 1
            if ent.empty:
                n["no_input"] += 1
                continue
            outputs, missing = {}, False
            for step in STEPS:
                messages = build_messages(step, ent, outputs, cfg.domain, cfg.k, cfg.max_input_chars)
                if not missing and cache is not None:
                    row = cache.get(call_key(PROMPT_VERSION, cfg.model, side, ent.id, step, input_hash(messages)))
                    parsed = parse_answer(step, row["response"], cfg.k)[0] if row else None
                    if parsed is not None:
                        outputs[step] = parsed
                        n["cached_calls"] += 1
                        continue
                missing = True
                n["calls"] += 1
                n["prompt_tokens"] += sum(estimate_tokens(m["content"]) + 4 for m in messages)
                n["completion_tokens"] += EXPECTED_COMPLETION[step] * (cfg.k - 1 if step == "F4" else 1) + 40
                outputs[step] = _placeholder(step, EXPECTED_COMPLETION[step] * 4)
    if cache is not None:
        cache.close()
    prices = load_prices(cfg)
    return {**n, "model": cfg.model, "prompt_version": PROMPT_VERSION,
            "completion_tokens_upper": n["calls"] * cfg.max_tokens,
            "cost_usd": cost_usd(prices, cfg.model, n["prompt_tokens"], n["completion_tokens"]),
            "cost_usd_upper": cost_usd(prices, cfg.model, n["prompt_tokens"], n["calls"] * cfg.max_tokens),
            "minutes_at_rpm": round(n["calls"] / cfg.rpm, 1) if cfg.rpm > 0 else None,
            "price_known": cfg.model in prices, "note": "nothing was sent; repair calls are not included"}


class Progress:
    """Progress on stderr with rate and ETA: tqdm when installed, else a plain line every 2 s."""

    def __init__(self, total: int, enabled: bool, unit: str = "entity"):
        self.total, self.done, self.failed, self.t0, self.last = total, 0, 0, time.time(), 0.0
        self.enabled, self.bar = enabled, None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit=unit, desc="profiles", dynamic_ncols=True, file=sys.stderr)
            except ImportError:
                pass

    def update(self, n: int, result: dict | None = None) -> None:
        self.done += n
        self.failed += int(bool(result and "kind" in result))
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(failed=self.failed, refresh=False)
        elif self.enabled and (time.time() - self.last > 2 or self.done == self.total):
            self.last, rate = time.time(), self.done / max(1e-9, time.time() - self.t0)
            eta = (self.total - self.done) / rate if rate else float("inf")
            print(f"profiles {self.done}/{self.total} ({self.failed} failed) {rate:.2f}/s ETA {eta:.0f}s",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _placeholder(step: str, chars: int) -> dict:
    text = "x" * chars
    return {"summarization": text, "positive_aspects": [text[: chars // 3]], "negative_aspects": [text[: chars // 3]],
            "latent_preferences": [text[: chars // 2]], "profiles": [text], "reasoning": ""}
