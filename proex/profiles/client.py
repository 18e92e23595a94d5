"""The one HTTP client of the profile stage: `openai.AsyncOpenAI` against any OpenAI-compatible endpoint
(OpenAI, vLLM, Ollama, a proxy), with the only retry layer of the job.

* The client's own retries are off (`max_retries=0`), so retries never stack: `LLMClient._send` retries
  429s, 5xx, timeouts, broken connections and unparsable bodies, and feeds every answer's headers back to the
  shared limiter (`limiter.AsyncLimiter` in process, a Ray actor across nodes). A 429's pause
  (`Retry-After`/`retry-after-ms`, else `x-ratelimit-reset-*`) is held by that limiter for the whole job;
  other transient errors back off exponentially with full jitter.
* Answers are asked as strict structured outputs (`response_format` with the step's JSON schema) where the
  endpoint accepts them, else in JSON mode; a `seed` is sent where accepted. An error answer (400, or the 500
  llama.cpp's server gives for a json_schema it cannot parse) whose body names one of these fields downgrades
  the client once for the rest of the job, without counting as an attempt: json_schema -> json_object with
  the schema (llama.cpp's server turns it into a grammar) -> json_object -> none; seed dropped.
* The completion cap goes out as `max_completion_tokens` (OpenAI's name; `max_tokens` is deprecated there and
  refused by its o-series) to OpenAI's hosts and as `max_tokens` elsewhere (llama.cpp's server ignores the new
  name and would generate to the end of its context); a 400 naming the field switches to the other one.
* Errors that retrying cannot fix become `ProfileAPIError`s with a message that says what to do: `fatal`
  ones (401 wrong key, endpoint unreachable, model not found, quota exhausted, key variable unset) stop the
  job; the others (context overflow, a rejected request, retries exhausted) fail one entity, which the
  pipeline reports. Nothing is written to the cache on an error.
* The key is read from the environment variable named by `api_key_env` and never leaves this object: every
  message is passed through `Redactor`, and original exceptions are not chained (`from None`), since they
  may quote the key (OpenAI's 401 text does) or hold the request headers.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

# USD per 1M tokens (input, output), list prices when written; pass prices_path for current or other models.
PRICES = {
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "text-embedding-ada-002": (0.10, 0.0),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
}
RESPONSE_FORMATS = ("json_schema", "json_object", "none")
# what a request may carry, strictest first: the downgrade order ("json_object+schema": llama.cpp's extension)
FORMAT_LEVELS = ("json_schema", "json_object+schema", "json_object", "none")
TOKEN_FIELDS = ("auto", "max_completion_tokens", "max_tokens")
MAX_RATE_WAIT_S = 600.0  # a 429 asking to wait longer than this stops the job instead
_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]+|(Bearer\s+)\S+")


class ProfileAPIError(RuntimeError):
    """An API call failed for good. kind: short tag for the failures file; fatal: stop the whole job."""

    def __init__(self, message: str, kind: str = "api_error", fatal: bool = False):
        super().__init__(message)
        self.kind = kind
        self.fatal = fatal

    def __reduce__(self):  # picklable across Ray processes with its attributes
        return (type(self), (str(self), self.kind, self.fatal))


class Redactor:
    """Replaces the secret (and anything shaped like an OpenAI key or a bearer token) by `***`."""

    def __init__(self, secret: str | None):
        self.secret = secret or ""

    def __call__(self, text: Any) -> str:
        text = str(text)
        if len(self.secret) >= 4:
            text = text.replace(self.secret, "***")
        return _KEYLIKE.sub(lambda m: (m.group(1) + "***") if m.group(1) else (m.group(2) + "***"), text)


def read_key(api_key_env: str) -> str:
    """The key from the environment. api_key_env "" means an endpoint without auth (a local vLLM/Ollama)."""
    if not api_key_env:
        return "EMPTY"
    key = os.environ.get(api_key_env, "")
    if not key:
        raise ProfileAPIError(
            f"environment variable {api_key_env} is not set or empty; export the API key "
            f"there (keys are read from the environment only; for an endpoint without auth "
            f"set api_key_env to an empty string)",
            "missing_key",
            fatal=True,
        )
    return key


@dataclass
class Answer:
    """One completed call: text (chat) or vectors (embeddings) and the usage the server reported."""

    text: str = ""
    vectors: list | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    seed: int | None = None  # the seed sent with the request (None: not sent or not supported)
    response_format: str = "none"  # a FORMAT_LEVELS name: what the request asked for


_ENCODING: list = []  # [tiktoken encoding or None], filled on first use


def estimate_tokens(text: str) -> int:
    """Tokens of a text: tiktoken's cl100k count if it is installed (and its file is available), else chars / 4."""
    if not _ENCODING:
        try:
            import tiktoken  # optional

            _ENCODING.append(tiktoken.get_encoding("cl100k_base"))
        except Exception:  # not installed, or no offline encoding file
            _ENCODING.append(None)
    return len(_ENCODING[0].encode(text)) if _ENCODING[0] is not None else len(text) // 4 + 1


class RequestOptions:
    """The optional fields of a chat request, as far as the endpoint accepts them (shared by the online client
    and the Batch API path): response_format (a strict JSON schema, else JSON mode with the schema, else JSON
    mode, else none), seed, and the name of the completion cap (max_completion_tokens or max_tokens)."""

    def __init__(
        self,
        response_format: str = "json_schema",
        seed: int | None = None,
        token_field: str = "auto",
        base_url: str = "",
    ):
        if response_format not in FORMAT_LEVELS:
            raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}, got {response_format!r}")
        if token_field not in TOKEN_FIELDS:
            raise ValueError(f"max_tokens_field must be one of {TOKEN_FIELDS}, got {token_field!r}")
        self.response_format, self.seed = response_format, seed
        self.token_field = token_field if token_field != "auto" else default_token_field(base_url)

    def fields(self, schema: dict | None, name: str, seed: int | None, items: int | None = None) -> dict:
        """The optional request fields for one call (`seed`: that call's seed; sent if seeds are on). `items`:
        how many entries the answer's arrays must hold (F4: k-1 profiles), put into the schema where the format
        enforces it (llama.cpp's grammar: minItems/maxItems); elsewhere `parse_answer` checks it."""
        extra: dict = {}
        level = self.response_format
        if level == "json_schema" and schema is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": True},
            }
        elif level == "json_object+schema" and schema is not None:
            if items:
                schema = {
                    **schema,
                    "properties": {
                        k: {**v, "minItems": items, "maxItems": items} if v.get("type") == "array" else v
                        for k, v in schema["properties"].items()
                    },
                }
            extra["response_format"] = {"type": "json_object", "schema": schema}
        elif level != "none":
            extra["response_format"] = {"type": "json_object"}
        if self.seed is not None and seed is not None:
            extra["seed"] = int(seed)
        return extra

    def cap(self, max_tokens: int) -> dict:
        """The completion cap under the field name this endpoint takes."""
        return {self.token_field: int(max_tokens)}

    def downgrade(self, message: str, sent: dict) -> bool:
        """After an error answer that names an optional field that was sent: stop sending it (one step down
        FORMAT_LEVELS; seed dropped; the other name of the completion cap). True if the call may be retried
        at once (something changed since it was sent, here or by a concurrent call)."""
        text = message.lower()
        if "response_format" in sent and any(w in text for w in ("response_format", "json_schema", "json_object")):
            sent_level = format_of(sent["response_format"])
            i = FORMAT_LEVELS.index(sent_level)
            if FORMAT_LEVELS.index(self.response_format) <= i:
                self.response_format = FORMAT_LEVELS[i + 1]
            return True
        if "seed" in sent and "seed" in text:
            self.seed = None
            return True
        for field, other in (("max_completion_tokens", "max_tokens"), ("max_tokens", "max_completion_tokens")):
            if field in sent and (field in text or other in text) and "context" not in text:
                if self.token_field == field:
                    self.token_field = other
                return True
        return False


def format_of(response_format: dict | None) -> str:
    """The FORMAT_LEVELS name of a request's response_format field."""
    if not response_format:
        return "none"
    if response_format.get("type") == "json_object":
        return "json_object+schema" if "schema" in response_format else "json_object"
    return str(response_format.get("type"))


def default_token_field(base_url: str) -> str:
    """max_completion_tokens for OpenAI's own hosts, max_tokens for other OpenAI-compatible servers (vLLM,
    llama.cpp, Ollama take it; llama.cpp's server silently ignores max_completion_tokens)."""
    host = base_url.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[2].split(":")[0].lower()
    return (
        "max_completion_tokens"
        if host == "openai.com" or host.endswith((".openai.com", ".openai.azure.com"))
        else "max_tokens"
    )


class LLMClient:
    """Chat and embedding calls through one AsyncOpenAI client, the shared limiter and one retry layer.

    limiter: any object with coroutines acquire(tokens), feedback(headers, status), refund(tokens).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str,
        limiter: Any,
        timeout_s: float = 60.0,
        max_attempts: int = 6,
        backoff_s: float = 1.0,
        max_tokens: int = 800,
        temperature: float = 0.7,
        response_format: str = "json_schema",
        seed: int | None = None,
        max_tokens_field: str = "auto",
    ):
        import openai  # the `llm` extra; imported here so the offline profiler runs without it

        self._openai = openai
        key = read_key(api_key_env)
        self.redact = Redactor(key)
        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.limiter, self.timeout_s, self.max_attempts = limiter, timeout_s, max(1, max_attempts)
        self.backoff_s, self.max_tokens, self.temperature = backoff_s, max_tokens, temperature
        self.options = RequestOptions(response_format, seed, max_tokens_field, base_url)
        self._client = openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=timeout_s)

    async def chat(
        self,
        messages: list[dict],
        what: str = "call",
        schema: dict | None = None,
        schema_name: str = "answer",
        seed: int | None = None,
        items: int | None = None,
    ) -> Answer:
        """One chat completion; `schema` is the answer's JSON schema (sent as a strict structured output where
        the endpoint supports it), `seed` sent where supported; `what` names the call in error messages. The
        Answer records the seed and response format actually sent."""
        est = sum(estimate_tokens(m["content"]) + 4 for m in messages) + self.max_tokens
        sent: dict = {}

        def send() -> Awaitable:
            sent.clear()
            sent.update(self.options.fields(schema, schema_name, seed, items))
            sent.update(self.options.cap(self.max_tokens))
            return self._client.chat.completions.with_raw_response.create(
                model=self.model, messages=messages, temperature=self.temperature, timeout=self.timeout_s, **sent
            )

        def unpack(parsed: Any) -> Answer:
            usage = parsed.usage
            text = parsed.choices[0].message.content if parsed.choices else None
            if text is None:
                raise ValueError("the answer has no message content")
            return Answer(
                text=text,
                prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                seed=sent.get("seed"),
                response_format=format_of(sent.get("response_format")),
            )

        return await self._send(
            send, unpack, est, what, model=self.model, optional=sent, completion_cap=self.max_tokens
        )

    async def embed(self, texts: list[str], model: str, what: str = "embedding batch") -> Answer:
        """Embedding vectors of `texts` (one request), in input order."""
        est = sum(estimate_tokens(t) for t in texts)

        def send() -> Awaitable:
            return self._client.embeddings.with_raw_response.create(model=model, input=texts, timeout=self.timeout_s)

        def unpack(parsed: Any) -> Answer:
            data = sorted(parsed.data, key=lambda d: d.index)
            if len(data) != len(texts):
                raise ValueError(f"{len(data)} vectors for {len(texts)} texts")
            return Answer(
                vectors=[d.embedding for d in data], prompt_tokens=getattr(parsed.usage, "prompt_tokens", 0) or 0
            )

        return await self._send(send, unpack, est, what, model=model)

    async def _send(
        self,
        send: Callable[[], Awaitable],
        unpack: Callable[[Any], Answer],
        est: int,
        what: str,
        model: str,
        optional: dict | None = None,
        completion_cap: int = 0,
    ) -> Answer:
        """The retry layer. Returns the first good answer; raises ProfileAPIError (redacted, unchained).

        After an answer, only the error of the prompt estimate goes back to the limiter: the provider counts
        a request against tokens/min as its prompt plus `completion_cap` (max_tokens) up front, however short
        the completion (OpenAI's rate-limit guide), so refunding the unused completion allowance would overrun
        a binding tokens/min limit (tests/test_profiles_ratelimit.py).

        A 429 costs no sleep here: the limiter holds the pause for the whole job, and the retry is queued first
        after it (`acquire(front=True)`), charged once like any request."""
        oa = self._openai
        last, connect_failures, front, attempt, downgrades = "", 0, False, 0, 0
        while attempt < self.max_attempts:
            attempt += 1
            await self.limiter.acquire(est, front)
            front, delay = False, self._backoff(attempt)
            try:
                raw = await send()
                await self.limiter.feedback(dict(raw.headers), raw.status_code)
                answer = unpack(raw.parse())
                answer.attempts = attempt
                await self.limiter.refund(est - answer.prompt_tokens - max(completion_cap, answer.completion_tokens))
                return answer
            except oa.AuthenticationError:
                raise ProfileAPIError(
                    f"{self.base_url} rejected the API key (HTTP 401): the key in ${self.api_key_env} is wrong, "
                    "revoked or for another endpoint. Set a valid key; nothing was cached for this call.",
                    "auth",
                    fatal=True,
                ) from None
            except oa.RateLimitError as exc:
                headers = dict(exc.response.headers)
                pause = await self.limiter.feedback(headers, 429)
                if _code(exc) == "insufficient_quota":
                    raise ProfileAPIError(
                        f"{self.base_url}: quota exhausted (429 insufficient_quota): "
                        f"{self.redact(_message(exc))}. Add credit or use another key.",
                        "quota",
                        fatal=True,
                    ) from None
                if (pause or 0) > MAX_RATE_WAIT_S:  # a daily quota or similar: do not sleep for hours in silence
                    raise ProfileAPIError(
                        f"{self.base_url}: rate limited for {pause:.0f} s (Retry-After); a daily "
                        "or org-wide limit? Rerun later: completed calls are cached.",
                        "rate_limited_long",
                        fatal=True,
                    ) from None
                last, front, delay = f"429 rate limited: {_message(exc)}", True, 0.0
            except oa.BadRequestError as exc:
                if _code(exc) == "context_length_exceeded" or "context length" in _message(exc).lower():
                    raise ProfileAPIError(
                        f"{what}: the prompt is longer than the context of model {model} "
                        f"({self.redact(_message(exc))}). Lower max_input_chars or use a model with a longer "
                        "context; this entity is skipped and reported.",
                        "context_overflow",
                    ) from None
                if not (optional and downgrades < 8 and self.options.downgrade(_error_text(exc), optional)):
                    raise ProfileAPIError(
                        f"{what}: request rejected (HTTP 400): {self.redact(_message(exc))}", "bad_request"
                    ) from None
                last, delay, attempt, downgrades = (
                    f"HTTP 400 for an optional field: {_message(exc)}",
                    0.0,
                    attempt - 1,
                    downgrades + 1,
                )
            except (oa.NotFoundError, oa.PermissionDeniedError) as exc:
                raise ProfileAPIError(
                    f"{self.base_url} answered HTTP {exc.status_code} for model {model}: "
                    f"{self.redact(_message(exc))}. Check base_url (it usually ends in /v1) and the model name.",
                    "not_found" if exc.status_code == 404 else "forbidden",
                    fatal=True,
                ) from None
            except oa.APITimeoutError:
                last = f"timed out after {self.timeout_s:g} s"
            except oa.APIConnectionError as exc:
                connect_failures += 1
                last = f"connection failed ({type(exc.__cause__ or exc).__name__})"
            except oa.APIStatusError as exc:  # 5xx and other statuses: transient
                await self.limiter.feedback(dict(exc.response.headers), exc.status_code)
                last = f"HTTP {exc.status_code}: {_message(exc)}"
                if optional and downgrades < 8 and self.options.downgrade(_error_text(exc), optional):
                    # e.g. llama.cpp's server: HTTP 500 "Input should be 'text' or 'json_object'" for json_schema
                    attempt, downgrades, delay = attempt - 1, downgrades + 1, 0.0
                elif exc.status_code < 500 and exc.status_code not in (408, 409):
                    raise ProfileAPIError(
                        f"{what}: HTTP {exc.status_code}: {self.redact(_message(exc))}", "bad_request"
                    ) from None
            except (ValueError, TypeError, AttributeError, IndexError, oa.APIResponseValidationError) as exc:
                last = f"unparsable answer ({type(exc).__name__}: {str(exc)[:200]})"
            if attempt < self.max_attempts and delay > 0:
                await asyncio.sleep(delay)
        if connect_failures == self.max_attempts:
            raise ProfileAPIError(
                f"cannot reach {self.base_url} ({last}, {self.max_attempts} attempts): check base_url, that the "
                "server is running and the network or proxy; completed calls are cached, rerun to resume.",
                "unreachable",
                fatal=True,
            )
        raise ProfileAPIError(
            f"{what}: gave up after {self.max_attempts} attempts; last error: {self.redact(last)}", "retries_exhausted"
        )

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform(0, backoff_s * 2^(attempt-1)), at most 60 s."""
        return random.uniform(0, min(60.0, self.backoff_s * 2 ** (attempt - 1)))

    async def close(self) -> None:
        await self._client.close()


def cost_usd(prices: dict, model: str, prompt_tokens: float, completion_tokens: float) -> float | None:
    """USD for those tokens at `prices[model]`; None for a model without a price."""
    if model not in prices:
        return None
    p_in, p_out = prices[model]
    return round((prompt_tokens * p_in + completion_tokens * p_out) / 1e6, 6)


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(getattr(exc, "message", exc))


def _error_text(exc: Any) -> str:
    """The message and the whole error body: servers name the offending field in different places (OpenAI in
    `param`, FastAPI-based servers in a validation error's `loc`)."""
    body = getattr(exc, "body", None)
    try:
        return f"{_message(exc)} {json.dumps(body) if body is not None else ''}"
    except (TypeError, ValueError):
        return f"{_message(exc)} {body}"


def _code(exc: Any) -> str | None:
    body = getattr(exc, "body", None)
    return (body.get("code") if isinstance(body, dict) else None) or getattr(exc, "code", None)
