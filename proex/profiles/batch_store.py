"""What the Batch API path keeps in the call cache's SQLite file, so that a `kill -9` never submits a row twice.

    batches     one row per submission: a local id chosen before anything is sent, then the uploaded input file
                id, then the batch id, each committed as soon as it is known; status preparing -> submitted ->
                done (or abandoned: nothing was ever created for it; refused: the batch failed as a whole,
                nothing of it ran, `note` says why)
    batch_rows  the calls of each submission (their cache keys and the fields of the cache row), with their
                outcome once the batch's files are read: ok (answer cached), error (error file), missing, or
                refused (the whole batch was: not a failure of the row)

A row is *pending* while its submission is preparing or submitted: the path waits for it instead of sending it
again. A resumed job finds a submission whose batch id was not yet recorded by the local id it put into the
batch's metadata (`proex_submission`).
"""

from __future__ import annotations

import sqlite3
import time
import uuid

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    submission TEXT PRIMARY KEY, round INTEGER, created REAL, n_rows INTEGER, input_file_id TEXT, batch_id TEXT,
    status TEXT, remote_status TEXT, output_file_id TEXT, error_file_id TEXT, note TEXT);
CREATE TABLE IF NOT EXISTS batch_rows (
    key TEXT, submission TEXT, side TEXT, entity INTEGER, step TEXT, input_hash TEXT, seed INTEGER,
    response_format TEXT, outcome TEXT, message TEXT, PRIMARY KEY (key, submission));
CREATE INDEX IF NOT EXISTS batch_rows_key ON batch_rows (key);
"""
OPEN = ("preparing", "submitted")


class BatchStore:
    """The two tables on the cache's connection (autocommit; multi-row changes in one transaction)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.db.executescript(_SCHEMA)

    def prepare(self, round_: int, rows: list[dict]) -> str:
        """Record a new submission and its rows (one transaction) before anything is uploaded; its local id."""
        sub = f"proex-{uuid.uuid4().hex[:16]}"
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO batches (submission, round, created, n_rows, status) VALUES (?,?,?,?,?)",
                (sub, round_, time.time(), len(rows), "preparing"),
            )
            self.db.executemany(
                "INSERT INTO batch_rows (key, submission, side, entity, step, input_hash, seed, response_format) "
                "VALUES (?,?,?,?,?,?,?,?)",
                [
                    (r["key"], sub, r["side"], r["entity"], r["step"], r["input_hash"], r["seed"], r["response_format"])
                    for r in rows
                ],
            )
        return sub

    def set(self, sub: str, **fields) -> None:
        """Update columns of a submission (input_file_id, batch_id, status, remote_status, ...)."""
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(f"UPDATE batches SET {cols} WHERE submission = ?", (*fields.values(), sub))

    def created(self, sub: str) -> float:
        return self.db.execute("SELECT created FROM batches WHERE submission = ?", (sub,)).fetchone()[0]

    def open_submissions(self) -> list[dict]:
        cur = self.db.execute(
            "SELECT submission, round, created, n_rows, input_file_id, batch_id, status FROM "
            "batches WHERE status IN (?, ?) ORDER BY created",
            OPEN,
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def rows(self, sub: str) -> dict[str, dict]:
        """key -> the cache-row fields of that submission's calls."""
        cur = self.db.execute(
            "SELECT key, side, entity, step, input_hash, seed, response_format FROM batch_rows WHERE submission = ?",
            (sub,),
        )
        return {
            r[0]: {
                "side": r[1],
                "entity": r[2],
                "step": r[3],
                "input_hash": r[4],
                "seed": r[5],
                "response_format": r[6],
            }
            for r in cur.fetchall()
        }

    def finish(self, sub: str, outcomes: dict[str, tuple[str, str]], **fields) -> None:
        """Row outcomes {key: (outcome, message)} and the submission's final fields, in one transaction."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "UPDATE batch_rows SET outcome = ?, message = ? WHERE key = ? AND submission = ?",
                [(o, m, k, sub) for k, (o, m) in outcomes.items()],
            )
            cols = ", ".join(f"{k} = ?" for k in fields)
            self.db.execute(f"UPDATE batches SET {cols} WHERE submission = ?", (*fields.values(), sub))

    def pending_keys(self) -> set[str]:
        """Cache keys of calls in submissions not yet finished (never to be submitted again meanwhile)."""
        cur = self.db.execute(
            "SELECT r.key FROM batch_rows r JOIN batches b ON r.submission = b.submission WHERE b.status IN (?, ?)",
            OPEN,
        )
        return {r[0] for r in cur.fetchall()}

    def failures_since(self, since: float) -> dict[str, tuple[int, str]]:
        """key -> (rows of it that failed in submissions created at or after `since`, the last message)."""
        cur = self.db.execute(
            "SELECT r.key, COUNT(*), MAX(r.message) FROM batch_rows r JOIN batches b ON "
            "r.submission = b.submission WHERE b.created >= ? AND r.outcome IN ('error', "
            "'missing') GROUP BY r.key",
            (since,),
        )
        return {k: (n, m or "") for k, n, m in cur.fetchall()}

    def submissions(self) -> list[dict]:
        cur = self.db.execute(
            "SELECT submission, round, n_rows, batch_id, status, remote_status, note FROM batches ORDER BY created"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
