"""`--batch`: the profile job through the Batch API of the local OpenAI-compatible server (/v1/files,
/v1/batches over real HTTP): the same profiles as the online path, failed and expired rows asked again, invalid
answers repaired in the next round, the batch price, resumption after kill -9 without resubmitting."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_openai_server import FakeConfig, FakeOpenAI

from proex.data.registry import load_dataset
from proex.profiles.pipeline import ProfileJobConfig, estimate, generate

KEY = "sk-proex-batch-KEY-2718281828"
ENV = "PROEX_TEST_KEY"
DATASET = "synthetic:n_users=10,n_items=12,mean_interactions=5"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(ENV, KEY)


def job(srv, out, **kw) -> ProfileJobConfig:
    base = dict(
        base_url=srv.base_url,
        model="gpt-4o-mini",
        api_key_env=ENV,
        out_dir=str(out),
        batch=True,
        batch_poll_s=0.02,
        progress=False,
        backoff_s=0.02,
        rpm=60000,
        tpm=1e8,
        timeout_s=5,
    )
    return ProfileJobConfig(**{**base, **kw})


def profiles(out) -> dict:
    return {side: (Path(out) / side / "profiles.jsonl").read_text() for side in ("user", "item")}


def rows_per_custom_id(srv) -> dict[str, int]:
    """How many submitted batch input files hold each custom_id (a row submitted twice counts 2)."""
    counts: dict[str, int] = {}
    for b in srv.batches.values():
        for line in srv.files[b["input_file_id"]]["data"].decode().splitlines():
            cid = json.loads(line)["custom_id"]
            counts[cid] = counts.get(cid, 0) + 1
    return counts


def test_batch_gives_the_online_profiles_at_half_the_price(tmp_path):
    inter = load_dataset(DATASET)
    with FakeOpenAI(FakeConfig(api_key=KEY, lifetime_s=300)) as srv:
        online = generate(job(srv, tmp_path / "online", batch=False), inter)
        est = estimate(job(srv, tmp_path / "batch"), inter)
        assert est["price"].startswith("batch") and est["calls"] == 4 * 22
        assert est["cost_usd"] == pytest.approx(
            estimate(job(srv, tmp_path / "batch", batch=False), inter)["cost_usd"] / 2, rel=1e-3
        )
        summary = generate(job(srv, tmp_path / "batch"), inter)
        assert profiles(tmp_path / "batch") == profiles(tmp_path / "online")  # same prompts, same validation
        assert [b["n_rows"] for b in summary["batches"]] == [22, 22, 22, 22]  # one round per step
        assert summary["calls"]["sent"] == online["calls"]["sent"] == 88
        assert summary["calls"]["prompt_tokens"] == online["calls"]["prompt_tokens"]
        assert summary["cost_usd"]["this_run"] == pytest.approx(online["cost_usd"]["this_run"] / 2, abs=2e-6)
        rows = [e for e in srv.log() if e["path"] == "/v1/batches:row"]
        assert {(e["response_format"], e["seed"]) for e in rows} == {("json_schema", 0)}
        again = generate(job(srv, tmp_path / "batch"), inter)  # a rerun: everything from the cache
        assert again["calls"]["sent"] == 0 and len(srv.batches) == 4


def test_failed_expired_and_invalid_rows_are_asked_again_never_twice(tmp_path):
    inter = load_dataset(DATASET)
    with FakeOpenAI(
        FakeConfig(api_key=KEY, lifetime_s=300, batch_row_fail_rate=0.15, malformed_content_rate=0.15, seed=3)
    ) as srv:
        summary = generate(job(srv, tmp_path, repairs=2, batch_row_attempts=5), inter)
        assert summary["sides"] == {"user": {"profiled": 10, "failed": 0}, "item": {"profiled": 12, "failed": 0}}
        outcomes = {o: sum(e["outcome"] == o for e in srv.log()) for o in ("500", "completed")}
        assert outcomes["500"] > 0 and summary["calls"]["repairs"] > 0  # failed rows and invalid answers happened
        assert summary["calls"]["sent"] == outcomes["completed"]  # every answered row cached exactly once
        assert max(rows_per_custom_id(srv).values()) <= 1 + 4  # a failed row is asked again, at most 5 times
        with sqlite3.connect(tmp_path / "cache.sqlite") as db:
            assert (
                db.execute("SELECT COUNT(*) FROM calls WHERE via LIKE 'batch:%'").fetchone()[0] == outcomes["completed"]
            )
    with FakeOpenAI(FakeConfig(api_key=KEY, lifetime_s=300, batch_expire=1)) as srv:
        summary = generate(job(srv, tmp_path / "expiring"), load_dataset(DATASET))
        assert summary["sides"]["user"]["failed"] == summary["sides"]["item"]["failed"] == 0
        batches = [(b["n_rows"], b["remote_status"]) for b in summary["batches"]]
        # round 1 expires with 11 of 22 answered; round 2 asks those 11 again with the 11 F2 calls
        assert batches[0] == (22, "expired") and batches[1] == (22, "completed") and len(batches) == 5
        assert sorted(rows_per_custom_id(srv).values())[-11:] == [2] * 11 and summary["calls"]["sent"] == 88


def test_batch_falls_back_to_json_mode_where_json_schema_is_refused(tmp_path):
    with FakeOpenAI(FakeConfig(api_key=KEY, lifetime_s=300, batch_reject_json_schema=True)) as srv:
        summary = generate(job(srv, tmp_path, limit=3), load_dataset(DATASET))
        assert summary["sides"]["user"]["failed"] == summary["sides"]["item"]["failed"] == 0
        kinds = [e["response_format"] for e in srv.log() if e["path"] == "/v1/batches:row"]
        assert set(kinds[:6]) == {"json_schema"} and set(kinds[6:]) == {"json_object"}  # round 1 refused, asked again
        with sqlite3.connect(tmp_path / "cache.sqlite") as db:
            # JSON mode with the schema (llama.cpp's grammar) is the first fallback
            assert set(db.execute("SELECT response_format, seed FROM calls")) == {("json_object+schema", 0)}


def _start(srv, out) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "proex.cli.llm_profiles",
        "generate",
        "--batch",
        "--dataset",
        DATASET,
        "--out",
        str(out),
        "--base-url",
        srv.base_url,
        "--model",
        "gpt-4o-mini",
        "--api-key-env",
        ENV,
        "--no-progress",
        "--set",
        "batch_poll_s=0.05",
    ]
    env = {**os.environ, ENV: KEY, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait(cond, what, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_kill_9_between_submission_and_download_resubmits_nothing(tmp_path):
    with FakeOpenAI(FakeConfig(api_key=KEY, lifetime_s=300, batch_hold=True)) as srv:
        proc = _start(srv, tmp_path)
        _wait(lambda: len(srv.batches) == 1, "round 1 submitted")  # the server holds it in_progress
        time.sleep(0.5)  # the job polls it
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        with sqlite3.connect(tmp_path / "cache.sqlite") as db:  # as if killed before the batch id was recorded
            assert db.execute("SELECT COUNT(*) FROM batches WHERE status = 'submitted'").fetchone()[0] == 1
            db.execute("UPDATE batches SET batch_id = NULL, status = 'preparing'")
        srv.set(batch_hold=False)
        proc = _start(srv, tmp_path)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert len(srv.batches) == 4 and max(rows_per_custom_id(srv).values()) == 1  # no row submitted twice
        assert srv.repeated_completed() == {} and len(profiles(tmp_path)["user"].splitlines()) == 10
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["cost_usd"]["price"].startswith("batch")
        printed = out + err
        written = b"".join(p.read_bytes() for p in Path(tmp_path).rglob("*") if p.is_file())
        stored = b"".join(f["data"] for f in srv.files.values())  # what the server holds: inputs and outputs
        assert (tmp_path / "batches").is_dir() and len(list((tmp_path / "batches").glob("*.jsonl"))) == 8
        for blob in (printed, written, stored):
            assert KEY.encode() not in blob
