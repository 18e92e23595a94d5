"""`--batch`: the profile job through the OpenAI Batch API (half the price, its own much larger limits).

The four steps become rounds. Each round walks every entity through `chain.profile_entity` against the cache,
exactly as the online job does (same prompts, same validation, same repairs and attempts), except that a call
not in the cache is not sent: it is collected (`Deferred`). The round's calls go into one JSONL file per
`batch_max_rows` (custom_id = the call's cache key), uploaded to /v1/files and run as a batch on
/v1/chat/completions; the job polls it, downloads the output and error files and caches every answer. The next
round then finds those answers: valid ones lead to the next step, invalid ones to a repair, failed rows are
asked again (at most `batch_row_attempts` times per run). The job ends when a round has nothing to ask.

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
import time
from pathlib import Path

from .batch_store import BatchStore
from .cache import AsyncCallCache, CallCache
from .chain import Deferred, EntityFailure, Totals, profile_entity
from .client import ProfileAPIError, Redactor, RequestOptions, read_key
from .outputs import Progress, write_outputs
from .prompts import PROMPT_VERSION, entity_inputs, json_schema

TERMINAL = ("completed", "failed", "expired", "cancelled")


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
        self.options = RequestOptions(cfg.response_format, cfg.seed)
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
                for sub in self.store.open_submissions():
                    self._api(self._finish, sub)
                records, failures, calls, cached = asyncio.run(self._walk())
                bar.update(len(records) + len(failures) - bar.done, failed=len(failures) - bar.failed)
                if not calls:
                    break
                for start in range(0, len(calls), self.cfg.batch_max_rows):
                    self._api(self._submit, calls[start : start + self.cfg.batch_max_rows], round_)
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

    def _submit(self, calls: list, round_: int) -> None:
        """Record the submission, upload its JSONL, create the batch; each id committed as soon as it is known."""
        cfg, lines, rows = self.cfg, [], []
        for c in calls:
            opts = self.options.fields(json_schema(c.step), f"proex_{c.step}", c.seed)
            lines.append(
                {
                    "custom_id": c.key,
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": cfg.model,
                        "messages": c.messages,
                        "max_tokens": cfg.max_tokens,
                        "temperature": cfg.temperature,
                        **opts,
                    },
                }
            )
            rows.append(
                {
                    "key": c.key,
                    "side": c.side,
                    "entity": c.entity,
                    "step": c.name,
                    "input_hash": c.input_hash,
                    "seed": opts.get("seed"),
                    "response_format": opts.get("response_format", {}).get("type"),
                }
            )
        sub = self.store.prepare(round_, rows)
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        (self.files / f"{sub}.input.jsonl").write_bytes(data)
        uploaded = self.client.files.create(file=(f"{sub}.jsonl", data), purpose="batch")
        self.store.set(sub, input_file_id=uploaded.id)
        batch = self.client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"proex_submission": sub},
        )
        self.store.set(sub, batch_id=batch.id, status="submitted", remote_status=batch.status)

    def _finish(self, sub: dict) -> None:
        """Wait for an open submission's batch to end, then cache its answers and record every row's outcome."""
        batch_id = sub["batch_id"]
        if batch_id is None:  # stopped between upload and recording the batch id: was the batch created?
            found = None
            if sub["input_file_id"]:
                for b in self.client.batches.list(limit=100):
                    if (b.metadata or {}).get("proex_submission") == sub["submission"]:
                        found = b
                        break
                    if b.created_at < sub["created"] - 3600:
                        break
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
        self._collect(sub["submission"], batch)

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
            self.options.downgrade(
                message,
                {"response_format": {"type": row["response_format"]}}
                if row["response_format"]
                else {"seed": row["seed"]},
            )
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
