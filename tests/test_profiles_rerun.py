"""Reruns retry what failed, `estimate` counts exactly what a run sends, and the request options (structured
outputs, seed) degrade gracefully and are recorded; against the local OpenAI-compatible server over HTTP."""

import json
import re
import sqlite3
import time
from pathlib import Path

import pytest
from fake_openai_server import FakeConfig, FakeOpenAI

from proex.cli.llm_profiles import main as profiles_main
from proex.data.registry import load_dataset
from proex.profiles.pipeline import ProfileJobConfig, estimate, generate

KEY = "sk-proex-rerun-KEY-31415926535"
ENV = "PROEX_TEST_KEY"
DATASET = "synthetic:n_users=16,n_items=12,mean_interactions=5"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(ENV, KEY)


def job(srv, out, **kw) -> ProfileJobConfig:
    base = dict(
        base_url=srv.base_url,
        model="gpt-4o-mini",
        api_key_env=ENV,
        out_dir=str(out),
        backoff_s=0.02,
        rpm=60000,
        tpm=1e8,
        concurrency=6,
        timeout_s=5,
        progress=False,
        sides=("user",),
        repairs=1,
    )
    return ProfileJobConfig(**{**base, **kw})


def rows_since(out, t: float) -> list[tuple]:
    with sqlite3.connect(Path(out) / "cache.sqlite") as db:
        return db.execute("SELECT entity, step, seed FROM calls WHERE created >= ?", (t,)).fetchall()


def failed_ids(out) -> dict[int, str]:
    lines = (Path(out) / "failures.jsonl").read_text().splitlines()
    return {f["id"]: f["kind"] for f in map(json.loads, lines)}


def test_rerun_retries_exactly_the_invalid_entities_and_estimate_predicts_it(tmp_path, capsys):
    with FakeOpenAI(FakeConfig(api_key=KEY, malformed_content_rate=0.4, seed=5, lifetime_s=300)) as srv:
        args = [
            "generate",
            "--dataset",
            DATASET,
            "--out",
            str(tmp_path),
            "--base-url",
            srv.base_url,
            "--model",
            "gpt-4o-mini",
            "--api-key-env",
            ENV,
            "--sides",
            "user",
            "--no-progress",
            "--set",
            "backoff_s=0.02",
            "repairs=1",
        ]
        assert profiles_main(args) == 1
        failed = failed_ids(tmp_path)
        assert failed and set(failed.values()) == {"invalid_answer"}  # answers that stayed invalid
        said = capsys.readouterr().err
        promised = int(re.search(r"Rerunning the same command sends (\d+) calls", said).group(1))
        srv.set(malformed_content_rate=0.0)  # the server now answers well
        cfg = job(srv, tmp_path)
        est = estimate(cfg, load_dataset(DATASET))
        assert est["calls"] == promised and est["retry_calls"] >= len(failed)
        mark, sent_before = time.time(), len(srv.log())
        summary = generate(cfg, load_dataset(DATASET))
        assert summary["sides"]["user"] == {"profiled": 16, "failed": 0}
        new = rows_since(tmp_path, mark)
        assert {e for e, _, _ in new} == set(failed)  # exactly the failed entities were asked again ...
        assert summary["calls"]["sent"] == est["calls"] == len(new) == len(srv.log()) - sent_before  # ... as estimated
        assert summary["calls"]["retries"] == est["retry_calls"]
        retried = [(step, seed) for _, step, seed in new if "@" in step]
        assert len(retried) >= len(failed) and all("@2" in step and seed == 1 for step, seed in retried)
        assert all(seed == 0 for _, step, seed in new if "@" not in step)  # attempt 2: own keys, own seed
        assert estimate(cfg, load_dataset(DATASET))["calls"] == 0  # nothing left; a third run sends nothing
        mark = len(srv.log())
        assert generate(cfg, load_dataset(DATASET))["calls"]["sent"] == 0 and len(srv.log()) == mark


def test_estimate_counts_cached_repairs(tmp_path):
    """After a run that needed repairs, estimate counts what a rerun sends: not the cached repairs (it used
    to count them), only the calls of entities that failed (none, unless a call ran out of retries)."""
    with FakeOpenAI(FakeConfig(api_key=KEY, malformed_content_rate=0.3, seed=7, lifetime_s=300)) as srv:
        cfg = job(srv, tmp_path, repairs=3)
        first = generate(cfg, load_dataset(DATASET))
        assert first["calls"]["repairs"] > 0
        srv.set(malformed_content_rate=0.0)
        est = estimate(cfg, load_dataset(DATASET))
        assert est["cached_calls"] >= first["calls"]["sent"] - est["calls"]
        assert (est["calls"] == 0) == (first["sides"]["user"]["failed"] == 0)
        assert generate(cfg, load_dataset(DATASET))["calls"]["sent"] == est["calls"]


def test_structured_outputs_fall_back_and_the_seed_is_recorded(tmp_path):
    with FakeOpenAI(FakeConfig(api_key=KEY, lifetime_s=300)) as srv:
        generate(job(srv, tmp_path / "a", limit=2, seed=42), load_dataset(DATASET))
        sent = [e for e in srv.log() if e["outcome"] == "completed"]
        assert {e["response_format"] for e in sent} == {"json_schema"} and {e["seed"] for e in sent} == {42}
        with sqlite3.connect(tmp_path / "a" / "cache.sqlite") as db:
            assert set(db.execute("SELECT response_format, seed, via FROM calls")) == {("json_schema", 42, "online")}
    with FakeOpenAI(FakeConfig(api_key=KEY, lifetime_s=300, json_schema_supported=False, seed_supported=False)) as srv:
        summary = generate(job(srv, tmp_path / "b", limit=2, concurrency=1), load_dataset(DATASET))
        assert summary["sides"]["user"] == {"profiled": 2, "failed": 0}
        log = srv.log()
        assert [e["outcome"] for e in log[:2]] == ["400", "400"]  # json_schema refused, then the seed
        assert {(e["response_format"], e["seed"]) for e in log[2:]} == {("json_object", None)}
        with sqlite3.connect(tmp_path / "b" / "cache.sqlite") as db:  # JSON mode carrying the schema
            assert set(db.execute("SELECT response_format, seed FROM calls")) == {("json_object+schema", None)}


def test_a_500_naming_response_format_falls_back_once_not_retried_as_transient(tmp_path):
    """llama.cpp's server answers a json_schema response_format with HTTP 500 quoting its request validator."""
    with FakeOpenAI(
        FakeConfig(api_key=KEY, lifetime_s=300, json_schema_supported=False, json_schema_refused_as="500")
    ) as srv:
        summary = generate(job(srv, tmp_path, limit=3, concurrency=1, max_attempts=2), load_dataset(DATASET))
        assert summary["sides"]["user"] == {"profiled": 3, "failed": 0} and summary["calls"]["sent"] == 12
        log = srv.log()
        assert [e["outcome"] for e in log].count("500") == 1 and log[0]["outcome"] == "500"  # once per job
        assert {e["response_format"] for e in log[1:]} == {"json_object"}
        with sqlite3.connect(tmp_path / "cache.sqlite") as db:
            assert set(db.execute("SELECT response_format FROM calls")) == {("json_object+schema",)}


def test_the_completion_cap_goes_by_the_name_the_endpoint_takes(tmp_path):
    """max_completion_tokens to OpenAI (max_tokens is deprecated there, refused by its o-series), max_tokens to
    other servers (llama.cpp's ignores the new name); a 400 naming the field switches to the other name."""
    from proex.profiles.client import default_token_field

    assert default_token_field("https://api.openai.com/v1") == "max_completion_tokens"
    assert default_token_field("https://me.openai.azure.com/openai") == "max_completion_tokens"
    assert default_token_field("http://127.0.0.1:8080/v1") == "max_tokens"
    with FakeOpenAI(FakeConfig(api_key=KEY, lifetime_s=300, max_tokens_supported=False)) as srv:
        summary = generate(job(srv, tmp_path, limit=2, concurrency=1, max_attempts=2), load_dataset(DATASET))
        assert summary["sides"]["user"] == {"profiled": 2, "failed": 0}
        log = srv.log()
        assert [(e["outcome"], e["cap_field"]) for e in log[:2]] == [
            ("400", "max_tokens"),
            ("completed", "max_completion_tokens"),
        ]
        assert {e["cap_field"] for e in log[1:]} == {"max_completion_tokens"}
    with FakeOpenAI(FakeConfig(api_key=KEY, lifetime_s=300)) as srv:
        generate(job(srv, tmp_path / "named", limit=1, max_tokens_field="max_completion_tokens"), load_dataset(DATASET))
        assert {e["cap_field"] for e in srv.log()} == {"max_completion_tokens"}
