"""Rate limits against the local server that enforces them like the real API (429 + retry-after + x-ratelimit-*).

* sustained: with a limit of R requests/min the job keeps >= 90% of R over a minute without a 429 storm (slow);
* adaptation: a client configured far above the server's real limit finds it, from the headers or, on a
  server that sends none, from the 429s alone, and finishes with few 429s.
"""

import json
import time

import pytest
from fake_openai_server import FakeConfig, FakeOpenAI

from proex.data.registry import load_dataset
from proex.profiles.pipeline import ProfileJobConfig, generate

KEY = "sk-proex-rate-KEY-1234abcd5678"
ENV = "PROEX_TEST_KEY"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(ENV, KEY)


def run(srv, tmp_path, n_users, **kw) -> dict:
    inter = load_dataset(f"synthetic:n_users={n_users},n_items=20,mean_interactions=6")
    cfg = ProfileJobConfig(
        **{
            **dict(
                base_url=srv.base_url,
                model="fake-llm",
                api_key_env=ENV,
                out_dir=str(tmp_path),
                sides=("user",),
                concurrency=8,
                backoff_s=0.1,
                tpm=1e8,
                progress=False,
            ),
            **kw,
        }
    )
    summary = generate(cfg, inter)
    assert summary["sides"]["user"] == {"profiled": n_users, "failed": 0}
    return summary


def outcomes(srv) -> dict:
    out: dict = {}
    for e in srv.log():
        out[e["outcome"]] = out.get(e["outcome"], 0) + 1
    return out


def test_adopts_the_advertised_limit_without_a_429_storm(tmp_path):
    with FakeOpenAI(FakeConfig(api_key=KEY, rpm=600, burst_s=1.0)) as srv:  # 10/s, bucket of 10
        summary = run(srv, tmp_path, n_users=20, rpm=6000)  # configured 10x too high
        seen, log = outcomes(srv), srv.log()
        start = min(e["t0"] for e in log)
        late = [e for e in log if e["outcome"] == "429" and e["t0"] > start + 1.0]
        # the first answers' headers teach the limit: 429s only in the opening burst (at most one per worker)
        assert seen["completed"] == 80 and seen.get("429", 0) <= 8 and late == [], (
            seen,
            [(round(e["t0"] - start, 3), e["outcome"]) for e in log if e["outcome"] != "completed"],
        )
        assert summary["limiter"]["rpm"] == pytest.approx(600, rel=0.05)


def test_adapts_from_429s_when_the_server_sends_no_limit_headers(tmp_path):
    with FakeOpenAI(FakeConfig(api_key=KEY, rpm=600, burst_s=1.0, send_limit_headers=False)) as srv:
        t0 = time.time()
        summary = run(srv, tmp_path, n_users=20, rpm=3000)  # 5x too high, only 429s tell
        seen = outcomes(srv)
        print("no limit headers:", seen, summary["limiter"])
        assert seen["completed"] == 80 and seen.get("429", 0) <= 0.25 * 80, seen
        assert summary["limiter"]["throttled_429"] == seen.get("429", 0) and summary["limiter"]["rate_cuts"] > 0
        assert time.time() - t0 < 60


@pytest.mark.slow
def test_sustains_90_percent_of_the_limit_for_a_minute(tmp_path):
    R = 180  # requests per minute: 3/s, light on two shared cores yet ~240 calls over the run
    with FakeOpenAI(FakeConfig(api_key=KEY, rpm=R, burst_s=10.0, latency_s=0.05)) as srv:  # bucket: 10 s of traffic
        summary = run(srv, tmp_path, n_users=62, rpm=R)  # 248 calls, ~80 s at R
        log = srv.log()
        start = min(e["t0"] for e in log)
        done_in_minute = sum(e["outcome"] == "completed" and e["t"] <= start + 60 for e in log)
        throttled = sum(e["outcome"] == "429" for e in log)
        report = {
            "R": R,
            "completed_in_first_minute": done_in_minute,
            "fraction_of_R": done_in_minute / R,
            "429s": throttled,
            "calls": summary["calls"]["sent"],
            "wall_s": summary["wall_s"],
        }
        print(json.dumps(report))
        assert done_in_minute >= 0.9 * R, report
        assert throttled <= 0.02 * len(log), report


def test_a_429_costs_the_pause_it_asks_for_not_a_stall(tmp_path):
    """A client aiming at exactly R against a strict sliding window gets 429s; each costs about Retry-After,
    not (requests waiting / rate) seconds, and every HTTP request is charged at the limiter exactly once."""
    with FakeOpenAI(FakeConfig(api_key=KEY, rpm=600, window_s=5.0)) as srv:  # at most 50 requests in any 5 s
        summary = run(srv, tmp_path, n_users=30, rpm=600, headroom=1.0, burst_s=2.0, concurrency=16)
        log = sorted(srv.log(), key=lambda e: e["t0"])
        ok = [e["t0"] for e in log if e["outcome"] != "429"]
        rejected = [e for e in log if e["outcome"] == "429"]
        # seconds from each 429 to the next admitted request, beyond the wait the server asked for
        late = [min(t for t in ok if t > e["t0"]) - e["t0"] - e["retry_after_s"] for e in rejected]
        report = {"429s": len(rejected), "late_s": [round(x, 2) for x in late], "limiter": summary["limiter"]}
        print(json.dumps(report))
        assert rejected, report  # the strict window did push back
        assert max(late) <= 0.5, report  # resumed when the window allowed (+ jitter), not after a stall
        assert summary["limiter"]["reserved"] == len(log), report  # 429'd requests included, nothing twice
        assert summary["limiter"]["throttled_429"] == len(rejected)


def test_token_limit_binds_end_to_end(tmp_path):
    """The server's tokens/min switched on (prompt + max_tokens counted up front, a 1 s bucket) and requests/min
    far above need: the job is paced by tokens, not requests, and the server rarely has to say 429 (the server,
    like OpenAI, counts max_tokens up front: the client may give back only its prompt estimate's error)."""
    T = 240_000  # tokens/min: 4,000/s, about four calls of max_tokens 800 per second
    with FakeOpenAI(FakeConfig(api_key=KEY, tpm=T, burst_s=1.0)) as srv:
        t0 = time.monotonic()
        summary = run(srv, tmp_path, n_users=6, rpm=6000, tpm=T)  # 24 calls; 100 requests/s would be allowed
        wall = time.monotonic() - t0
        seen = outcomes(srv)
        report = {"outcomes": seen, "wall_s": round(wall, 2), "limiter": summary["limiter"]}
        print(json.dumps(report))
        assert seen["completed"] == 24 and seen.get("429", 0) <= 1, report
        # max_tokens alone charges 24 x 800 tokens; at most 4,000 of them fit the first second's bucket
        assert wall >= (24 * 800 - 4000) / (T / 60), report
        assert summary["limiter"]["tpm"] == pytest.approx(0.97 * T, rel=0.05), report
