"""Durable cache of completed LLM and embedding calls: what makes the profile stage impossible to pay for twice.

One SQLite file in WAL mode (many readers and one writer at a time, across processes on one machine), one row
per completed call, keyed by `call_key` = sha256 of (prompt version, model, side, entity id, call name, input
hash); the call name holds the step, the attempt and the repair round ("F2", "F2.repair1", "F2@2").
The pipeline looks a key up before sending and writes the answer, committed with `synchronous=FULL`, before
the call counts as done; so a crash, a `kill -9` or a rerun resumes without re-sending any completed call.
Only successful HTTP answers are stored (also answers whose content later fails validation: they were paid
for, and the repair call that follows has its own key, as has a later run's new attempt at that step); errors
are never stored, so a rerun retries them. Each row records the seed and response format its request carried.

On a multi-node Ray cluster, do not open the file from several nodes (SQLite over NFS is unsafe): the Ray path
puts one `CallCache` in a cache actor (`proex.infra.profile_actors`) and workers reach it through that actor.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY, prompt_version TEXT, model TEXT, side TEXT, entity INTEGER, step TEXT,
    input_hash TEXT, response TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER, created REAL,
    seed INTEGER, response_format TEXT, via TEXT);
CREATE TABLE IF NOT EXISTS embeddings (
    key TEXT PRIMARY KEY, model TEXT, dim INTEGER, vector BLOB NOT NULL, tokens INTEGER, created REAL);
"""

_ADDED_COLUMNS = (("seed", "INTEGER"), ("response_format", "TEXT"), ("via", "TEXT"))


def input_hash(messages: list[dict]) -> str:
    """sha256 of the exact messages sent (canonical JSON)."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def call_key(prompt_version: str, model: str, side: str, entity: int, step: str, in_hash: str) -> str:
    """The content key of one chat call."""
    return hashlib.sha256(json.dumps([prompt_version, model, side, int(entity), step, in_hash]).encode()).hexdigest()


def embed_key(model: str, text: str) -> str:
    """The content key of one embedded text."""
    return hashlib.sha256(json.dumps(["embed", model, text], ensure_ascii=False).encode()).hexdigest()


class CallCache:
    """The SQLite cache; safe to open from several processes at once on one machine."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # autocommit (isolation_level=None): every INSERT is its own transaction, committed when execute returns
        self.db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=60000")
        self.db.executescript(_SCHEMA)
        have = {r[1] for r in self.db.execute("PRAGMA table_info(calls)")}
        for column, kind in _ADDED_COLUMNS:  # files written before these columns existed
            if column not in have:
                self.db.execute(f"ALTER TABLE calls ADD COLUMN {column} {kind}")

    def get(self, key: str) -> dict | None:
        """The stored row of a completed call, or None."""
        cur = self.db.execute(
            "SELECT response, prompt_tokens, completion_tokens, created, via FROM calls WHERE key = ?", (key,)
        )
        row = cur.fetchone()
        return (
            None
            if row is None
            else {
                "response": row[0],
                "prompt_tokens": row[1] or 0,
                "completion_tokens": row[2] or 0,
                "created": row[3] or 0.0,
                "via": row[4] or "online",
            }
        )

    def put(
        self,
        key: str,
        *,
        prompt_version: str,
        model: str,
        side: str,
        entity: int,
        step: str,
        input_hash: str,
        response: str,
        prompt_tokens: int,
        completion_tokens: int,
        seed: int | None = None,
        response_format: str | None = None,
        via: str = "online",
    ) -> None:
        """Store one completed call durably (returns after the commit). A key already present is kept as is.
        seed, response_format: what the request carried; via: "online" or "batch:<batch id>"."""
        self.db.execute(
            "INSERT OR IGNORE INTO calls (key, prompt_version, model, side, entity, step, input_hash, response, "
            "prompt_tokens, completion_tokens, created, seed, response_format, via) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                key,
                prompt_version,
                model,
                side,
                int(entity),
                step,
                input_hash,
                response,
                int(prompt_tokens),
                int(completion_tokens),
                time.time(),
                seed,
                response_format,
                via,
            ),
        )

    def get_vectors(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Stored embedding vectors of those keys that are present (float32 [dim] each)."""
        out = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self.db.execute(f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", chunk):
                out[key] = np.frombuffer(blob, dtype=np.float32).copy()
        return out

    def put_vectors(self, model: str, rows: list[tuple[str, np.ndarray]], tokens: int = 0) -> None:
        """Store a batch of embedding vectors in one transaction."""
        now = time.time()
        with self.db:  # BEGIN ... COMMIT around the batch
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR IGNORE INTO embeddings VALUES (?,?,?,?,?,?)",
                [(k, model, int(v.shape[0]), np.asarray(v, np.float32).tobytes(), tokens, now) for k, v in rows],
            )

    def counts(self) -> dict:
        """Rows per table (tests and the summary)."""
        return {t: self.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("calls", "embeddings")}

    def integrity(self) -> str:
        """SQLite's own integrity check: "ok" for an intact file."""
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        self.db.close()


class AsyncCallCache:
    """The async face of `CallCache` that the per-entity pipeline awaits; the Ray path swaps in a cache actor
    with the same two coroutines. Calls run inline: a commit is one WAL append + fsync (about a millisecond)."""

    def __init__(self, cache: CallCache):
        self.cache = cache

    async def get(self, key: str) -> dict | None:
        return self.cache.get(key)

    async def put(self, key: str, **row) -> None:
        self.cache.put(key, **row)
