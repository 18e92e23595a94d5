"""`--batch` against a Batch API that behaves as OpenAI documents its limits and failures (the local server of
tests/fake_openai_batches.py over real HTTP): a lost answer to batch creation bills no row twice, input files
stay under the provider's size cap, a batch refused as a whole for the enqueued-token limit is not a failure of
its rows, and the cost of cached answers is priced at the rate they were bought at."""

import json
import time
from pathlib import Path

import pytest
from fake_openai_batches import _file, batch_tokens
from fake_openai_server import FakeConfig, FakeOpenAI
from test_profiles_batch import DATASET, ENV, KEY, job, rows_per_custom_id

from proex.data.registry import load_dataset
from proex.profiles.batch_limits import enqueued_limit, split_requests
from proex.profiles.client import PRICES
from proex.profiles.pipeline import generate


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(ENV, KEY)


@pytest.mark.parametrize("lost_as", ["500", "timeout"])
def test_a_lost_answer_to_batch_creation_bills_no_row_twice(tmp_path, lost_as):
    """The server creates the batch, then the answer is lost (a 500, or none before the client's timeout)."""
    cfg = FakeConfig(
        api_key=KEY, lifetime_s=300, batch_create_lost=1, batch_create_lost_as=lost_as, timeout_sleep_s=1.5
    )
    with FakeOpenAI(cfg) as srv:
        summary = generate(job(srv, tmp_path, timeout_s=1.0, limit=4), load_dataset(DATASET))
        assert summary["sides"] == {"user": {"profiled": 4, "failed": 0}, "item": {"profiled": 4, "failed": 0}}
        creates = [e for e in srv.log() if e["outcome"] == "batch_created"]
        assert len(creates) == len(srv.batches) == 4  # one per step round: the lost one was found, not re-created
        assert max(rows_per_custom_id(srv).values()) == 1 and srv.repeated_completed() == {}
        assert summary["calls"]["sent"] == 4 * 8 and [b["batch_id"] for b in summary["batches"]] == sorted(srv.batches)


def test_input_files_stay_under_the_providers_size_cap(tmp_path):
    cap = 12_000  # bytes; each first-step line is ~2 KB here, a round of 22 lines ~45 KB
    with FakeOpenAI(FakeConfig(api_key=KEY, lifetime_s=300, batch_max_file_bytes=cap)) as srv:
        summary = generate(job(srv, tmp_path, batch_max_bytes=cap), load_dataset(DATASET))
        uploads = [e["bytes"] for e in srv.log() if e["path"] == "/v1/files"]
        assert uploads and max(uploads) <= cap and len(uploads) > 4  # split by bytes, not by rows
        assert all(e["outcome"] == "uploaded" for e in srv.log() if e["path"] == "/v1/files")
        assert summary["sides"]["user"]["failed"] == summary["sides"]["item"]["failed"] == 0
        assert max(rows_per_custom_id(srv).values()) == 1 and summary["calls"]["sent"] == 88
    assert split_requests([5, 5, 5, 5], [1, 1, 1, 1], max_rows=3, max_bytes=10) == [range(0, 2), range(2, 4)]
    assert split_requests([5, 5, 5, 5], [1, 1, 1, 1], max_rows=3, max_bytes=100) == [range(0, 3), range(3, 4)]
    with pytest.raises(ValueError, match="batch_max_bytes"):
        split_requests([50], [1], max_rows=3, max_bytes=10)


def test_a_batch_refused_for_the_enqueued_token_limit_is_resent_within_it(tmp_path, caplog):
    """Another job's batch holds part of the queue; the first round (22 rows) is over the limit and ends
    `failed` as a whole with token_limit_exceeded. Its rows are not failures: the job reads the limit, waits for
    the queue to drain, and sends batches that fit, one at a time."""
    inter = load_dataset(DATASET)
    with FakeOpenAI(FakeConfig(api_key=KEY, lifetime_s=300)) as probe:  # how many tokens a first round holds
        generate(job(probe, tmp_path / "probe", sides=("user",), limit=10), inter)
        first_round = batch_tokens(probe, probe.batches["batch_000001"])
    cap = first_round // 2  # about 5 of the 10 user rows fit
    with FakeOpenAI(FakeConfig(api_key=KEY, lifetime_s=300, batch_enqueued_token_cap=cap, batch_latency_s=0.3)) as srv:
        line = {
            "custom_id": "other",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 400}]},
        }
        other = _file(srv, (json.dumps(line) + "\n").encode(), "batch", "other.jsonl")["id"]
        srv.batches["batch_000000"] = {
            "id": "batch_000000",
            "object": "batch",
            "status": "in_progress",
            "input_file_id": other,
            "metadata": {},
            "errors": None,
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(time.time()),
            "_t": time.time(),
            "_model": "gpt-4o-mini",
            "_latency": 3.0,
        }
        with caplog.at_level("WARNING", logger="proex.profiles.batch"):
            summary = generate(job(srv, tmp_path / "run", sides=("user",), limit=10), inter)
        assert summary["sides"]["user"] == {"profiled": 10, "failed": 0}
        refused = [b for b in summary["batches"] if b["status"] == "refused"]
        assert len(refused) == 1 and refused[0]["n_rows"] == 10  # only the first, before the limit was known
        assert f"enqueued-token limit of {cap:,} tokens" in refused[0]["note"]
        assert f"{cap:,}" in caplog.text and "waiting for 1 batch(es)" in caplog.text
        ours = [b for b in srv.batches.values() if b["id"] != "batch_000000"]
        assert [b["status"] for b in ours].count("failed") == 1
        assert all(batch_tokens(srv, b) <= cap for b in ours if b["status"] == "completed")
        assert srv.batches["batch_000000"]["status"] == "completed"
        assert max(rows_per_custom_id(srv).values()) == 2 and srv.repeated_completed() == {}
        assert summary["calls"]["sent"] == 40
    assert (
        enqueued_limit(
            "Enqueued token limit reached for gpt-4o-mini in organization org-x. Limit: 2,000,000 "
            "enqueued tokens. Please try again once some in_progress batches have been completed."
        )
        == 2_000_000
    )


def test_cost_incl_cached_prices_online_answers_online_and_batch_answers_batch(tmp_path):
    inter = load_dataset(DATASET)
    with FakeOpenAI(FakeConfig(api_key=KEY, lifetime_s=300)) as srv:
        online = generate(job(srv, tmp_path, batch=False, limit=3), inter)  # 6 entities bought online
        batch = generate(job(srv, tmp_path), inter)  # the other 16 through the Batch API
        again = generate(job(srv, tmp_path, batch=False), inter)  # everything cached
    p_in, p_out = PRICES["gpt-4o-mini"]
    usd = lambda t: (t["prompt_tokens"] * p_in + t["completion_tokens"] * p_out) / 1e6  # noqa: E731
    paid = usd(online["calls"]) + usd(batch["calls"]) / 2
    assert batch["calls"]["cached"] == online["calls"]["sent"] and again["calls"]["sent"] == 0
    assert batch["cost_usd"]["incl_cached"] == pytest.approx(paid, abs=2e-6)
    assert again["cost_usd"]["incl_cached"] == pytest.approx(paid, abs=2e-6)
    assert again["cost_usd"]["this_run"] == 0
    assert (
        json.loads((Path(tmp_path) / "summary.json").read_text())["cost_usd"]["incl_cached"]
        == again["cost_usd"]["incl_cached"]
    )
