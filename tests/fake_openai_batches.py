"""The Batch API of the local OpenAI-compatible test server (tests/fake_openai_server.py).

    POST   /v1/files                 multipart upload (purpose=batch): stores the JSONL, returns a file object
    GET    /v1/files/{id}/content    the stored bytes (input, output and error files alike)
    DELETE /v1/files/{id}
    POST   /v1/batches               {input_file_id, endpoint, completion_window, metadata}: status validating
    GET    /v1/batches/{id}          the batch; polled while `batch_hold` is False and `batch_latency_s` has
                                     passed, it runs every row and ends completed (or expired, see below)
    GET    /v1/batches               the list, newest first (limit, after)

Batches advance on their own schedule, seen at any GET (one batch or the list): validating -> in_progress (or
`failed` as a whole with `token_limit_exceeded` past `batch_enqueued_token_cap`, as OpenAI's enqueued-token limit)
-> completed once `batch_latency_s` has passed (unless `batch_hold`). `batch_create_lost` creates a batch and then
loses the answer (a 500, or no answer within the client's timeout), as a flaky network or gateway would;
`batch_max_file_bytes` refuses larger uploads with a 400.
Each row is answered like /v1/chat/completions (the same deterministic answers and content faults) and logged
with path "/v1/batches:row" and outcome "completed", so `FakeOpenAI.repeated_completed` sees a row answered
twice whether online or in a batch. Faults: `batch_row_fail_rate` (rows that end in the error file with a 500),
`batch_expire` (the first N batches expire after answering only their first half: the rest are in the error
file with code batch_expired, as OpenAI's), `batch_reject_json_schema` (rows with a json_schema
response_format get a 400).
Formats follow OpenAI's Batch API: output lines {id, custom_id, response: {status_code, request_id, body},
error}; error lines with response null and error {code, message} for expired rows.
"""

from __future__ import annotations

import hashlib
import json
import time
from email.parser import BytesParser
from email.policy import default as email_policy


def _file(srv, data: bytes, purpose: str, name: str) -> dict:
    with srv.lock:
        fid = f"file-{len(srv.files) + 1:06d}"
        srv.files[fid] = {
            "id": fid,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": purpose,
            "data": data,
        }
        return {k: v for k, v in srv.files[fid].items() if k != "data"}


def _run(srv, batch: dict) -> None:
    """Answer every row of a batch (called once, under no lock), then set its final status and files."""
    from fake_openai_server import _tokens, answer_chat

    cfg, rows = srv.cfg, srv.files[batch["input_file_id"]]["data"].decode().splitlines()
    rows = [json.loads(r) for r in rows if r.strip()]
    with srv.lock:
        expire = srv.__dict__.setdefault("expired_batches", 0) < cfg.batch_expire
        srv.expired_batches += expire
    cut = len(rows) // 2 if expire else len(rows)
    out, err = [], []
    for i, row in enumerate(rows):
        body, cid = row["body"], row["custom_id"]
        digest = hashlib.sha256((str(body.get("model")) + json.dumps(body.get("messages"), sort_keys=True)).encode())
        entry = {
            "path": "/v1/batches:row",
            "hash": digest.hexdigest(),
            "model": body.get("model"),
            "t0": time.time(),
            "batch": batch["id"],
            "custom_id": cid,
            "seed": body.get("seed"),
            "response_format": (body.get("response_format") or {}).get("type"),
        }
        if i >= cut:
            err.append(
                {
                    "id": f"batch_req_{i}",
                    "custom_id": cid,
                    "response": None,
                    "error": {
                        "code": "batch_expired",
                        "message": "This request could not be executed before the completion window expired.",
                    },
                }
            )
            srv.record(status=0, outcome="expired", **entry)
            continue
        with srv.lock:
            draw = {k: srv.rng.random() for k in ("fail", "content")}
        if draw["fail"] < cfg.batch_row_fail_rate:
            err.append(
                {
                    "id": f"batch_req_{i}",
                    "custom_id": cid,
                    "error": None,
                    "response": {
                        "status_code": 500,
                        "request_id": f"req_{i}",
                        "body": {"error": {"message": "The server had an error.", "type": "server_error"}},
                    },
                }
            )
            srv.record(status=500, outcome="500", **entry)
            continue
        if cfg.batch_reject_json_schema and entry["response_format"] == "json_schema":
            err.append(
                {
                    "id": f"batch_req_{i}",
                    "custom_id": cid,
                    "error": None,
                    "response": {
                        "status_code": 400,
                        "request_id": f"req_{i}",
                        "body": {
                            "error": {
                                "message": "Unsupported parameter: 'response_format' of type json_schema.",
                                "type": "invalid_request_error",
                                "param": "response_format",
                            }
                        },
                    },
                }
            )
            srv.record(status=400, outcome="400", **entry)
            continue
        text = answer_chat(body, cfg, srv.rng)
        if draw["content"] < cfg.malformed_content_rate:
            text = text[: len(text) // 2]
        prompt = _tokens(json.dumps(body.get("messages"), sort_keys=True))
        out.append(
            {
                "id": f"batch_req_{i}",
                "custom_id": cid,
                "error": None,
                "response": {
                    "status_code": 200,
                    "request_id": f"req_{i}",
                    "body": {
                        "id": f"chatcmpl-b{i}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model"),
                        "usage": {
                            "prompt_tokens": prompt,
                            "completion_tokens": _tokens(text),
                            "total_tokens": prompt + _tokens(text),
                        },
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                        ],
                    },
                },
            }
        )
        srv.record(status=200, outcome="completed", **entry)
    lines = lambda rs: ("".join(json.dumps(r) + "\n" for r in rs)).encode()  # noqa: E731
    with srv.lock:
        batch["output_file_id"] = _file_unlocked(srv, lines(out), "batch_output") if out else None
        batch["error_file_id"] = _file_unlocked(srv, lines(err), "batch_output") if err else None
        batch["request_counts"] = {"total": len(rows), "completed": len(out), "failed": len(err)}
        batch["status"] = "expired" if expire else "completed"
        batch[f"{batch['status']}_at"] = int(time.time())


def _model_of(srv, file_id: str) -> str:
    first = srv.files[file_id]["data"].split(b"\n", 1)[0]
    return json.loads(first)["body"].get("model", "") if first.strip() else ""


def _file_unlocked(srv, data: bytes, purpose: str) -> str:
    fid = f"file-{len(srv.files) + 1:06d}"
    srv.files[fid] = {
        "id": fid,
        "object": "file",
        "bytes": len(data),
        "created_at": int(time.time()),
        "filename": f"{fid}.jsonl",
        "purpose": purpose,
        "data": data,
    }
    return fid


def batch_tokens(srv, batch: dict) -> int:
    """The batch's prompt tokens as the enqueued-token limit counts them (per message: content + 4)."""
    from fake_openai_server import _tokens

    rows = [json.loads(r) for r in srv.files[batch["input_file_id"]]["data"].decode().splitlines() if r.strip()]
    return sum(_tokens(m.get("content", "")) + 4 for r in rows for m in r["body"].get("messages", []))


def _advance(srv, batch: dict) -> bool:
    """Move a batch on (called under the lock); True if its rows are to be run now."""
    cfg = srv.cfg
    if batch["status"] == "validating":
        cap = cfg.batch_enqueued_token_cap
        queued = sum(batch_tokens(srv, b) for b in srv.batches.values() if b["status"] in ("in_progress", "finalizing"))
        if cap and queued + batch_tokens(srv, batch) > cap:
            batch.update(
                status="failed",
                failed_at=int(time.time()),
                errors={
                    "object": "list",
                    "data": [
                        {
                            "code": "token_limit_exceeded",
                            "param": None,
                            "line": None,
                            "message": f"Enqueued token limit reached for {batch['_model']} in organization org-fake. "
                            f"Limit: {cap:,} enqueued tokens. Please try again once some in_progress batches "
                            "have been completed.",
                        }
                    ],
                },
            )
            return False
        batch.update(status="in_progress", in_progress_at=time.time())
        batch["_t"] = time.time()
    elif (
        batch["status"] == "in_progress"
        and not cfg.batch_hold
        and time.time() - batch["_t"] >= batch.get("_latency", cfg.batch_latency_s)
    ):
        batch["status"] = "finalizing"
        return True
    return False


def _public(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def handle(handler, method: str, raw_body: bytes = b"") -> bool:
    """Serve a Files/Batches request on `handler` (a fake_openai_server._Handler); False if not one of them."""
    srv, path = handler.srv, handler.path.split("?")[0]
    if not (path.startswith("/v1/files") or path.startswith("/v1/batches")):
        return False
    given = (handler.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
    if given != srv.cfg.api_key:
        srv.record(status=401, outcome="401", path=path, hash="", model=None, t0=time.time())
        handler._send(401, {"error": {"message": f"Incorrect API key provided: {given}.", "code": "invalid_api_key"}})
        return True
    parts = path.strip("/").split("/")  # v1, files|batches, id?, action?
    if method == "POST" and path == "/v1/files":
        msg = BytesParser(policy=email_policy).parsebytes(
            f"Content-Type: {handler.headers.get('Content-Type')}\r\n\r\n".encode() + raw_body
        )
        fields = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
        data = fields["file"].get_payload(decode=True)
        purpose = fields["purpose"].get_payload(decode=True).decode()
        if srv.cfg.batch_max_file_bytes and len(data) > srv.cfg.batch_max_file_bytes:
            srv.record(
                status=400, outcome="upload_refused", path=path, hash="", model=None, t0=time.time(), bytes=len(data)
            )
            handler._send(
                400,
                {
                    "error": {
                        "message": f"File is too large: {len(data)} bytes; the maximum is "
                        f"{srv.cfg.batch_max_file_bytes} bytes.",
                        "type": "invalid_request_error",
                        "code": "file_too_large",
                    }
                },
            )
            return True
        srv.record(
            status=200,
            outcome="uploaded",
            path=path,
            hash=hashlib.sha256(data).hexdigest(),
            model=None,
            t0=time.time(),
            bytes=len(data),
        )
        handler._send(200, _file(srv, data, purpose, fields["file"].get_filename() or "upload.jsonl"))
    elif method == "GET" and len(parts) == 4 and parts[1] == "files" and parts[3] == "content":
        f = srv.files.get(parts[2])
        if f is None:
            handler._send(404, {"error": {"message": f"No such File object: {parts[2]}", "code": "not_found"}})
        else:
            handler._send(200, None, raw=f["data"])
    elif method == "DELETE" and len(parts) == 3 and parts[1] == "files":
        srv.files.pop(parts[2], None)
        handler._send(200, {"id": parts[2], "object": "file", "deleted": True})
    elif method == "POST" and path == "/v1/batches":
        body = json.loads(raw_body or b"{}")
        if body.get("input_file_id") not in srv.files:
            handler._send(400, {"error": {"message": "input_file_id not found", "code": "invalid_request_error"}})
            return True
        with srv.lock:
            bid = f"batch_{len(srv.batches) + 1:06d}"
            srv.batches[bid] = {
                "id": bid,
                "object": "batch",
                "endpoint": body.get("endpoint"),
                "errors": None,
                "input_file_id": body["input_file_id"],
                "completion_window": body.get("completion_window", "24h"),
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": int(time.time()),
                "metadata": body.get("metadata"),
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "_t": time.time(),
                "_model": _model_of(srv, body["input_file_id"]),
            }
            batch = dict(srv.batches[bid])
            lost = srv.__dict__.setdefault("lost_creates", 0) < srv.cfg.batch_create_lost
            srv.lost_creates += lost
        srv.record(
            status=200,
            outcome="batch_created",
            path=path,
            hash=bid,
            model=None,
            t0=time.time(),
            input_file_id=body["input_file_id"],
        )
        if lost and srv.cfg.batch_create_lost_as == "timeout":
            time.sleep(srv.cfg.timeout_sleep_s)  # the client gives up first; the batch exists all the same
        if lost:
            handler._send(
                500,
                {
                    "error": {
                        "message": "The server had an error while processing your request.",
                        "type": "server_error",
                    }
                },
            )
        else:
            handler._send(200, _public(batch))
    elif method == "GET" and len(parts) == 3 and parts[1] == "batches":
        batch = srv.batches.get(parts[2])
        if batch is None:
            handler._send(404, {"error": {"message": f"No such batch: {parts[2]}", "code": "not_found"}})
            return True
        with srv.lock:
            run = _advance(srv, batch)
        if run:
            _run(srv, batch)
        handler._send(200, _public(batch))
    elif method == "GET" and path == "/v1/batches":
        with srv.lock:
            due = [b for b in list(srv.batches.values()) if _advance(srv, b)]
        for b in due:
            _run(srv, b)
        listed = [_public(b) for b in reversed(list(srv.batches.values()))]
        handler._send(
            200,
            {
                "object": "list",
                "data": listed,
                "has_more": False,
                "first_id": listed[0]["id"] if listed else None,
                "last_id": listed[-1]["id"] if listed else None,
            },
        )
    else:
        handler._send(404, {"error": {"message": f"unknown path {path}", "code": "not_found"}})
    return True
