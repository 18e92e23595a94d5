"""Client-side rate limiting for the LLM profile stage (issue #4): token buckets for requests/min and tokens/min.

Why: the paper's profiles (sec. 2.3.1) cost 4 chat calls per entity; at 20k+ entities the job lives or dies by
the provider's limits. Sending only what the buckets allow keeps a job at the limit without a 429 storm, and
the server's own answers (429 + Retry-After, `x-ratelimit-*` headers) correct the buckets when the provider's
real limits are lower than configured or the key is shared with other jobs.

Design: `BucketState` is plain, synchronous and clock-driven (no asyncio, no Ray) so one implementation serves
the in-process `AsyncLimiter` and the Ray limiter actor (`proex.infra.profile_actors`). It works by
*reservation*: `reserve(tokens)` takes one request and `tokens` tokens from the buckets at once, letting the
level go negative, and returns how long the caller must wait before sending. Callers are therefore served in
arrival order and the long-run rate is exactly the bucket rate. A 429 sets a global pause (`blocked_until`)
and starts a new epoch: a caller whose reservation predates the 429 reserves again after the pause instead of
firing with everyone else the moment it ends (which would just provoke the next 429).
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

MAX_RESET_PAUSE_S = 20.0  # a reset header is the time to a full bucket; never stall a whole job longer on it
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str | None) -> float | None:
    """OpenAI reset strings ("1s", "6m0s", "20ms", "1h2m3.5s") or plain seconds ("2.5") -> seconds; None if unparsable."""
    if text is None:
        return None
    text = str(text).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        return None
    scale = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds form), else None."""
    if not headers:
        return None
    h = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in h:
        try:
            return max(0.0, float(h["retry-after-ms"]) / 1000.0)
        except ValueError:
            pass
    return parse_duration(h.get("retry-after"))


@dataclass
class Bucket:
    """One token bucket: `rate` units/s (at most `ceiling`), `capacity` units banked; `level` may go negative."""

    rate: float
    capacity: float
    level: float
    stamp: float
    ceiling: float = 0.0

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for_debt(self) -> float:
        return 0.0 if self.level >= 0 else -self.level / self.rate


@dataclass
class BucketState:
    """Requests/min and tokens/min buckets plus the 429 pause; all times from `clock` (seconds).

    rpm, tpm: the configured limits (<= 0 disables that bucket). burst_s: how many seconds of traffic may be
    sent at once from a full bucket (small = smooth; the provider's own bucket holds a full minute).
    """

    rpm: float
    tpm: float
    burst_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    blocked_until: float = 0.0
    epoch: int = 0
    stats: dict = field(default_factory=lambda: {"reserved": 0, "throttled_429": 0, "header_syncs": 0,
                                                 "rate_cuts": 0})

    def __post_init__(self) -> None:
        now = self.clock()
        self.requests = self._bucket(self.rpm, now, minimum=1.0)
        self.tokens = self._bucket(self.tpm, now, minimum=1.0)

    def _bucket(self, per_min: float, now: float, minimum: float) -> Bucket | None:
        if per_min <= 0:
            return None
        cap = max(minimum, per_min * self.burst_s / 60.0)
        return Bucket(per_min / 60.0, cap, cap, now, per_min / 60.0)

    def reserve(self, tokens: float, epoch: int | None = None) -> tuple[float, int]:
        """Take 1 request and `tokens` tokens; return (seconds to wait before sending, epoch of the reservation).

        Called again with the epoch of an earlier reservation after its wait: (0, epoch) if no 429 came in
        between (send now), else a fresh reservation behind the pause.
        """
        if epoch is not None and epoch == self.epoch:
            return 0.0, epoch
        now = self.clock()
        self.stats["reserved"] += 1
        wait = max(0.0, self.blocked_until - now)
        for bucket, amount in ((self.requests, 1.0), (self.tokens, float(tokens))):
            if bucket is not None:
                bucket.refill(now)
                bucket.level -= amount
                wait = max(wait, bucket.wait_for_debt())
        return wait, self.epoch

    def blocked_for(self) -> float:
        """Seconds left of a 429 pause (0 when none)."""
        return max(0.0, self.blocked_until - self.clock())

    def refund(self, tokens: float) -> None:
        """Give back tokens reserved but not used (estimate minus the usage the server reported)."""
        if self.tokens is not None and tokens:  # negative: the call used more than reserved, charge it
            self.tokens.refill(self.clock())
            self.tokens.level = min(self.tokens.capacity, self.tokens.level + tokens)

    def feedback(self, headers: Mapping[str, str] | None, status: int = 200) -> None:
        """Correct the buckets from a response: 429 pauses everyone for Retry-After (else the shortest
        `x-ratelimit-reset-*`, at most MAX_RESET_PAUSE_S, else 1 s); `x-ratelimit-limit-*` lowers a limit the
        provider enforces below ours; `x-ratelimit-remaining-*` lowers our level to what the provider says is left
        minus one (another job may share the key; the spare unit absorbs arrival jitter at a nearly empty
        bucket). A reset time is the time to a *full* bucket, so remaining 0 alone does not pause: a level at 0
        already spaces the next requests at the bucket rate.

        For servers that throttle without sending limit headers, rates also adapt AIMD-style: x0.8 per 429 (never below
        5% of the ceiling), x1.01 per success up to the ceiling (the configured or advertised limit).
        """
        h = {k.lower(): v for k, v in (headers or {}).items()}
        now = self.clock()
        pause = 0.0
        if status == 429:
            self.stats["throttled_429"] += 1
            resets = [parse_duration(h.get(f"x-ratelimit-reset-{kind}")) for kind in ("requests", "tokens")]
            pause = retry_after_seconds(h) or min(min([r for r in resets if r] or [1.0]), MAX_RESET_PAUSE_S)
            for bucket in (self.requests, self.tokens):
                if bucket is not None:
                    bucket.refill(now)
                    bucket.level = min(bucket.level, 0.0)
                    bucket.rate = max(0.05 * bucket.ceiling, 0.8 * bucket.rate)
            self.stats["rate_cuts"] += 1
        elif status < 400:
            for bucket in (self.requests, self.tokens):
                if bucket is not None:
                    bucket.refill(now)
                    bucket.rate = min(bucket.ceiling, bucket.rate * 1.01)
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is None:
                continue
            limit = _number(h.get(f"x-ratelimit-limit-{kind}"))
            if limit and limit / 60.0 < bucket.ceiling:
                bucket.refill(now)
                bucket.ceiling = limit / 60.0
                bucket.rate = min(bucket.rate, bucket.ceiling)
            if limit and status < 400:  # an advertised limit is authoritative: no need to probe back up
                bucket.rate = bucket.ceiling
                bucket.capacity = max(1.0, min(bucket.capacity, limit * self.burst_s / 60.0))
                bucket.level = min(bucket.level, bucket.capacity)
            remaining = _number(h.get(f"x-ratelimit-remaining-{kind}"))
            if remaining is not None:  # keep one unit of slack at the server: arrival jitter then costs no 429
                bucket.refill(now)
                if remaining - 1 < bucket.level:
                    bucket.level = remaining - 1
                    self.stats["header_syncs"] += 1
        if pause > 0 and now + pause > self.blocked_until:
            self.blocked_until = now + pause
            self.epoch += 1

    def snapshot(self) -> dict:
        """Current limits and counters (for the summary and tests)."""
        return {"rpm": self.requests.rate * 60 if self.requests else None,
                "tpm": self.tokens.rate * 60 if self.tokens else None,
                "blocked_for_s": round(self.blocked_for(), 3), **self.stats}


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class AsyncLimiter:
    """The in-process limiter shared by all async workers of one job (one event loop).

    The Ray path exposes the same three coroutines from a limiter actor, so `client.LLMClient` accepts either.
    """

    def __init__(self, rpm: float, tpm: float, burst_s: float = 1.0):
        self.state = BucketState(rpm, tpm, burst_s)

    async def acquire(self, tokens: float) -> None:
        """Wait until one request of `tokens` tokens may be sent (FIFO), then until any 429 pause is over."""
        wait, epoch = self.state.reserve(tokens)
        while wait > 0:
            await asyncio.sleep(wait)
            wait, epoch = self.state.reserve(tokens, epoch)

    async def feedback(self, headers: Mapping[str, str] | None, status: int = 200) -> None:
        self.state.feedback(headers, status)

    async def refund(self, tokens: float) -> None:
        self.state.refund(tokens)

    async def snapshot(self) -> dict:
        return self.state.snapshot()
