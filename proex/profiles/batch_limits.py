"""The Batch API's stated limits, applied before anything is uploaded (used by `batch.BatchJob`).

OpenAI documents three: at most 50,000 requests and 200 MB per input file, and an *enqueued-token* limit per
model and account tier (the prompt tokens of all the account's batches that are validating, in progress or
finalizing; e.g. 2,000,000 for gpt-4o-mini at tier 1). A batch that would pass the last one is not run: it ends
`failed` as a whole, with `errors.data[].code == "token_limit_exceeded"` and a message that states the limit
("... Limit: 2,000,000 enqueued tokens. Please try again once some in_progress batches have been completed.").

    split_requests    consecutive groups of request lines, each within the row, byte and token caps
    batch_errors      a batch's whole-batch errors as [{"code", "message"}]
    enqueued_limit    the limit a token_limit_exceeded message states, or None
    TokenLimit        what one job may enqueue: learnt from refusals, halved when refused within it anyway
    wait_for_queue    poll until none of the account's batches holds the queue
"""

from __future__ import annotations

import logging
import re
import time

from .client import ProfileAPIError

log = logging.getLogger("proex.profiles.batch")

QUEUED = ("validating", "in_progress", "finalizing")  # statuses whose tokens count as enqueued
_LIMIT = re.compile(r"limit:?\s*([\d,_]+)\s*enqueued tokens", re.IGNORECASE)


def split_requests(
    sizes: list[int], tokens: list[int], max_rows: int, max_bytes: int, max_tokens: float = float("inf")
) -> list[range]:
    """Index ranges of consecutive requests, each group at most `max_rows` lines, `max_bytes` bytes (sizes:
    each JSONL line's bytes, newline included) and `max_tokens` estimated tokens. A single request over the
    byte cap cannot be sent at all (ValueError); one over the token cap goes alone (the provider decides)."""
    groups, start, size, toks = [], 0, 0, 0
    for i, (b, t) in enumerate(zip(sizes, tokens)):
        if b > max_bytes:
            raise ValueError(
                f"one batch request is {b:,} bytes, over batch_max_bytes={max_bytes:,}; raise "
                "batch_max_bytes (--set batch_max_bytes=...) up to the provider's limit or lower "
                "max_input_chars"
            )
        if i > start and (i - start >= max_rows or size + b > max_bytes or toks + t > max_tokens):
            groups.append(range(start, i))
            start, size, toks = i, 0, 0
        size, toks = size + b, toks + t
    if start < len(sizes):
        groups.append(range(start, len(sizes)))
    return groups


def batch_errors(batch) -> list[dict]:
    """[{"code", "message"}] of a batch that failed as a whole (OpenAI: `batch.errors.data`)."""
    errors = getattr(batch, "errors", None)
    data = (
        getattr(errors, "data", None)
        if errors is not None and not isinstance(errors, dict)
        else (errors or {}).get("data")
    )
    out = []
    for e in data or []:
        get = e.get if isinstance(e, dict) else (lambda k, e=e: getattr(e, k, None))
        out.append({"code": get("code") or "", "message": get("message") or ""})
    return out


def enqueued_limit(message: str) -> int | None:
    """The enqueued-token limit a token_limit_exceeded message states (e.g. "Limit: 2,000,000 enqueued
    tokens" -> 2000000), or None if it names no number."""
    m = _LIMIT.search(message or "")
    return int(m.group(1).replace(",", "").replace("_", "")) if m else None


class TokenLimit:
    """The enqueued-token budget of one job: `limit` (configured, else stated by the first refusal) times
    `scale` (the job's headroom; halved whenever a batch within the budget is refused all the same, e.g. when
    the provider counts tokens differently from the estimate)."""

    MAX_REFUSALS = 8  # refusals in a row before the job gives up

    def __init__(self, limit: int | None, headroom: float, model: str):
        self.limit, self.scale, self.model, self.refusals = limit or None, headroom, model, 0

    @property
    def budget(self) -> float:
        return self.limit * self.scale if self.limit else float("inf")

    def accepted(self) -> None:
        self.refusals = 0

    def refused(self, batch_id: str, errors: list[dict], tokens: int) -> str:
        """Account for a batch that ended `failed` as a whole; the sentence that says what happened and what
        comes next. Raises a fatal ProfileAPIError for errors other than the token limit (resending the same
        file fails the same way) and after MAX_REFUSALS refusals in a row."""
        text = "; ".join(f"{e['code']}: {e['message']}" for e in errors) or "no errors given"
        if not any(e["code"] == "token_limit_exceeded" for e in errors):
            raise ProfileAPIError(
                f"the Batch API refused batch {batch_id} as a whole ({text}); none of its rows "
                "ran. Fix what it names and rerun",
                "batch_refused",
                fatal=True,
            )
        self.refusals += 1
        stated = next((n for n in (enqueued_limit(e["message"]) for e in errors) if n), None)
        if stated and stated != self.limit:
            self.limit = stated
        else:  # refused within the known (or an unstated) limit: enqueue half as much
            self.limit = self.limit or max(1, tokens)
            self.scale /= 2
        if self.refusals > self.MAX_REFUSALS:
            raise ProfileAPIError(
                f"the Batch API refused {self.refusals} batches in a row for the enqueued-token "
                f"limit of {self.model} ({self.limit:,} tokens; other batches of this account "
                "may hold the queue); rerun later",
                "batch_token_limit",
                fatal=True,
            )
        return (
            f"refused as a whole, nothing ran: enqueued-token limit of {self.limit:,} tokens for {self.model} "
            f"({text}); its rows go again, once the queue is empty, in batches of at most "
            f"{int(self.budget):,} estimated prompt tokens"
        )


def wait_for_queue(client, poll_s: float, limit: int | None) -> None:
    """Poll the account's batches until none is validating, in progress or finalizing (they hold the limit)."""
    said = False
    while True:
        busy = [b.id for b in client.batches.list(limit=100) if b.status in QUEUED]
        if not busy:
            return
        if not said:
            log.warning(
                "Batch API: waiting for %d batch(es) in progress (%s) to end: they hold the enqueued-token "
                "limit of %s tokens",
                len(busy),
                ", ".join(busy[:5]),
                f"{limit:,}" if limit else "?",
            )
            said = True
        time.sleep(poll_s)
