"""kill -9 of a running `generate` process, then a restart: the server's own log shows no repeated completed call.

The fake server logs a call as "completed" only when it delivers the answer to a client that is still
connected, so a repeated completed call is one the job paid for twice. The one window no client can close is
an answer that was delivered but not yet committed when the process died (microseconds to a millisecond per
call). `test_kill_at_quiescent_point` kills while every worker is parked inside the server and every delivered
answer is committed (it verifies both), and must show zero repeats; `test_kill_at_random_time` kills at an
arbitrary moment and bounds the repeats by the calls that can be in that window (one per worker).
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_openai_server import FakeConfig, FakeOpenAI

KEY = "sk-proex-resume-KEY-77aa88bb99cc"
ENV = "PROEX_TEST_KEY"
DATASET = "synthetic:n_users=20,n_items=12,mean_interactions=5"
N_USERS, N_ITEMS = 20, 12
CONCURRENCY = 4
ROOT = Path(__file__).resolve().parents[1]


def start(srv, out) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "proex.cli.llm_profiles",
        "generate",
        "--dataset",
        DATASET,
        "--out",
        str(out),
        "--base-url",
        srv.base_url,
        "--model",
        "fake-llm",
        "--api-key-env",
        ENV,
        "--no-progress",
        "--concurrency",
        str(CONCURRENCY),
        "--rpm",
        "60000",
        "--set",
        "backoff_s=0.05",
        "timeout_s=30",
    ]
    env = {**os.environ, ENV: KEY, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def cache_rows(out) -> int:
    path = Path(out) / "cache.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        except sqlite3.OperationalError:  # table not created yet
            return 0


def completed(srv) -> int:
    return sum(e["outcome"] == "completed" for e in srv.log())


def wait_for(cond, timeout=60.0, what=""):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def restart_and_check(srv, out, killed_rows) -> dict:
    total_calls = 4 * (N_USERS + N_ITEMS)
    assert 0 < killed_rows < total_calls  # really mid-run
    proc = start(srv, out)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert cache_rows(out) == total_calls
    assert sum(1 for _ in open(Path(out) / "user" / "profiles.jsonl")) == N_USERS
    return srv.repeated_completed()


def test_kill_at_quiescent_point_repeats_nothing(tmp_path):
    with FakeOpenAI(FakeConfig(api_key=KEY, latency_s=0.02, lifetime_s=300)) as srv:
        proc = start(srv, tmp_path)
        wait_for(lambda: completed(srv) >= 40, what="40 completed calls")
        srv.set(hold=True)  # park the next request of every worker inside the server
        wait_for(
            lambda: srv.held == CONCURRENCY and cache_rows(tmp_path) == completed(srv),
            what="all workers parked and every delivered answer committed",
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        rows = cache_rows(tmp_path)
        srv.set(hold=False)  # the parked requests find their client gone: logged "abandoned", not completed
        wait_for(lambda: sum(e["outcome"] == "abandoned" for e in srv.log()) == CONCURRENCY, 30, "abandoned")
        assert rows == completed(srv)
        repeats = restart_and_check(srv, tmp_path, rows)
        assert repeats == {}, f"{len(repeats)} completed calls were sent again after the restart"


@pytest.mark.slow
def test_kill_at_random_time_repeats_at_most_one_call_per_worker(tmp_path):
    with FakeOpenAI(FakeConfig(api_key=KEY, latency_s=0.02, lifetime_s=300)) as srv:
        proc = start(srv, tmp_path)
        wait_for(lambda: completed(srv) >= 50, what="50 completed calls")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        rows = cache_rows(tmp_path)
        time.sleep(0.2)
        repeats = restart_and_check(srv, tmp_path, rows)
        assert sum(n - 1 for n in repeats.values()) <= CONCURRENCY, repeats
        print(f"random kill: {len(repeats)} repeated completed calls (bound {CONCURRENCY})")
