"""An OpenAI-compatible HTTP server on 127.0.0.1 for the profile-stage tests (real HTTP in tests).

    POST /v1/chat/completions   answers the four CoT steps (proex.profiles.prompts) with valid JSON, made
                                deterministically from the prompt; the step is recognised from the JSON keys
                                its system prompt asks for, K-1 from "exactly N new profiles"
    POST /v1/embeddings         deterministic unit vectors from sha256(text), `embed_dim` wide
    GET  /_log                  every request: arrival (t0) and end (t) times, path, status, outcome, sha256 of
                                the request content
    POST /_control              change `FakeConfig` fields while running (e.g. {"hold": true})
    /v1/files, /v1/batches      the Batch API (tests/fake_openai_batches.py)

Requests/min are a token bucket (`burst_s`), or with `window_s` a strict sliding window (at most R requests in
any 60 s: the strictest reading of a per-minute limit). `response_format` json_schema and `seed` are accepted,
or refused with a 400 naming the parameter (`json_schema_supported`, `seed_supported`); the log records both.

Like the real API it enforces requests/min and tokens/min with token buckets (prompt + max_tokens tokens
counted up front), answering 429 with `retry-after`, `retry-after-ms` and `x-ratelimit-*` headers (also sent on
every success), a 401 that quotes the wrong key back (as OpenAI's does, to test redaction), and a 400
`context_length_exceeded` past `context_limit_tokens`. Faults by rate: 500s, timeouts (a sleep longer than the
client waits), slow answers, malformed message content, a malformed body, duplicate F4 profiles. `hold` parks
requests until released. Before writing an answer it checks the client is still connected, so a request whose
client died (kill -9, timeout) is logged as "abandoned", not "completed": the log's completed entries are the
calls that were delivered. The server stops by itself after `lifetime_s`.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import random
import re
import select
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fake_openai_batches
import numpy as np


@dataclass
class FakeConfig:
    api_key: str = "sk-test-fake-0123456789abcdef"
    rpm: float = 0.0  # requests per minute, 0 = unlimited
    tpm: float = 0.0  # tokens per minute, 0 = unlimited
    burst_s: float = 60.0  # seconds of traffic a full bucket holds (OpenAI: a minute)
    window_s: float = 0.0  # > 0: requests/min as a strict sliding window of this many seconds instead
    # of a bucket: at most rpm * window_s / 60 admitted in any window_s seconds
    json_schema_supported: bool = True  # False: a 400 for response_format json_schema (as some servers answer)
    json_schema_refused_as: str = "400"  # "500": refused as llama.cpp's server does (a 500 quoting its validator)
    seed_supported: bool = True  # False: a 400 for a request with `seed`
    max_tokens_supported: bool = True  # False: a 400 for `max_tokens` (OpenAI's o-series: max_completion_tokens)
    keep_messages: bool = False  # record each chat request's messages in the log (what the LLM was shown)
    batch_hold: bool = False  # Batch API (tests/fake_openai_batches.py): keep batches in_progress
    batch_latency_s: float = 0.0  # a batch completes on the first poll after this long
    batch_row_fail_rate: float = 0.0  # rows that end in the error file with a 500
    batch_expire: int = 0  # this many batches (the first ones run) expire with only half answered
    batch_reject_json_schema: bool = False  # rows with a json_schema response_format fail with a 400
    batch_create_lost: int = 0  # the first N POST /v1/batches create the batch, then their answer is lost:
    batch_create_lost_as: str = "500"  # "500" (an HTTP 500) or "timeout" (no answer for timeout_sleep_s)
    batch_max_file_bytes: int = 0  # > 0: an upload over this many bytes is refused with a 400 (OpenAI: 200 MB)
    batch_enqueued_token_cap: int = 0  # > 0: a batch that would take the prompt tokens of the account's batches
    # in progress past this fails as a whole with token_limit_exceeded
    send_retry_after: bool = True
    send_limit_headers: bool = True  # x-ratelimit-* headers (429s still carry retry-after)
    latency_s: float = 0.0  # added to every answer
    fail_500_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_sleep_s: float = 5.0
    slow_rate: float = 0.0
    slow_s: float = 1.0
    malformed_content_rate: float = 0.0
    malformed_body_rate: float = 0.0
    duplicate_profiles_rate: float = 0.0
    context_limit_tokens: int = 0  # 0 = no limit
    embed_dim: int = 16
    hold: bool = False
    seed: int = 0
    lifetime_s: float = 900.0


class _Bucket:
    def __init__(self, per_min: float, burst_s: float):
        self.rate = per_min / 60.0
        self.capacity = max(1.0, per_min * burst_s / 60.0)
        self.level, self.stamp = self.capacity, time.monotonic()

    def refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def reset_s(self) -> float:
        return (self.capacity - self.level) / self.rate


def _tokens(text: str) -> int:
    return len(text) // 4 + 1


def _words(text: str, rng: random.Random, n: int) -> list[str]:
    pool = sorted(set(w.lower() for w in re.findall(r"[A-Za-z]{4,}", text))) or ["things"]
    return [rng.choice(pool) for _ in range(n)]


def answer_chat(body: dict, cfg: FakeConfig, rng: random.Random) -> str:
    """The assistant content for a CoT step, deterministic in the request's messages."""
    msgs = body.get("messages", [])
    system = msgs[0]["content"] if msgs else ""
    content = " ".join(m.get("content", "") for m in msgs[1:2])
    det = random.Random(hashlib.sha256(json.dumps(msgs[:2], sort_keys=True).encode()).hexdigest())
    w = _words(content, det, 12)
    if '"profiles"' in system:
        n = int(m.group(1)) if (m := re.search(r"exactly (\d+) new profiles", system)) else 3
        forms = [
            "Drawn to {0} and {1}, with a soft spot for {2}.",
            "Someone who seeks out {3}; {4} matters more than {5}.",
            "Curious about {6}, wary of {7}, loyal to {8}.",
            "A taste shaped by {9}, {10} and {11}.",
        ]
        profiles = [f"View {i + 1}: " + forms[i % 4].format(*_words(content, det, 12)) for i in range(n)]
        if rng.random() < cfg.duplicate_profiles_rate and n > 1:
            profiles[1] = profiles[0]
        return json.dumps({"profiles": profiles, "reasoning": "rephrased the facets"})
    if '"latent_preferences"' in system:
        return json.dumps({"latent_preferences": [f"{w[0]} over {w[1]}", f"values {w[2]}"], "reasoning": "implied"})
    if '"positive_aspects"' in system:
        return json.dumps({"positive_aspects": [w[3], w[4]], "negative_aspects": [w[5]], "reasoning": "from text"})
    return json.dumps(
        {
            "summarization": f"Enjoys {w[6]}, {w[7]} and {w[8]}; less keen on {w[9]}.",
            "reasoning": f"{len(content)} characters of evidence",
        }
    )


class FakeOpenAI:
    """The server, run in a daemon thread: `with FakeOpenAI(FakeConfig(...)) as srv: srv.base_url ...`."""

    def __init__(self, cfg: FakeConfig | None = None, port: int = 0):
        self.cfg = cfg or FakeConfig()
        self.lock = threading.Lock()
        self.entries: list[dict] = []
        self.held = 0
        self.release = threading.Event()
        self.rng = random.Random(self.cfg.seed)
        self.files: dict = {}  # the Batch API's stored files and batches (fake_openai_batches)
        self.batches: dict = {}
        self._buckets()
        server = self

        class Handler(_Handler):
            srv = server

        self.httpd = _QuietServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.timer = threading.Timer(self.cfg.lifetime_s, self.stop)
        self.timer.daemon = True

    def _buckets(self) -> None:
        c = self.cfg
        self.admitted: collections.deque = collections.deque()  # arrival times of admitted requests (window mode)
        self.req_bucket = _Bucket(c.rpm, c.burst_s) if c.rpm > 0 and c.window_s <= 0 else None
        self.tok_bucket = _Bucket(c.tpm, c.burst_s) if c.tpm > 0 else None

    def start(self) -> FakeOpenAI:
        self.thread.start()
        self.timer.start()
        return self

    def stop(self) -> None:
        self.timer.cancel()
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set(self, **changes) -> None:
        """Change config fields at run time; limits rebuild the buckets; hold=False releases parked requests."""
        with self.lock:
            self.cfg = dataclasses.replace(self.cfg, **changes)
            if {"rpm", "tpm", "burst_s", "window_s"} & set(changes):
                self._buckets()
            if changes.get("hold") is False:
                self.release.set()
            elif changes.get("hold"):
                self.release.clear()

    def log(self) -> list[dict]:
        with self.lock:
            return list(self.entries)

    def repeated_completed(self) -> dict[str, int]:
        """Content hashes answered successfully ("completed") more than once, with their counts."""
        counts: dict[str, int] = {}
        for e in self.log():
            if e["outcome"] == "completed":
                counts[e["hash"]] = counts.get(e["hash"], 0) + 1
        return {h: n for h, n in counts.items() if n > 1}

    def record(self, **entry) -> None:
        with self.lock:
            self.entries.append({"t": time.time(), **entry})

    def admit(self, tokens: int) -> tuple[bool, dict]:
        """Rate-limit decision and the x-ratelimit-* headers (the real API's names and formats)."""
        with self.lock:
            headers, ok, wait = {}, True, 0.0
            for _kind, bucket, need in (("requests", self.req_bucket, 1), ("tokens", self.tok_bucket, tokens)):
                if bucket is None:
                    continue
                bucket.refill()
                if bucket.level < min(need, bucket.capacity):
                    ok = False
                    wait = max(wait, (min(need, bucket.capacity) - bucket.level) / bucket.rate)
            window, cap, now = self.cfg.window_s, int(self.cfg.rpm * self.cfg.window_s / 60.0), time.monotonic()
            if window > 0 and self.cfg.rpm > 0:
                while self.admitted and self.admitted[0] <= now - window:
                    self.admitted.popleft()
                if len(self.admitted) >= cap:
                    ok, wait = False, max(wait, self.admitted[0] + window - now)
            if ok:
                for bucket, need in ((self.req_bucket, 1), (self.tok_bucket, tokens)):
                    if bucket is not None:
                        bucket.level -= need
                if window > 0 and self.cfg.rpm > 0:
                    self.admitted.append(now)
            if window > 0 and self.cfg.rpm > 0 and self.cfg.send_limit_headers:
                headers["x-ratelimit-limit-requests"] = str(int(self.cfg.rpm))
                headers["x-ratelimit-remaining-requests"] = str(max(0, cap - len(self.admitted)))
                free_at = self.admitted[0] + window - now if len(self.admitted) >= cap else 0.0
                headers["x-ratelimit-reset-requests"] = f"{max(0.0, free_at):.3f}s"
            for kind, bucket in (("requests", self.req_bucket), ("tokens", self.tok_bucket)):
                if bucket is not None and self.cfg.send_limit_headers:
                    headers[f"x-ratelimit-limit-{kind}"] = str(int(bucket.rate * 60))
                    headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, int(bucket.level)))
                    headers[f"x-ratelimit-reset-{kind}"] = f"{max(0.0, bucket.reset_s()):.3f}s"
            if not ok and self.cfg.send_retry_after:
                headers["retry-after"] = str(max(1, int(np.ceil(wait))))
                headers["retry-after-ms"] = str(int(wait * 1000) + 1)
            return ok, headers


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 128  # a burst of new connections (16+ workers at once) is queued, not reset

    def handle_error(self, request, client_address) -> None:  # clients that vanish (kill -9, ray.kill) are normal
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    srv: FakeOpenAI

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, payload: object, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def do_GET(self) -> None:
        if fake_openai_batches.handle(self, "GET"):
            return
        if self.path == "/_log":
            self._send(200, {"entries": self.srv.log(), "held": self.srv.held})
        else:
            self._send(404, {"error": {"message": "not found", "code": "not_found"}})

    def do_DELETE(self) -> None:
        if not fake_openai_batches.handle(self, "DELETE"):
            self._send(404, {"error": {"message": "not found", "code": "not_found"}})

    def do_POST(self) -> None:
        arrival, srv, length = time.time(), self.srv, int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length)
        if fake_openai_batches.handle(self, "POST", raw_body):
            return
        body = json.loads(raw_body or b"{}")
        if self.path == "/_control":
            srv.set(**body)
            return self._send(200, {"ok": True})
        chat = self.path.endswith("/chat/completions")
        if not (chat or self.path.endswith("/embeddings")):
            return self._send(404, {"error": {"message": f"unknown path {self.path}", "code": "not_found"}})
        cfg = srv.cfg
        content = json.dumps(body.get("messages") if chat else body.get("input"), sort_keys=True)
        digest = hashlib.sha256((str(body.get("model")) + content).encode()).hexdigest()
        entry = {"path": self.path, "hash": digest, "model": body.get("model"), "t0": arrival}
        given = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if given != cfg.api_key:
            srv.record(status=401, outcome="401", **entry)
            return self._send(
                401,
                {
                    "error": {
                        "message": f"Incorrect API key provided: {given}.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
        entry.update(
            response_format=(body.get("response_format") or {}).get("type"),
            seed=body.get("seed"),
            cap_field="max_completion_tokens" if "max_completion_tokens" in body else "max_tokens",
        )
        if cfg.keep_messages and chat:
            entry["messages"] = body.get("messages")
        unsupported = (
            "response_format"
            if entry["response_format"] == "json_schema" and not cfg.json_schema_supported
            else "seed"
            if "seed" in body and not cfg.seed_supported
            else None
        )
        if "max_tokens" in body and not cfg.max_tokens_supported:
            srv.record(status=400, outcome="400", **entry)
            return self._send(
                400,
                {
                    "error": {
                        "message": "Unsupported parameter: 'max_tokens' is not supported with "
                        "this model. Use 'max_completion_tokens' instead.",
                        "type": "invalid_request_error",
                        "param": "max_tokens",
                        "code": "unsupported_parameter",
                    }
                },
            )
        if unsupported == "response_format" and cfg.json_schema_refused_as == "500":
            srv.record(status=500, outcome="500", **entry)
            return self._send(
                500,
                {
                    "error": {
                        "message": "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n"
                        "  Input should be 'text' or 'json_object' [type=literal_error, input_value='json_schema', "
                        "input_type=str]",
                        "type": "internal_server_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
        if unsupported:
            srv.record(status=400, outcome="400", **entry)
            return self._send(
                400,
                {
                    "error": {
                        "message": f"Unsupported parameter: '{unsupported}' is not supported with this model.",
                        "type": "invalid_request_error",
                        "param": unsupported,
                        "code": "unsupported_parameter",
                    }
                },
            )
        prompt_tokens = _tokens(content)
        if cfg.context_limit_tokens and prompt_tokens > cfg.context_limit_tokens:
            srv.record(status=400, outcome="400", **entry)
            return self._send(
                400,
                {
                    "error": {
                        "message": f"This model's maximum context length is {cfg.context_limit_tokens} tokens. "
                        f"However, your messages resulted in {prompt_tokens} tokens.",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": "context_length_exceeded",
                    }
                },
            )
        cap = body.get("max_completion_tokens", body.get("max_tokens"))
        ok, headers = srv.admit(prompt_tokens + int(cap or 0))
        if not ok:
            srv.record(status=429, outcome="429", retry_after_s=int(headers.get("retry-after-ms", 0)) / 1000, **entry)
            return self._send(
                429,
                {
                    "error": {
                        "message": "Rate limit reached. Please try again later.",
                        "type": "requests",
                        "code": "rate_limit_exceeded",
                    }
                },
                headers,
            )
        with srv.lock:
            draw = {k: srv.rng.random() for k in ("500", "timeout", "slow", "content", "body")}
        if cfg.hold:
            with srv.lock:
                srv.held += 1
            srv.release.wait(timeout=cfg.lifetime_s)
            with srv.lock:
                srv.held -= 1
        delay = cfg.latency_s + (cfg.slow_s if draw["slow"] < cfg.slow_rate else 0.0)
        if draw["timeout"] < cfg.timeout_rate:
            delay += cfg.timeout_sleep_s
        if delay:
            time.sleep(delay)
        if self._client_gone():
            return srv.record(status=0, outcome="abandoned", **entry)
        if draw["500"] < cfg.fail_500_rate:
            srv.record(status=500, outcome="500", **entry)
            return self._send(500, {"error": {"message": "The server had an error.", "type": "server_error"}}, headers)
        if chat:
            text = answer_chat(body, cfg, srv.rng)
            if draw["content"] < cfg.malformed_content_rate:
                text = text[: len(text) // 2]
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": _tokens(text),
                "total_tokens": prompt_tokens + _tokens(text),
            }
            payload = {
                "id": "chatcmpl-" + digest[:12],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            }
        else:
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = []
            for i, t in enumerate(texts):
                v = np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(
                    size=cfg.embed_dim
                )
                data.append({"object": "embedding", "index": i, "embedding": (v / np.linalg.norm(v)).tolist()})
            payload = {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            }
        if draw["body"] < cfg.malformed_body_rate:
            srv.record(status=200, outcome="malformed_body", **entry)
            return self._send(200, None, headers, raw=b'{"id": "chatcmpl-broken", "choices": [')
        srv.record(status=200, outcome="completed", **entry)
        self._send(200, payload, headers)


if __name__ == "__main__":  # manual runs: python tests/fake_openai_server.py '{"rpm": 120}'
    import sys

    with FakeOpenAI(FakeConfig(**json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")), port=8765) as s:
        print(s.base_url, flush=True)
        s.thread.join()
