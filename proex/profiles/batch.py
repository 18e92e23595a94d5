"""`--batch`: the profile job through the OpenAI Batch API (half the price, its own much larger limits).

The four steps become rounds. Each round walks every entity through `chain.profile_entity` against the cache,
exactly as the online job does (same prompts, same validation, same repairs and attempts), except that a call
not in the cache is not sent: it is collected (`Deferred`). The round's calls are split into input files within
the provider's stated limits (`batch_limits.split_requests`: `batch_max_rows` lines, `batch_max_bytes` bytes,
and, once known, the account's enqueued-token limit), uploaded to /v1/files and run as batches on
/v1/chat/completions; the job polls them, downloads the output and error files and caches every answer. The next
round then finds those answers: valid ones lead to the next step, invalid ones to a repair, failed rows are
asked again (at most `batch_row_attempts` times per run). The job ends when a round has nothing to ask.

Never billed twice: creating a batch is never retried blindly (the SDK's retries are off for that call, which
carries no idempotency key). After an error or a timeout the job looks the batch up by the submission id in its
metadata, and creates it again only if none exists. The same lookup finds a batch created just before a kill.

A batch that ends `failed` as a whole (nothing ran, nothing billed) is not a failure of its rows. For
`token_limit_exceeded` the job reads the limit from the error, logs it, waits until the account's queue has
drained (no batch validating, in progress or finalizing) and sends smaller batches, each within the limit
(prompt tokens estimated per request; never more enqueued at once); other whole-batch errors stop the job
with the provider's message.

Resumable: before anything is uploaded the submission and its rows are committed to the cache's SQLite file
(`batch_store.BatchStore`), then the file id, then the batch id; a restarted job (after `kill -9`) first finishes
the open submissions (it finds a batch whose id it had not recorded by the submission id in the batch's
metadata) and never submits a pending row again. The key is read from the environment and is in no file:
the request lines carry model, messages and options only; local copies of the input, output and error files
are kept in `<out_dir>/batches/` for inspection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

from .batch_limits import TokenLimit, batch_errors, split_requests, wait_for_queue
from .batch_store import BatchStore
from .cache import AsyncCallCache, CallCache
from .chain import Deferred, EntityFailure, Totals, profile_entity
from .client import ProfileAPIError, Redactor, RequestOptions, estimate_tokens, format_of, read_key
from .outputs import Progress, write_outputs
from .prompts import PROMPT_VERSION, entity_inputs, json_schema

TERMINAL = ("completed", "failed", "expired", "cancelled")
CREATE_TRIES = 5  # attempts at creating one batch (each after looking it up first)
log = logging.getLogger(__name__)


class _Collector:
    """The answerer of a batch round: raises Deferred for a call to submit, or fails a call whose rows already
    failed `attempts` times in this run."""

    def __init__(self, failed: dict[str, tuple[int, str]], attempts: int):
        self.failed, self.attempts, self.redact = failed, attempts, str

    async def answer(self, call):
        n, message = self.failed.get(call.key, (0, ""))
        if n >= self.attempts:
            raise ProfileAPIError(
                f"{call.side} {call.entity} step {call.name}: failed in {n} batches this run "
                f"(last: {message}); rerun to ask again",
                "batch_error",
            )
        raise Deferred(call)


class BatchJob:
    """One `--batch` run: the cache, the batch records, the OpenAI client, the totals of answers downloaded."""

    def __init__(self, cfg, inter):
        import openai  # the `llm` extra

        self.cfg, self.inter, self.oa = cfg, inter, openai
        key = read_key(cfg.api_key_env)
        self.redact = Redactor(key)
        self.client = openai.OpenAI(api_key=key, base_url=cfg.base_url, timeout=cfg.timeout_s, max_retries=5)
        self.cache = CallCache(cfg.cache_file)
        self.store = BatchStore(self.cache.db)
        self.options = RequestOptions(cfg.response_format, cfg.seed, cfg.max_tokens_field, cfg.base_url)
        self.limit = TokenLimit(cfg.batch_enqueued_tokens, cfg.headroom, cfg.model)
        self.tokens: dict[str, int] = {}  # submission -> its estimated prompt tokens (this run's)
        self.drain = False  # a batch was refused for the token limit: wait for the queue before the next round
        self.files = Path(cfg.out_dir) / "batches"
        self.files.mkdir(parents=True, exist_ok=True)
        self.got = Totals()  # answers downloaded by this run
        self.started = time.time()
        self.entities = [e for side in cfg.sides for e in entity_inputs(inter, side, cfg)]

    def run(self) -> dict:
        """Rounds until nothing is left to ask; returns {"records", "failures", "totals", "fatal", "batches"}."""
        bar = Progress(len(self.entities), self.cfg.progress)
        round_ = 1 + max([s["round"] or 0 for s in self.store.submissions()] or [0])
        records, failures, cached, fatal = [], [], Totals(), None
        try:
            while True:
                self._finish_open()
                if self.drain:
                    self._api(wait_for_queue, self.client, self.cfg.batch_poll_s, self.limit.limit)
                    self.drain = False
                records, failures, calls, cached = asyncio.run(self._walk())
                bar.update(len(records) + len(failures) - bar.done, failed=len(failures) - bar.failed)
                if not calls:
                    break
                lines = self._lines(calls)
                sizes = [len(line) for line in lines]
                tokens = [sum(estimate_tokens(m["content"]) + 4 for m in c.messages) for c in calls]
                budget, enqueued = self.limit.budget, 0
                for group in split_requests(sizes, tokens, self.cfg.batch_max_rows, self.cfg.batch_max_bytes, budget):
                    need = sum(tokens[i] for i in group)
                    if enqueued and enqueued + need > budget:  # within the limit: the earlier ones must end first
                        self._finish_open()
                        enqueued = 0
                    self._api(self._submit, [calls[i] for i in group], [lines[i] for i in group], round_, need)
                    enqueued += need
                round_ += 1
        except ProfileAPIError as exc:
            if not exc.fatal:
                raise
            fatal, why = exc, f"job stopped before this entity finished: {exc}"
            final = {(r["side"], r["id"]) for r in records} | {(f["side"], f["id"]) for f in failures}
            failures = failures + [
                {"side": e.side, "id": e.id, "kind": "stopped", "step": "", "message": why}
                for e in self.entities
                if (e.side, e.id) not in final
            ]
        finally:
            bar.close()
        # the last walk read every answer from the cache; those this run downloaded count as sent, not cached
        totals = Totals(**vars(self.got))
        totals.cached = max(0, cached.cached - self.got.sent)
        totals.cached_prompt_tokens = max(0, cached.cached_prompt_tokens - self.got.prompt_tokens)
        totals.cached_completion_tokens = max(0, cached.cached_completion_tokens - self.got.completion_tokens)
        totals.cached_batch_prompt_tokens = max(0, cached.cached_batch_prompt_tokens - self.got.prompt_tokens)
        totals.cached_batch_completion_tokens = max(
            0, cached.cached_batch_completion_tokens - self.got.completion_tokens
        )
        return {
            "records": records,
            "failures": failures,
            "totals": totals.__dict__,
            "fatal": fatal,
            "batches": self.store.submissions(),
        }

    async def _walk(self):
        """One pass over every entity: finished records, failures, the calls to submit, cache-hit totals."""
        collector = _Collector(self.store.failures_since(self.started), self.cfg.batch_row_attempts)
        pending = self.store.pending_keys()
        records, failures, calls, totals, cache = [], [], {}, Totals(), AsyncCallCache(self.cache)
        for ent in self.entities:
            try:
                records.append(await profile_entity(ent, self.cfg, collector, cache, totals, self.started))
            except Deferred as d:
                if d.call.key not in pending:
                    calls[d.call.key] = d.call
            except EntityFailure as exc:
                failures.append(
                    {"side": ent.side, "id": ent.id, "kind": exc.kind, "step": exc.step, "message": str(exc)}
                )
        return records, failures, list(calls.values()), totals

    def _lines(self, calls: list) -> list[bytes]:
        """One JSONL request line per call (custom_id = the call's cache key)."""
        cfg, out = self.cfg, []
        for c in calls:
            body = {
                "model": cfg.model,
                "messages": c.messages,
                "temperature": cfg.temperature,
                **self.options.cap(cfg.max_tokens),
                **self.options.fields(json_schema(c.step), f"proex_{c.step}", c.seed, c.items),
            }
            line = {"custom_id": c.key, "method": "POST", "url": "/v1/chat/completions", "body": body}
            out.append((json.dumps(line, ensure_ascii=False) + "\n").encode())
        return out

    def _submit(self, calls: list, lines: list[bytes], round_: int, tokens: int) -> None:
        """Record the submission, upload its JSONL, create the batch; each id committed as soon as it is known."""
        rows = []
        for c, line in zip(calls, lines):
            body = json.loads(line)["body"]
            rows.append(
                {
                    "key": c.key,
                    "side": c.side,
                    "entity": c.entity,
                    "step": c.name,
                    "input_hash": c.input_hash,
                    "seed": body.get("seed"),
                    "response_format": format_of(body.get("response_format")),
                }
            )
        sub = self.store.prepare(round_, rows)
        data = b"".join(lines)
        (self.files / f"{sub}.input.jsonl").write_bytes(data)
        try:
            uploaded = self.client.files.create(file=(f"{sub}.jsonl", data), purpose="batch")
        except self.oa.BadRequestError as exc:
            raise ProfileAPIError(
                f"{self.cfg.base_url} refused the batch input file ({len(data):,} bytes, "
                f"{len(lines)} requests): {self.redact(exc.message)}. If that is a size limit, "
                f"lower --set batch_max_bytes= (now {self.cfg.batch_max_bytes:,}) or "
                f"batch_max_rows= (now {self.cfg.batch_max_rows:,}) and rerun",
                "batch_api",
                fatal=True,
            ) from None
        self.store.set(sub, input_file_id=uploaded.id)
        self.tokens[sub] = tokens
        batch = self._create(sub, self.store.created(sub), uploaded.id)
        self.store.set(sub, batch_id=batch.id, status="submitted", remote_status=batch.status)

    def _create(self, sub: str, created: float, file_id: str):
        """POST /v1/batches without the SDK's blind retries (no idempotency key: a retry after a lost answer
        would run and bill the same rows twice). After an error or timeout the batch is looked up by its
        submission id first; created again only if it does not exist."""
        oa, creator, last = self.oa, self.client.with_options(max_retries=0), None
        for attempt in range(1, CREATE_TRIES + 1):
            try:
                return creator.batches.create(
                    input_file_id=file_id,
                    endpoint="/v1/chat/completions",
                    completion_window="24h",
                    metadata={"proex_submission": sub},
                )
            except (oa.APIConnectionError, oa.APIStatusError) as exc:  # timeouts are connection errors
                status = getattr(exc, "status_code", None)
                if status is not None and status < 500 and status not in (408, 409, 429):
                    raise
                last = exc
            time.sleep(min(30.0, self.cfg.backoff_s * 2 ** (attempt - 1)))
            found = self._lookup(sub, created)
            if found is not None:
                log.warning(
                    "Batch API: the answer to creating %s was lost; found it by its metadata as %s (not created again)",
                    sub,
                    found.id,
                )
                return found
        raise last

    def _lookup(self, sub: str, created: float):
        """The batch whose metadata names submission `sub` (newest first, back to an hour before it), or None."""
        for b in self.client.batches.list(limit=100):
            if (b.metadata or {}).get("proex_submission") == sub:
                return b
            if b.created_at < created - 3600:
                return None
        return None

    def _finish_open(self) -> None:
        for sub in self.store.open_submissions():
            self._api(self._finish, sub)

    def _finish(self, sub: dict) -> None:
        """Wait for an open submission's batch to end, then cache its answers and record every row's outcome."""
        batch_id = sub["batch_id"]
        if batch_id is None:  # stopped between upload and recording the batch id: was the batch created?
            found = self._lookup(sub["submission"], sub["created"]) if sub["input_file_id"] else None
            if found is None:
                self.store.set(sub["submission"], status="abandoned", note="no batch was created for it")
                return
            batch_id = found.id
            self.store.set(sub["submission"], batch_id=batch_id, status="submitted")
        while True:
            batch = self.client.batches.retrieve(batch_id)
            if batch.status in TERMINAL:
                break
            time.sleep(self.cfg.batch_poll_s)
        if batch.status == "failed" and not batch.output_file_id and not batch.error_file_id:
            return self._refused(sub, batch)
        self.limit.accepted()
        self._collect(sub["submission"], batch)

    def _refused(self, sub: dict, batch) -> None:
        """A batch that failed as a whole: none of its rows ran (nor is billed), so they are not failures. For
        the token limit: say what it is, wait for the queue, resend its rows smaller (next round)."""
        name = sub["submission"]
        try:
            note = self.limit.refused(batch.id, batch_errors(batch), self.tokens.get(name, 0))
        except ProfileAPIError as exc:
            self.store.set(name, status="refused", remote_status="failed", note=self.redact(exc)[:1000])
            raise ProfileAPIError(self.redact(exc), exc.kind, fatal=True) from None
        log.warning("Batch API: batch %s (%s) %s", batch.id, name, self.redact(note))
        self.store.finish(
            name,
            {k: ("refused", "") for k in self.store.rows(name)},
            status="refused",
            remote_status="failed",
            note=self.redact(note)[:1000],
        )
        self.drain = True

    def _collect(self, sub: str, batch) -> None:
        rows, outcomes = self.store.rows(sub), {}
        for file_id, kind in ((batch.output_file_id, "output"), (batch.error_file_id, "errors")):
            if not file_id:
                continue
            text = self.client.files.content(file_id).text
            (self.files / f"{sub}.{kind}.jsonl").write_text(text)
            for line in text.splitlines():
                if line.strip():
                    obj = json.loads(line)
                    if obj.get("custom_id") in rows:
                        outcomes[obj["custom_id"]] = self._row(obj, rows[obj["custom_id"]], batch.id)
        why = f"not in the batch's output ({batch.status}{': ' + str(batch.errors) if batch.errors else ''})"
        for key in rows:
            outcomes.setdefault(key, ("missing", self.redact(why)[:500]))
        self.store.finish(
            sub,
            outcomes,
            status="done",
            remote_status=batch.status,
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
        )

    def _row(self, obj: dict, row: dict, batch_id: str) -> tuple[str, str]:
        """Cache one output line's answer: ("ok", ""), or ("error", why) for a failed row."""
        resp, error = obj.get("response") or {}, obj.get("error")
        status = resp.get("status_code")
        if status == 200 and not error:
            body = resp.get("body") or {}
            text = ((body.get("choices") or [{}])[0].get("message") or {}).get("content")
            if text is not None:
                usage = body.get("usage") or {}
                self.cache.put(
                    obj["custom_id"],
                    prompt_version=PROMPT_VERSION,
                    model=self.cfg.model,
                    response=text,
                    prompt_tokens=usage.get("prompt_tokens", 0) or 0,
                    completion_tokens=usage.get("completion_tokens", 0) or 0,
                    via=f"batch:{batch_id}",
                    **row,
                )
                self.got.add(
                    {
                        "sent": 1,
                        "prompt_tokens": usage.get("prompt_tokens", 0) or 0,
                        "completion_tokens": usage.get("completion_tokens", 0) or 0,
                        "repairs": int("repair" in row["step"]),
                        "retries": int("@" in row["step"]),
                    }
                )
                return "ok", ""
            error = {"message": "the answer has no message content"}
        message = (error or {}).get("message") or json.dumps((resp.get("body") or {}).get("error") or {})
        if status == 400:  # an option this endpoint refuses: the next round sends without it
            level = row["response_format"] or "none"
            sent = {
                self.options.token_field: self.cfg.max_tokens,
                **({"seed": row["seed"]} if row["seed"] is not None else {}),
            }
            if level != "none":
                sent["response_format"] = (
                    {"type": "json_schema"}
                    if level == "json_schema"
                    else {"type": "json_object", **({"schema": {}} if level == "json_object+schema" else {})}
                )
            self.options.downgrade(json.dumps(resp.get("body") or {}) + message, sent)
        return "error", self.redact(f"HTTP {status}: {message}" if status else message)[:500]

    def _api(self, fn, *args):
        """Run fn; an API failure that retrying cannot fix stops the job with a message that says what to do."""
        oa = self.oa
        try:
            return fn(*args)
        except oa.AuthenticationError:
            raise ProfileAPIError(
                f"{self.cfg.base_url} rejected the API key (HTTP 401): the key in "
                f"${self.cfg.api_key_env} is wrong, revoked or for another endpoint.",
                "auth",
                fatal=True,
            ) from None
        except (oa.APIConnectionError, oa.APIStatusError) as exc:
            raise ProfileAPIError(
                f"Batch API at {self.cfg.base_url} failed ({type(exc).__name__}: "
                f"{self.redact(getattr(exc, 'message', exc))}); rerun to resume: submitted "
                "batches are kept in the cache database and are not submitted again",
                "batch_api",
                fatal=True,
            ) from None

    def close(self) -> None:
        self.cache.close()
        self.client.close()


def generate_batch(cfg, inter) -> dict:
    """The `--batch` job: rounds of batches until every entity is final; the same outputs as `generate`."""
    t0 = time.time()
    job = BatchJob(cfg, inter)
    try:
        out = job.run()
    finally:
        job.close()
    summary = write_outputs(cfg, inter, out, time.time() - t0, backend="batch")
    if out["fatal"] is not None:
        raise out["fatal"]
    return summary
