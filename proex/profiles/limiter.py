"""Client-side rate limiting for the LLM profile stage: token buckets for requests/min and tokens/min.

Why: the paper's profiles (sec. 2.3.1) cost 4 chat calls per entity; at 20k+ entities the job lives or dies by
the provider's limits. Sending only what the buckets allow keeps a job at the limit without a 429 storm, and
the server's own answers (429 + Retry-After, `x-ratelimit-*` headers) correct the buckets when the provider's
real limits are lower than configured or the key is shared with other jobs.

Design: `BucketState` is plain, synchronous and clock-driven (no asyncio, no Ray) so one implementation serves
the in-process `AsyncLimiter` and the Ray limiter actor (`proex.infra.profile_actors`). It works by
*reservation*: `reserve(tokens)` charges one request and `tokens` tokens at once, letting the level go negative,
and returns how long the caller must wait and a ticket. Callers are served in arrival order at the bucket rate,
which aims a little below the limit (`headroom`). A 429 charges nothing again: it moves every ticket not yet
sent, and the buckets, by the pause the server asked for (Retry-After), so the job resumes as soon as the
server allows, at the same rate, with the rejected request first.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

MAX_RESET_PAUSE_S = 20.0  # a reset header is the time to a full bucket; never stall a whole job longer on it
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str | None) -> float | None:
    """OpenAI reset strings ("1s", "6m0s", "20ms", "1h2m3.5s") or plain seconds ("2.5") -> seconds; None if
    unparsable."""
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
    headroom: the fraction of a limit the buckets aim at (configured or advertised): a strict sliding-window
    server answers 429 to a client that runs at exactly its limit plus a burst, so aim a little below it.

    Every request is charged exactly once, by `reserve`, which hands out a ticket (send time, shift at
    reservation). A 429 does not re-charge the queue: it shifts every ticket not yet sent by the pause the
    server asked for (`shift` grows by the part of the pause not already covered), and the buckets by the same
    time, so the queue resumes when the server allows, in order, at the bucket rate. The rejected request's
    retry takes the first slot after the pause (`reserve(front=True)`), pushing the queue back by one slot.
    """

    rpm: float
    tpm: float
    burst_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    headroom: float = 0.97
    blocked_until: float = 0.0
    shift: float = 0.0
    front_next: float = 0.0
    stats: dict = field(
        default_factory=lambda: {"reserved": 0, "throttled_429": 0, "header_syncs": 0, "rate_cuts": 0, "paused_s": 0.0}
    )

    def __post_init__(self) -> None:
        if not 0 < self.headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {self.headroom}")
        now = self.clock()
        self.requests = self._bucket(self.rpm, now, minimum=1.0)
        self.tokens = self._bucket(self.tpm, now, minimum=1.0)

    def _bucket(self, per_min: float, now: float, minimum: float) -> Bucket | None:
        if per_min <= 0:
            return None
        rate = self.headroom * per_min / 60.0
        cap = max(minimum, rate * self.burst_s)
        return Bucket(rate, cap, cap, now, rate)

    def _buckets(self, tokens: float):
        return [(b, a) for b, a in ((self.requests, 1.0), (self.tokens, float(tokens))) if b is not None]

    def _slot(self, tokens: float) -> float:
        """Seconds one request of `tokens` tokens occupies at the current rates."""
        return max([a / b.rate for b, a in self._buckets(tokens)] or [0.0])

    def reserve(self, tokens: float, front: bool = False) -> tuple[float, tuple[float, float]]:
        """Charge one request and `tokens` tokens; return (seconds to wait, ticket). Pass the ticket to
        `confirm` after the wait: a 429 in between may have moved it (without charging anything again).

        front=True: the retry of a request a 429 just rejected; it is sent first once the pause ends (in the
        order of the rejections), and the queue behind it moves back by one slot.
        """
        now = self.clock()
        self.stats["reserved"] += 1
        slot = self._slot(tokens)
        for bucket, amount in self._buckets(tokens):
            bucket.refill(now)
            bucket.level -= amount
        if front:
            at = max(now, self.blocked_until, self.front_next)
            self.front_next = at + slot
            self.shift += slot  # the tickets already handed out move behind this one
            return at - now, (at, self.shift)
        wait = max([self.blocked_until - now] + [b.wait_for_debt() for b, _ in self._buckets(tokens)])
        at = now + max(0.0, wait)
        return at - now, (at, self.shift)

    def confirm(self, ticket: tuple[float, float]) -> float:
        """Seconds still to wait for a ticket of `reserve` (0: send now). Never charges."""
        at, shift_then = ticket
        return max(0.0, at + (self.shift - shift_then) - self.clock())

    def blocked_for(self) -> float:
        """Seconds left of a 429 pause (0 when none)."""
        return max(0.0, self.blocked_until - self.clock())

    def refund(self, tokens: float) -> None:
        """Give back tokens reserved but not used (estimate minus the usage the server reported)."""
        if self.tokens is not None and tokens:  # negative: the call used more than reserved, charge it
            self.tokens.refill(self.clock())
            self.tokens.level = min(self.tokens.capacity, self.tokens.level + tokens)

    def feedback(self, headers: Mapping[str, str] | None, status: int = 200) -> float:
        """Correct the buckets from a response; returns the 429 pause in seconds (0 otherwise).

        A 429 pauses everyone for Retry-After (else the shortest `x-ratelimit-reset-*`, at most
        MAX_RESET_PAUSE_S, else 1 s): every ticket not yet sent and the buckets move by the part of that pause
        not already covered by an earlier one (several 429s of one burst do not stack). `x-ratelimit-limit-*`
        sets the ceiling to headroom x the advertised limit; `x-ratelimit-remaining-*` lowers our level to what
        the provider says is left minus one (another job may share the key). A reset time is the time to a
        *full* bucket, so remaining 0 alone does not pause: a level at 0 already spaces requests at the rate.

        For servers that throttle without sending limit headers, rates also adapt AIMD-style: x0.8 per 429
        that advertises no limit (never below 5% of the ceiling), x1.01 per success up to the ceiling.
        """
        h = {k.lower(): v for k, v in (headers or {}).items()}
        now = self.clock()
        pause = 0.0
        if status == 429:
            self.stats["throttled_429"] += 1
            resets = [parse_duration(h.get(f"x-ratelimit-reset-{kind}")) for kind in ("requests", "tokens")]
            pause = retry_after_seconds(h) or min(min([r for r in resets if r] or [1.0]), MAX_RESET_PAUSE_S)
            if not any(f"x-ratelimit-limit-{kind}" in h for kind in ("requests", "tokens")):
                for bucket in (self.requests, self.tokens):  # no advertised limit: find it from the 429s
                    if bucket is not None:
                        bucket.refill(now)
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
            target = self.headroom * limit / 60.0 if limit else None
            if target and target < bucket.ceiling:
                bucket.refill(now)
                bucket.ceiling = target
                bucket.rate = min(bucket.rate, bucket.ceiling)
            if target and status < 400:  # an advertised limit is authoritative: no need to probe back up
                bucket.rate = bucket.ceiling
                bucket.capacity = max(1.0, min(bucket.capacity, bucket.ceiling * self.burst_s))
                bucket.level = min(bucket.level, bucket.capacity)
            remaining = _number(h.get(f"x-ratelimit-remaining-{kind}"))
            if remaining is not None and status != 429:  # one unit of slack at the server absorbs jitter
                bucket.refill(now)
                if remaining - 1 < bucket.level:
                    bucket.level = remaining - 1
                    self.stats["header_syncs"] += 1
        if pause > 0:
            extra = now + pause - max(now, self.blocked_until)
            if extra > 0:  # the part of this pause not already covered by an earlier 429
                self.blocked_until = now + pause
                self.shift += extra
                self.stats["paused_s"] += extra
                for bucket in (self.requests, self.tokens):
                    if bucket is not None:  # no credit accrues during the pause: the queue moves, not grows
                        bucket.refill(now)
                        bucket.level = min(bucket.level, 0.0) - extra * bucket.rate
        return pause

    def snapshot(self) -> dict:
        """Current limits and counters (for the summary and tests)."""
        return {
            "rpm": self.requests.rate * 60 if self.requests else None,
            "tpm": self.tokens.rate * 60 if self.tokens else None,
            "blocked_for_s": round(self.blocked_for(), 3),
            **{**self.stats, "paused_s": round(self.stats["paused_s"], 3)},
        }


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class AsyncLimiter:
    """The in-process limiter shared by all async workers of one job (one event loop).

    The Ray path exposes the same coroutines from a limiter actor, so `client.LLMClient` accepts either.
    """

    def __init__(self, rpm: float, tpm: float, burst_s: float = 1.0, headroom: float = 0.97):
        self.state = BucketState(rpm, tpm, burst_s, headroom=headroom)

    async def acquire(self, tokens: float, front: bool = False) -> None:
        """Wait until one request of `tokens` tokens may be sent: charged once, in arrival order (front=True:
        the retry of a request a 429 rejected, first after the pause); a 429 meanwhile moves the wait."""
        wait, ticket = self.state.reserve(tokens, front)
        while wait > 0:
            await asyncio.sleep(wait)
            wait = self.state.confirm(ticket)

    async def feedback(self, headers: Mapping[str, str] | None, status: int = 200) -> float:
        return self.state.feedback(headers, status)

    async def refund(self, tokens: float) -> None:
        self.state.refund(tokens)

    async def snapshot(self) -> dict:
        return self.state.snapshot()
