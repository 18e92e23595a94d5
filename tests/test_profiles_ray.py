"""The Ray path once, on a local Ray (2 CPUs): two worker actors share ONE named limiter actor and one cache
actor, against the local fake server that enforces the limit. Slow: starting Ray takes ~10 s here."""

import json
import os
from pathlib import Path

import pytest
from fake_openai_server import FakeConfig, FakeOpenAI

from proex.data.registry import load_dataset
from proex.profiles.client import ProfileAPIError
from proex.profiles.pipeline import ProfileJobConfig

ray = pytest.importorskip("ray", reason="the Ray path needs ray (the `infra` extra)")
KEY = "sk-proex-ray-KEY-0f1e2d3c4b5a"
WRONG = "sk-proex-ray-WRONG-99887766"
SPEC = "synthetic:n_users=20,n_items=12,mean_interactions=5"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    # set before ray.init: worker processes inherit the driver's environment (the key never passes through Ray)
    old = {k: os.environ.get(k) for k in ("PROEX_TEST_KEY", "PROEX_WRONG_KEY")}
    os.environ.update(PROEX_TEST_KEY=KEY, PROEX_WRONG_KEY=WRONG)
    if ray.is_initialized():  # an earlier in-process grid test (same pytest process) left its local Ray up
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    for k, v in old.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_two_workers_share_one_limiter_actor(local_ray, tmp_path, monkeypatch):
    from proex.infra import profile_actors
    from proex.infra.profile_actors import generate_ray

    seen: list[int] = []  # the progress bar's count after each update

    class Recorded(profile_actors.Progress):
        def update(self, n, result=None, failed=None):
            super().update(n, result, failed)
            seen.append(self.done)

    monkeypatch.setattr(profile_actors, "Progress", Recorded)

    inter = load_dataset(SPEC)
    # no limit headers: only a limiter shared by both workers keeps them under the server's 600/min together
    with FakeOpenAI(FakeConfig(api_key=KEY, rpm=600, burst_s=2.0, send_limit_headers=False)) as srv:
        cfg = ProfileJobConfig(
            base_url=srv.base_url,
            model="fake-llm",
            api_key_env="PROEX_TEST_KEY",
            rpm=600,
            tpm=1e8,
            concurrency=4,
            out_dir=str(tmp_path),
            backoff_s=0.05,
            progress=False,
        )
        summary = generate_ray(cfg, inter, workers=2)
        log = srv.log()
        assert summary["sides"] == {"user": {"profiled": 20, "failed": 0}, "item": {"profiled": 12, "failed": 0}}
        assert summary["calls"]["sent"] == 4 * 32 == sum(e["outcome"] == "completed" for e in log)
        assert sum(e["outcome"] == "429" for e in log) <= 1 and srv.repeated_completed() == {}
        assert summary["limiter"]["reserved"] == summary["calls"]["sent"]  # every call reserved at the one actor
        assert len(summary["workers"]) == 2 and summary["backend"] == "ray (2 workers)"
        # Each worker reports every finished entity on its own (`ProgressActor.report` counts one per call), so the
        # count reaches 32 through 32 reports. How many intermediate values the driver's polling happens to see
        # depends on timing (under load it can see only multiples of the chunk of 4), so only the end is asserted.
        assert seen[-1] == 32 and len(set(seen)) > 1
        span = max(e["t"] for e in log) - min(e["t0"] for e in log)
        assert 4 * 32 / span <= 600 / 60 * 1.1 + 20 / span  # never faster than the limit (+ the opening bucket)
        written = b"".join(p.read_bytes() for p in Path(tmp_path).rglob("*") if p.is_file())
        assert KEY.encode() not in written
        session = Path("/tmp/ray/session_latest/logs")  # the default temp dir of a local ray.init
        for log_file in session.rglob("*") if session.exists() else []:  # Ray's own logs of this session
            if log_file.is_file() and log_file.stat().st_size < 50_000_000:
                assert KEY.encode() not in log_file.read_bytes(), log_file

        bad = ProfileJobConfig(
            **{
                **cfg.__dict__,
                "api_key_env": "PROEX_WRONG_KEY",
                "out_dir": str(tmp_path / "bad"),
                "cache_path": cfg.cache_file,
                "limit": 3,
                "model": "other-llm",
            }
        )
        with pytest.raises(ProfileAPIError, match="rejected the API key") as err:
            generate_ray(bad, inter, workers=2)
        assert err.value.fatal and WRONG not in str(err.value)
        failures = [json.loads(x) for x in (tmp_path / "bad" / "failures.jsonl").read_text().splitlines()]
        assert sorted((f["side"], f["id"]) for f in failures) == [(s, i) for s in ("item", "user") for i in range(3)]
