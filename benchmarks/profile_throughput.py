"""Share of the request limit R that the LLM profile job sustains against a strict sliding-window server.

    python benchmarks/profile_throughput.py                        # R = 240/min, 110 entities, all scenarios
    python benchmarks/profile_throughput.py --rpm 240 --entities 110 --scenarios inproc ray --out run.json

The local OpenAI-compatible test server (tests/fake_openai_server.py) admits at most R requests in any 60 s
(a strict sliding window, the least forgiving reading of "R per minute"), answers 429 with Retry-After
otherwise, and sends `x-ratelimit-*` headers like OpenAI. Each scenario profiles the same `--entities` users
(4 chained calls each) from an empty cache and reads the server's own log:

    pct_of_R          admitted requests per minute between the first and the last admitted one, / R
    first_minute_pct  admitted requests in the first 60 s / R
    max_gap_after_429 the longest time from a 429 to the next admitted request (s)
    max_gap           the longest gap between consecutive admitted requests in the whole run (s)
    429_per_min       429 answers per minute of run

Scenarios: `inproc` (asyncio, default headroom 0.97), `ray` (3 worker actors sharing the limiter actor),
`inproc_at_R` and `ray_at_R` (headroom 1.0: the client aims at exactly R, which a strict window punishes with
429s; they show how the job recovers from them). The ratios are against R, the server's own limit, in the
same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
KEY, ENV = "sk-bench-throughput-0123456789", "PROEX_BENCH_KEY"


def figures(log: list[dict], rpm: float) -> dict:
    """The printed figures from the server's log (arrival times t0)."""
    ok = sorted(e["t0"] for e in log if e["outcome"] != "429")
    rejected = sorted(e["t0"] for e in log if e["outcome"] == "429")
    span = ok[-1] - ok[0]
    after = [min([t for t in ok if t > r] or [r]) - r for r in rejected]
    run_s = max(ok[-1], rejected[-1] if rejected else 0) - ok[0]
    return {
        "admitted": len(ok),
        "429": len(rejected),
        "span_s": round(span, 1),
        "pct_of_R": round(100 * (len(ok) - 1) / span * 60 / rpm, 1),
        "first_minute_pct": round(100 * sum(t < ok[0] + 60 for t in ok) / rpm, 1),
        "max_gap_after_429_s": round(max(after), 2) if after else None,
        "max_gap_s": round(max(b - a for a, b in zip(ok, ok[1:])), 2),
        "429_per_min": round(len(rejected) / (run_s / 60), 2),
    }


def run(scenario: str, args, tmp: str) -> dict:
    from fake_openai_server import FakeConfig, FakeOpenAI

    from proex.data.registry import load_dataset
    from proex.profiles.pipeline import ProfileJobConfig, generate

    inter = load_dataset(f"synthetic:n_users={args.entities},n_items=40,mean_interactions=6")
    server = FakeConfig(api_key=KEY, rpm=args.rpm, window_s=60.0, latency_s=args.latency_s, lifetime_s=3600)
    with FakeOpenAI(server) as srv:
        cfg = ProfileJobConfig(
            base_url=srv.base_url,
            model="fake-llm",
            api_key_env=ENV,
            rpm=args.rpm,
            tpm=0,
            sides=("user",),
            concurrency=args.concurrency,
            progress=False,
            headroom=1.0 if scenario.endswith("_at_R") else 0.97,
            out_dir=os.path.join(tmp, scenario),
        )
        t0 = time.time()
        if scenario.startswith("ray"):
            import ray

            from proex.infra.profile_actors import generate_ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            summary = generate_ray(cfg, inter, workers=args.workers)
        else:
            summary = generate(cfg, inter)
        wall = time.time() - t0
        out = {
            "scenario": scenario,
            "R": args.rpm,
            "entities": args.entities,
            "wall_s": round(wall, 1),
            "profiled": summary["sides"]["user"]["profiled"],
            **figures(srv.log(), args.rpm),
            "limiter": summary["limiter"],
        }
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rpm", type=float, default=240)
    p.add_argument("--entities", type=int, default=110)
    p.add_argument("--latency-s", type=float, default=1.0, help="the server's answer time")
    p.add_argument("--concurrency", type=int, default=16, help="entities in flight (per worker on Ray)")
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--scenarios", nargs="+", default=["inproc", "ray", "inproc_at_R", "ray_at_R"])
    p.add_argument("--out", default=None, help="also write the figures (JSON list) here")
    args = p.parse_args()
    os.environ[ENV] = KEY  # before ray.init: the workers inherit it
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(s, args, tmp) for s in args.scenarios]
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
