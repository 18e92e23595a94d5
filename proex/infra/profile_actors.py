"""The profile job on Ray: worker actors batching LLM calls under ONE shared rate limiter.

    RateLimiterActor   a named actor holding the `BucketState` (requests/min + tokens/min buckets, 429 pause)
                       for every worker on every node; `get_if_exists` lets several jobs with the same key share
                       it (name it per key; `detached=True` keeps it alive between jobs)
    CacheActor         owns the SQLite call cache on the driver's node (SQLite must not be opened over NFS from
                       several nodes); a worker awaits its `put` before a call counts as done
    ProgressActor      counts finished entities as workers report them, one by one, so the driver's progress
                       bar moves per entity rather than per chunk
    ProfileWorker      an async actor running `pipeline.run_entities` (the same per-entity code as the
                       in-process job) on chunks of entities, `cfg.concurrency` entities at a time
    generate_ray       the driver: chunks out entities (at most 2 chunks queued per worker), updates the
                       progress bar, stops everything on a fatal error, writes the same outputs as `generate`

Not built on `ray.data.llm` (one request at a time there, and the job fails on the first 429). The API key
never travels through Ray: workers read it from their own environment (`api_key_env`), which a local
`ray.init` inherits from the driver; on a cluster set it in the nodes' environment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..config import build
from ..data.interactions import Interactions
from ..profiles.cache import CallCache
from ..profiles.chain import OnlineAnswerer
from ..profiles.client import ProfileAPIError
from ..profiles.limiter import BucketState
from ..profiles.pipeline import (
    ProfileJobConfig,
    Progress,
    Totals,
    entity_inputs,
    make_client,
    run_entities,
    write_outputs,
)
from ..profiles.prompts import EntityInput

NAMESPACE = "proex"


@ray.remote(num_cpus=0)
class RateLimiterActor:
    """One BucketState for all workers; a plain (threaded=1) actor, so its methods never interleave."""

    def __init__(self, rpm: float, tpm: float, burst_s: float = 1.0, headroom: float = 0.97):
        self.state = BucketState(rpm, tpm, burst_s, headroom=headroom)

    def reserve(self, tokens: float, front: bool = False) -> tuple[float, tuple[float, float]]:
        return self.state.reserve(tokens, front)

    def confirm(self, ticket: tuple[float, float]) -> float:
        return self.state.confirm(ticket)

    def feedback(self, headers: dict, status: int = 200) -> float:
        return self.state.feedback(headers, status)

    def refund(self, tokens: float) -> None:
        self.state.refund(tokens)

    def snapshot(self) -> dict:
        return self.state.snapshot()


class RemoteLimiter:
    """The limiter interface `LLMClient` expects, backed by the limiter actor (waits happen in the worker)."""

    def __init__(self, handle):
        self.handle = handle

    async def acquire(self, tokens: float, front: bool = False) -> None:
        """Charged once at the actor; after the wait the ticket is confirmed (a 429 meanwhile moves it)."""
        wait, ticket = await self.handle.reserve.remote(tokens, front)
        while wait > 0:
            await asyncio.sleep(wait)
            wait = await self.handle.confirm.remote(ticket)

    async def feedback(self, headers, status: int = 200) -> float:
        return await self.handle.feedback.remote(dict(headers or {}), status)

    async def refund(self, tokens: float) -> None:
        await self.handle.refund.remote(tokens)


@ray.remote(num_cpus=0)
class CacheActor:
    """The SQLite call cache behind an actor, for workers on any node."""

    def __init__(self, path: str):
        self.cache = CallCache(path)

    def get(self, key: str) -> dict | None:
        return self.cache.get(key)

    def put(self, key: str, row: dict) -> None:
        self.cache.put(key, **row)


class RemoteCache:
    """The async cache interface of `pipeline.profile_entity`, backed by the cache actor."""

    def __init__(self, handle):
        self.handle = handle

    async def get(self, key: str) -> dict | None:
        return await self.handle.get.remote(key)

    async def put(self, key: str, **row) -> None:
        await self.handle.put.remote(key, row)


@ray.remote(num_cpus=0)
class ProgressActor:
    """Finished entities as the workers report them (done, failed); the driver reads the counts."""

    def __init__(self):
        self.done, self.failed = 0, 0

    def report(self, failed: bool) -> None:
        self.done += 1
        self.failed += int(failed)

    def counts(self) -> tuple[int, int]:
        return self.done, self.failed


@ray.remote
class ProfileWorker:
    """Runs chunks of entities through the four steps; an async actor, so chunks overlap. Reports each
    finished entity to the progress actor (fire and forget: the report is not awaited)."""

    def __init__(self, cfg: dict, limiter, cache, progress=None):
        self.cfg = build(ProfileJobConfig, cfg, where="ProfileWorker")
        self.limiter, self.cache, self.llm = RemoteLimiter(limiter), RemoteCache(cache), None
        self.progress = progress

    async def run(self, entities: list[dict]) -> dict:
        if self.llm is None:  # created inside the actor's event loop, reading the key from this process's env
            try:
                self.llm = make_client(self.cfg, self.limiter)
            except ProfileAPIError as exc:  # e.g. the key variable is not set on this node
                return {"records": [], "failures": [], "totals": {}, "fatal": exc, "worker": os.getpid()}
        report = None if self.progress is None else (lambda r: self.progress.report.remote("kind" in r))
        out = await run_entities(
            [EntityInput(**e) for e in entities], self.cfg, OnlineAnswerer(self.llm), self.cache, report
        )
        return {**out, "worker": os.getpid()}


def start_limiter(cfg: ProfileJobConfig, name: str = "proex-llm-limiter", detached: bool = False):
    """The named limiter actor (created, or the existing one of that name in the `proex` namespace)."""
    opts = {"name": name, "namespace": NAMESPACE, "get_if_exists": True}
    if detached:
        opts["lifetime"] = "detached"
    return RateLimiterActor.options(**opts).remote(cfg.rpm, cfg.tpm, cfg.burst_s, cfg.headroom)


def generate_ray(
    cfg: ProfileJobConfig,
    inter: Interactions,
    workers: int = 2,
    worker_cpus: float = 0.25,
    limiter_name: str = "proex-llm-limiter",
    detached_limiter: bool = False,
) -> dict:
    """The profile job on the connected Ray cluster (`ray.init` first); same outputs and errors as
    `pipeline.generate`."""
    cfg.check()
    if cfg.batch:  # the Batch API path needs no workers: the provider runs the calls
        from ..profiles.pipeline import generate

        return generate(cfg, inter)
    if not ray.is_initialized():
        raise RuntimeError("call ray.init(...) before generate_ray (ray_jobs/profiles.py does)")
    entities = [e for side in cfg.sides for e in entity_inputs(inter, side, cfg)]
    t0 = time.time()
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    limiter = start_limiter(cfg, limiter_name, detached_limiter)
    cache = CacheActor.options(scheduling_strategy=here).remote(cfg.cache_file)
    progress = ProgressActor.options(scheduling_strategy=here).remote()
    pool = [
        ProfileWorker.options(num_cpus=worker_cpus).remote(dataclasses.asdict(cfg), limiter, cache, progress)
        for _ in range(workers)
    ]
    chunks = [entities[i : i + cfg.concurrency] for i in range(0, len(entities), cfg.concurrency)][::-1]
    running: dict = {}  # ObjectRef -> (worker index, chunk)
    dead: set[int] = set()
    merged = {"records": [], "failures": [], "totals": Totals(), "fatal": None, "workers": []}
    bar = Progress(len(entities), cfg.progress)

    def fail(ents, kind: str, message: str) -> None:
        merged["failures"].extend(
            {"side": e.side, "id": e.id, "kind": kind, "step": "", "message": message} for e in ents
        )

    try:
        while chunks or running:
            while chunks and merged["fatal"] is None:
                idle = [w for w in range(workers) if w not in dead and sum(v[0] == w for v in running.values()) < 2]
                if not idle:
                    break
                chunk = chunks.pop()
                running[pool[idle[0]].run.remote([dataclasses.asdict(e) for e in chunk])] = (idle[0], chunk)
            if not running:  # every worker died: report what is left
                fail([e for c in chunks for e in c], "worker_error", "all Ray workers died; rerun to resume")
                break
            done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            shown = (bar.done, bar.failed)
            now = ray.get(progress.counts.remote())
            bar.update(now[0] - shown[0], failed=now[1] - shown[1])
            if not done:
                continue
            w, chunk = running.pop(done[0])
            try:
                out = ray.get(done[0])
            except ray.exceptions.RayError as exc:  # worker crashed or node lost: report, go on with the rest
                dead |= {w} if isinstance(exc, ray.exceptions.RayActorError) else set()
                fail(
                    chunk,
                    "worker_error",
                    f"Ray worker failed: {type(exc).__name__}; rerun to retry (cached calls are kept)",
                )
                continue
            merged["records"] += out["records"]
            merged["failures"] += out["failures"]
            merged["totals"].add(out["totals"])
            merged["workers"] = sorted(set(merged["workers"]) | {out["worker"]})
            if out["fatal"] is not None and merged["fatal"] is None:
                merged["fatal"] = out["fatal"]
                why = f"job stopped before this entity finished: {out['fatal']}"
                seen = {(r["side"], r["id"]) for r in out["records"] + out["failures"]}
                fail([e for e in chunk if (e.side, e.id) not in seen], "stopped", why)
                for ref in running:  # stop the others; their entities are listed as stopped
                    ray.cancel(ref)
                fail([e for _, c in running.values() for e in c] + [e for c in chunks for e in c], "stopped", why)
                running, chunks = {}, []
        bar.update(len(entities) - bar.done, failed=max(0, len(merged["failures"]) - bar.failed))  # crashed chunks
        merged["limiter"] = ray.get(limiter.snapshot.remote())
    finally:
        bar.close()
        for actor in pool + [cache, progress] + ([] if detached_limiter else [limiter]):
            ray.kill(actor)
    merged["totals"] = dataclasses.asdict(merged["totals"])
    fatal = merged["fatal"]
    if fatal is not None and not isinstance(fatal, ProfileAPIError):
        fatal = merged["fatal"] = ProfileAPIError(str(fatal), "fatal", fatal=True)
    summary = write_outputs(cfg, inter, merged, time.time() - t0, backend=f"ray ({workers} workers)")
    if fatal is not None:
        raise fatal
    return summary
