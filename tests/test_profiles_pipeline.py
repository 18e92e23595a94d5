"""The LLM profile job over real HTTP against the local fake OpenAI server (tests/fake_openai_server.py)."""

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from fake_openai_server import FakeConfig, FakeOpenAI

from proex.cli.llm_profiles import main as profiles_main
from proex.data.registry import load_dataset
from proex.profiles.cache import CallCache
from proex.profiles.client import ProfileAPIError
from proex.profiles.embed import EmbedConfig, embed_profiles
from proex.profiles.offline import write_offline_profiles
from proex.profiles.pipeline import ProfileJobConfig, estimate, generate

KEY = "sk-proex-test-KEY-9f8e7d6c5b4a3210"
WRONG = "sk-wrong-KEY-0000aaaa1111bbbb"
ENV = "PROEX_TEST_KEY"
SMALL = "synthetic:n_users=24,n_items=16,mean_interactions=6"


@pytest.fixture
def server():
    with FakeOpenAI(FakeConfig(api_key=KEY, lifetime_s=300)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(ENV, KEY)


def job(srv, out, **kw) -> ProfileJobConfig:
    base = dict(
        base_url=srv.base_url if srv else "http://127.0.0.1:9/v1",
        model="fake-llm",
        api_key_env=ENV,
        out_dir=str(out),
        backoff_s=0.02,
        rpm=60000,
        tpm=1e8,
        concurrency=6,
        timeout_s=5,
        progress=False,
    )
    return ProfileJobConfig(**{**base, **kw})


def lines(path) -> list[dict]:
    p = Path(path)
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def accounted(out, inter=None, counts=None) -> tuple[dict, dict]:
    """Every entity (all of `inter`, or the first counts[side]) exactly once in profiles.jsonl or failures.jsonl."""
    counts = counts or {"user": inter.n_users, "item": inter.n_items}
    failures = lines(Path(out) / "failures.jsonl")
    ok, failed = {}, {}
    for side, n in counts.items():
        ok[side] = [r["id"] for r in lines(Path(out) / side / "profiles.jsonl")]
        failed[side] = [f["id"] for f in failures if f["side"] == side]
        assert sorted(ok[side] + failed[side]) == list(range(n)), side
    return ok, failed


def completed(srv, path="/chat/completions") -> int:
    return sum(e["outcome"] == "completed" and e["path"].endswith(path) for e in srv.log())


def test_faulty_server_every_entity_accounted_and_rerun_sends_only_what_failed(server, tmp_path):
    server.set(
        fail_500_rate=0.08,
        timeout_rate=0.03,
        timeout_sleep_s=1.5,
        slow_rate=0.05,
        slow_s=0.3,
        malformed_content_rate=0.05,
        malformed_body_rate=0.03,
        duplicate_profiles_rate=0.1,
        seed=1,
    )
    inter = load_dataset(SMALL)
    cfg = job(server, tmp_path, timeout_s=1.0, max_attempts=8, repairs=2, k=4)
    summary = generate(cfg, inter)
    ok, failed = accounted(tmp_path, inter)
    assert sum(map(len, ok.values())) >= 0.9 * (inter.n_users + inter.n_items)
    outcomes = {o: sum(e["outcome"] == o for e in server.log()) for o in ("500", "abandoned", "malformed_body")}
    assert all(outcomes.values()), outcomes  # every fault really happened
    assert summary["calls"]["repairs"] > 0  # malformed / duplicate answers were repaired
    for rec in lines(tmp_path / "user" / "profiles.jsonl"):
        assert (
            len(rec["new"]) == 3
            and len({rec["original"], *rec["new"]}) == 4
            and set(rec["reasoning"]) == {"F1", "F2", "F3", "F4"}
        )
    cache = CallCache(cfg.cache_file)
    assert summary["calls"]["sent"] == completed(server) == cache.counts()["calls"]  # stored = delivered
    server.set(
        fail_500_rate=0.0,
        timeout_rate=0.0,
        slow_rate=0.0,
        malformed_content_rate=0.0,
        malformed_body_rate=0.0,
        duplicate_profiles_rate=0.0,
    )  # the rerun meets a healthy server
    est = estimate(cfg, inter)
    assert (est["calls"] == 0) == (sum(map(len, failed.values())) == 0)  # only failed entities have calls left
    before = {r["id"]: r for r in lines(tmp_path / "user" / "profiles.jsonl")}
    rerun_start = time.time()
    again = generate(cfg, inter)
    sent_now = [e for e in server.log() if e["t0"] >= rerun_start]
    assert again["calls"]["sent"] == len(sent_now) == est["calls"]  # exactly what estimate said ...
    assert again["calls"]["cached"] == summary["calls"]["sent"]  # ... and every stored call reused
    after = {r["id"]: r for r in lines(tmp_path / "user" / "profiles.jsonl")}
    assert all(after[i] == r for i, r in before.items())  # what was profiled stays as it was
    assert accounted(tmp_path, inter)[1] == {"user": [], "item": []}


def test_key_never_written_or_printed(server, tmp_path, monkeypatch, capsys, caplog):
    server.set(fail_500_rate=0.1, malformed_content_rate=0.1, seed=2)
    out = tmp_path / "run"
    args = [
        "generate",
        "--dataset",
        SMALL,
        "--out",
        str(out),
        "--base-url",
        server.base_url,
        "--model",
        "fake-llm",
        "--api-key-env",
        ENV,
        "--limit",
        "6",
        "--set",
        "backoff_s=0.02",
        "max_attempts=6",
    ]
    monkeypatch.setenv(ENV, WRONG)
    assert profiles_main(args) == 3  # 401: the fake server quotes the wrong key back, like OpenAI
    wrong_err = capsys.readouterr().err
    assert "401" in wrong_err and ENV in wrong_err
    assert WRONG not in json.dumps(server.log())  # the server does not log keys either
    monkeypatch.setenv(ENV, KEY)
    assert profiles_main(args) == 0
    printed = wrong_err + "".join(capsys.readouterr()) + caplog.text
    written = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert len(written) > 1000 and (out / "user" / "profiles.jsonl").exists()
    for secret in (KEY, WRONG):
        assert secret not in printed and secret.encode() not in written


def test_estimate_sends_nothing_and_counts_cached_calls(server, tmp_path):
    inter = load_dataset(SMALL)
    cfg = job(server, tmp_path, model="gpt-4o-mini")
    est = estimate(cfg, inter)
    assert est["calls"] == 4 * (inter.n_users + inter.n_items) and est["cached_calls"] == 0
    assert (
        est["cost_usd"] > 0
        and est["prompt_tokens"] > 0
        and server.log() == []
        and not tmp_path.joinpath("cache.sqlite").exists()
    )
    generate(job(server, tmp_path, model="gpt-4o-mini", limit=5), inter)
    est2 = estimate(cfg, inter)
    assert est2["cached_calls"] == 4 * 10 and est2["calls"] == est["calls"] - 40
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["cost_usd"]["this_run"] > 0 and summary["calls"]["prompt_tokens"] > 0


def _bad_dataset():
    inter = load_dataset(SMALL)
    inter.item_text = inter.item_text[["description"]].copy()  # no "title" column: first text column is used
    inter.user_text.loc[0, "reviews"] = None  # missing text field: user 0 still has its item history
    train = inter.train.tolil()
    train[:, 3] = 0  # item 3: no interactions, has text -> profiled from its text
    train[:, 4] = 0  # item 4: no interactions and no text -> reported "no_input"
    train[5, :] = 0  # user 5: no interactions and no text -> reported "no_input"
    inter.train = train.tocsr()
    inter.train.eliminate_zeros()
    inter.item_text.loc[4, "description"] = ""
    inter.user_text.loc[5, "reviews"] = ""
    return inter


def test_bad_input_entities_reported_not_dropped(server, tmp_path):
    inter = _bad_dataset()
    generate(job(server, tmp_path), inter)
    ok, failed = accounted(tmp_path, inter)
    assert failed == {"user": [5], "item": [4]}
    kinds = {(f["side"], f["id"]): f for f in lines(tmp_path / "failures.jsonl")}
    assert kinds[("item", 4)]["kind"] == "no_input" and "no text and no interactions" in kinds[("item", 4)]["message"]
    assert 0 in ok["user"] and 3 in ok["item"]
    no_text = load_dataset(SMALL)
    no_text.user_text = no_text.item_text = None
    with pytest.raises(ValueError, match="no user_text or item_text"):
        generate(job(server, tmp_path / "none"), no_text)
    assert not (tmp_path / "none").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wrong_key_wrong_endpoint_and_context_overflow_leave_cache_intact(server, tmp_path, monkeypatch):
    inter = load_dataset(SMALL)
    cfg = job(server, tmp_path, limit=4)
    generate(cfg, inter)
    cache = CallCache(cfg.cache_file)
    rows = cache.counts()["calls"]
    assert rows == 32
    big = job(server, tmp_path, limit=8)
    monkeypatch.setenv(ENV, WRONG)
    with pytest.raises(ProfileAPIError, match="rejected the API key") as err:
        generate(big, inter)
    assert err.value.fatal and WRONG not in str(err.value)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "stopped" and "401" in summary["stopped_because"]
    ok, failed = accounted(tmp_path, counts={"user": 8, "item": 8})
    assert {f["kind"] for f in lines(tmp_path / "failures.jsonl")} == {"stopped"}
    monkeypatch.setenv(ENV, KEY)
    unreachable = job(None, tmp_path, limit=8, base_url=f"http://127.0.0.1:{_free_port()}/v1", max_attempts=2)
    with pytest.raises(ProfileAPIError, match="cannot reach"):
        generate(unreachable, inter)
    assert cache.counts()["calls"] == rows and cache.integrity() == "ok"
    inter.user_text.loc[6, "reviews"] = "dragon " * 6000  # ~42k characters: past the server's context
    server.set(context_limit_tokens=3000)
    generate(job(server, tmp_path, limit=8, max_input_chars=60000), inter)
    failures = {(f["side"], f["id"]): f for f in lines(tmp_path / "failures.jsonl")}
    assert list(failures) == [("user", 6)] and failures[("user", 6)]["kind"] == "context_overflow"
    assert "longer than the context" in failures[("user", 6)]["message"]
    assert cache.counts()["calls"] == completed(server) and cache.integrity() == "ok"  # stored = delivered
    assert cache.db.execute("SELECT COUNT(*) FROM calls WHERE side='user' AND entity=6").fetchone()[0] == 0


def test_openai_embeddings_are_batched_cached_and_banked(server, tmp_path):
    inter = load_dataset(SMALL)
    write_offline_profiles(inter, str(tmp_path / "prof"), k=3)
    cfg = EmbedConfig(
        embedder="openai", base_url=server.base_url, api_key_env=ENV, model="fake-embed", batch_size=16, backoff_s=0.02
    )
    bank = embed_profiles(str(tmp_path / "prof"), inter, cfg, str(tmp_path / "bank"))
    assert bank.user.shape == (3, 24, 16) and bank.item.shape == (3, 16, 16)
    n_texts = 3 * (24 + 16)
    assert completed(server, "/embeddings") == -(-n_texts // 16)
    assert bank.manifest["profiler"] == "offline (no LLM)" and "fake-embed" in bank.manifest["embedder"]
    again = embed_profiles(str(tmp_path / "prof"), inter, cfg)
    assert completed(server, "/embeddings") == -(-n_texts // 16)  # all from the cache
    np.testing.assert_array_equal(np.asarray(again.user), np.asarray(bank.user))
