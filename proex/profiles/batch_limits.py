"""The Batch API's stated limits, applied before anything is uploaded (used by `batch.BatchJob`).

OpenAI documents three: at most 50,000 requests and 200 MB per input file, and an *enqueued-token* limit per
model and account tier (the prompt tokens of all the account's batches that are validating, in progress or
finalizing; e.g. 2,000,000 for gpt-4o-mini at tier 1). A batch that would pass the last one is not run: it ends
`failed` as a whole, with `errors.data[].code == "token_limit_exceeded"` and a message that states the limit
("... Limit: 2,000,000 enqueued tokens. Please try again once some in_progress batches have been completed.").

    split_requests    consecutive groups of request lines, each within the row, byte and token caps
    batch_errors      a batch's whole-batch errors as [{"code", "message"}]
    enqueued_limit    the limit a token_limit_exceeded message states, or None
"""
from __future__ import annotations

import re

QUEUED = ("validating", "in_progress", "finalizing")  # statuses whose tokens count as enqueued
_LIMIT = re.compile(r"limit:?\s*([\d,_]+)\s*enqueued tokens", re.IGNORECASE)


def split_requests(sizes: list[int], tokens: list[int], max_rows: int, max_bytes: int,
                   max_tokens: float = float("inf")) -> list[range]:
    """Index ranges of consecutive requests, each group at most `max_rows` lines, `max_bytes` bytes (sizes:
    each JSONL line's bytes, newline included) and `max_tokens` estimated tokens. A single request over the
    byte cap cannot be sent at all (ValueError); one over the token cap goes alone (the provider decides)."""
    groups, start, size, toks = [], 0, 0, 0
    for i, (b, t) in enumerate(zip(sizes, tokens)):
        if b > max_bytes:
            raise ValueError(f"one batch request is {b:,} bytes, over batch_max_bytes={max_bytes:,}; raise "
                             "batch_max_bytes (--set batch_max_bytes=...) up to the provider's limit or lower "
                             "max_input_chars")
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
    data = getattr(errors, "data", None) if errors is not None and not isinstance(errors, dict) else \
        (errors or {}).get("data")
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
