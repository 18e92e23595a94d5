"""Prompts, answer validation, the token-bucket limiter (fake clock) and the SQLite cache, without HTTP."""

import json
import subprocess
import sys

import pytest

from proex.profiles.cache import CallCache, call_key, input_hash
from proex.profiles.client import Redactor
from proex.profiles.limiter import BucketState, parse_duration, retry_after_seconds
from proex.profiles.prompts import (
    DOMAINS,
    PROMPT_VERSION,
    SIDES,
    STEPS,
    EntityInput,
    build_messages,
    parse_answer,
    repair_messages,
    system_prompt,
)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_system_prompts_cover_steps_sides_and_domain_nouns(domain):
    keys = {"F1": "summarization", "F2": "positive_aspects", "F3": "latent_preferences", "F4": "profiles"}
    for side in SIDES:
        for step in STEPS:
            text = system_prompt(step, side, domain, k=5)
            assert f'"{keys[step]}"' in text and "JSON" in text
            noun = DOMAINS[domain].user if side == "user" else DOMAINS[domain].item
            assert noun in text
        assert "exactly 4 new profiles" in system_prompt("F4", side, domain, k=5)
    with pytest.raises(ValueError):
        system_prompt("F5", "user", domain, 4)


def test_messages_chain_earlier_answers():
    ent = EntityInput("user", 7, {"reviews": "loved the dragons"}, ["Dragon Book", "Wizard Book"])
    out = {
        "F1": {"summarization": "OP text"},
        "F2": {"positive_aspects": ["a"], "negative_aspects": []},
        "F3": {"latent_preferences": ["b"]},
    }
    f1 = json.loads(build_messages("F1", ent, {}, "books", 4, 1000)[1]["content"])
    assert f1["interacted_items"] == ["Dragon Book", "Wizard Book"] and f1["reviews"] == "loved the dragons"
    f4 = json.loads(build_messages("F4", ent, out, "books", 4, 1000)[1]["content"])
    assert f4["original_profile"] == "OP text" and f4["latent_preferences"] == ["b"]
    short = json.loads(build_messages("F1", ent, {}, "books", 4, 20)[1]["content"])
    assert short["interacted_items"] == []  # history cut to the character budget


def test_parse_answer_validates_and_explains():
    ok = '```json\n{"profiles": ["A likes x.", "B wants y.", "C avoids z."], "reasoning": "r"}\n```'
    parsed, problem = parse_answer("F4", ok, 4, original="Something else")
    assert problem is None and parsed["profiles"][2] == "C avoids z."
    cases = {
        '{"profiles": ["a", "b"]}': "expected exactly 3",
        '{"profiles": ["a", "A!", "c"]}': "identical",
        '{"profiles": ["a", "", "c"]}': "empty",
        '{"profiles": ["Same OP.", "b", "c"]}': "repeats the original",
        '{"profiles": "abc"}': "list of strings",
        '{"profiles": ["a", "b", "c"': "JSON",
        "no json here": "no JSON object",
    }
    for text, expected in cases.items():
        parsed, problem = parse_answer("F4", text, 4, original="same op")
        assert parsed is None and expected in problem, (text, problem)
    assert parse_answer("F1", '{"summarization": "  "}', 4)[1] == '"summarization" must be a non-empty string'
    assert parse_answer("F2", '{"positive_aspects": [], "negative_aspects": []}', 4)[0] is None
    assert parse_answer("F3", '{"latent_preferences": ["x"]}', 4)[0]["latent_preferences"] == ["x"]
    msgs = repair_messages([{"role": "system", "content": "s"}], "bad", "two new profiles are identical", "F4", 4)
    assert [m["role"] for m in msgs] == ["system", "assistant", "user"] and "identical" in msgs[-1]["content"]


def test_cache_key_covers_version_model_side_entity_step_and_input():
    base = ("v1", "m", "user", 3, "F1", input_hash([{"role": "user", "content": "x"}]))
    keys = {
        call_key(*base),
        call_key("v2", *base[1:]),
        call_key(base[0], "m2", *base[2:]),
        call_key(*base[:2], "item", *base[3:]),
        call_key(*base[:3], 4, *base[4:]),
        call_key(*base[:4], "F2", base[5]),
        call_key(*base[:5], input_hash([{"role": "user", "content": "y"}])),
    }
    assert len(keys) == 7 and PROMPT_VERSION.startswith("proex-cot-")


def test_limiter_spaces_requests_and_tokens():
    clock = Clock()
    b = BucketState(rpm=60, tpm=600, burst_s=1.0, clock=clock, headroom=1.0)  # 1 request/s, 10 tokens/s, 1 s burst
    waits = [b.reserve(1)[0] for _ in range(4)]
    assert waits == pytest.approx([0.0, 1.0, 2.0, 3.0])
    clock.t += 10
    assert b.reserve(25)[0] == pytest.approx(1.5)  # 10 banked tokens, 15 owed at 10/s
    b.refund(15)
    clock.t += 10
    assert b.reserve(1)[0] == 0.0


def test_limiter_feedback_429_pause_and_headers():
    clock = Clock()
    b = BucketState(rpm=600, tpm=0, burst_s=1.0, clock=clock, headroom=1.0)
    wait, ticket = b.reserve(1)
    assert wait == 0.0 and b.confirm(ticket) == 0.0
    assert b.feedback({"Retry-After": "3"}, status=429) == pytest.approx(3.0)
    assert b.blocked_for() == pytest.approx(3.0) and b.stats["throttled_429"] == 1
    assert b.reserve(1)[0] >= 3.0  # a new request waits behind the pause
    assert b.feedback({"Retry-After": "2"}, status=429) == pytest.approx(2.0)
    assert b.stats["paused_s"] == pytest.approx(3.0)  # a shorter pause inside the first adds nothing
    b.feedback({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0"})
    assert b.snapshot()["rpm"] == pytest.approx(60)
    clock.t += 100
    b.feedback({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "59s"})
    assert b.reserve(1)[0] == pytest.approx(2.0)  # level synced to 0 - 1 spare: 2/rate, no minute-long stall
    assert parse_duration("6m0s") == 360 and parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1h2m3.5s") == pytest.approx(3723.5) and parse_duration("soon") is None
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == pytest.approx(0.25)


def test_limiter_aims_below_the_configured_and_the_advertised_limit():
    clock = Clock()
    b = BucketState(rpm=240, tpm=0, burst_s=1.0, clock=clock)  # default headroom 0.97
    assert b.snapshot()["rpm"] == pytest.approx(0.97 * 240)
    b.feedback({"x-ratelimit-limit-requests": "120"})
    assert b.snapshot()["rpm"] == pytest.approx(0.97 * 120)
    with pytest.raises(ValueError, match="headroom"):
        BucketState(rpm=1, tpm=0, headroom=1.5)


def _send_times(b, tickets) -> list[float]:
    """When each waiting caller sends: it wakes at its ticket's time and confirms until no wait is left."""
    return sorted(at + b.shift - shift_then for at, shift_then in tickets)


def test_a_429_moves_the_queue_by_the_pause_without_charging_it_again():
    clock = Clock()
    b = BucketState(rpm=240, tpm=0, burst_s=0.25, clock=clock, headroom=1.0)  # 4/s, no burst beyond 1
    tickets = [b.reserve(100)[1] for _ in range(48)]  # 48 callers queued: 0 .. 11.75 s
    clock.t += 0.1  # the first request (sent at 0) comes back 429, Retry-After 1 s
    assert b.feedback({"retry-after": "1", "x-ratelimit-limit-requests": "240"}, status=429) == 1.0
    retry_wait, retry = b.reserve(100, front=True)  # its retry: first after the pause
    assert retry_wait == pytest.approx(1.0)
    times = _send_times(b, tickets[1:] + [retry])
    assert b.stats["reserved"] == 49  # 48 requests + 1 retry, each charged once
    assert times[0] == pytest.approx(1001.1)  # nothing before the server allows ...
    gaps = [t1 - t0 for t0, t1 in zip(times, times[1:])]
    # ... then the queue at the rate (at most one slot is lost between the 429 and the first queued request)
    assert min(gaps) >= 0.25 - 1e-9 and max(gaps) <= 0.5 + 1e-9
    assert times[-1] - 1000.0 == pytest.approx(11.75 + 1.0 + 0.25)  # pause + the retry's slot, no stall
    for _, shift_then in tickets[1:]:  # every waiting caller confirms without a new charge
        b.confirm((clock.t, shift_then))
    assert b.stats["reserved"] == 49
    assert b.reserve(1)[0] == pytest.approx(times[-1] + 0.25 - clock.t)  # a newcomer queues behind them all


def test_redactor_removes_key_and_keylike_strings():
    r = Redactor("sk-live-SECRET-123456")
    text = r("Incorrect API key provided: sk-live-SECRET-123456; header Bearer abc.def; other sk-proj-abcdefghijkl")
    assert "SECRET" not in text and "abc.def" not in text and "abcdefghijkl" not in text


def test_cache_is_durable_and_shared_across_processes(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = CallCache(path)
    row = dict(
        prompt_version="v",
        model="m",
        side="user",
        step="F1",
        input_hash="h",
        response="{}",
        prompt_tokens=3,
        completion_tokens=2,
    )
    cache.put("k0", entity=0, **row)
    writer = (
        "import sys; from proex.profiles.cache import CallCache\n"
        "c = CallCache(sys.argv[1])\n"
        "for i in range(1, 201): c.put(f'k{i}', prompt_version='v', model='m', side='user', entity=i, step='F1', "
        "input_hash='h', response='{}', prompt_tokens=1, completion_tokens=1)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(path)])
    for i in range(201, 401):  # both processes write at once
        cache.put(f"k{i}", entity=i, **row)
    assert proc.wait(timeout=60) == 0
    cache.put("k0", entity=0, **{**row, "response": "changed"})  # a present key is kept as stored
    again = CallCache(path)
    assert again.counts()["calls"] == 401 and again.integrity() == "ok"
    assert {k: v for k, v in again.get("k0").items() if k != "created"} == {
        "response": "{}",
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "via": "online",
    }
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
