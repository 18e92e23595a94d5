"""Ray job: LLM profiles (four-step CoT) by worker actors sharing one named rate-limiter actor.

    ray job submit --working-dir . -- python ray_jobs/profiles.py --dataset amazon --out /shared/prof/amazon \
        --model gpt-4o-mini --domain books --rpm 5000 --tpm 2000000 --workers 8
    python ray_jobs/profiles.py --no-ray --dataset synthetic --out /tmp/prof ...   # same job, in-process asyncio

Thin on purpose: flags -> ProfileJobConfig (proex.cli.llm_profiles), then proex.infra.profile_actors.generate_ray
or proex.profiles.pipeline.generate. The key is read by the workers from $<api_key_env> on their nodes.
Exit codes as `proex profiles generate`: 0 done, 1 some entities failed, 2 bad input, 3 stopped (fatal).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from proex.cli.dataset_flags import dataset_spec
    from proex.cli.llm_profiles import JOB_ERRORS, add_job_args, error_exit, job_config
    from proex.data.registry import load_dataset

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_job_args(p)
    p.add_argument("--no-ray", action="store_true", help="run in this process (asyncio), no Ray")
    p.add_argument("--address", default=None, help="Ray address (default: the job's cluster, else a local one)")
    p.add_argument("--workers", type=int, default=2, help="worker actors")
    p.add_argument("--worker-cpus", type=float, default=0.25, help="CPUs reserved per worker actor (I/O bound)")
    p.add_argument(
        "--limiter-name",
        default="proex-llm-limiter",
        help="named limiter actor; jobs sharing a key should share the name",
    )
    p.add_argument("--detached-limiter", action="store_true", help="keep the limiter alive after the job")
    args = p.parse_args(argv)
    try:
        cfg = job_config(args)
        inter = load_dataset(dataset_spec(args))
        if args.no_ray or cfg.batch:  # the Batch API path runs in this process: the provider does the work
            from proex.profiles.pipeline import generate

            summary = generate(cfg, inter)
        else:
            import ray

            from proex.infra.profile_actors import generate_ray

            ray.init(address=args.address, include_dashboard=False, ignore_reinit_error=True)
            summary = generate_ray(cfg, inter, args.workers, args.worker_cpus, args.limiter_name, args.detached_limiter)
    except JOB_ERRORS as exc:
        return error_exit(exc, "profiles")
    print(json.dumps({k: summary[k] for k in ("status", "sides", "calls", "cost_usd", "wall_s", "backend")}, indent=1))
    if any(s["failed"] for s in summary["sides"].values()):
        from proex.cli.llm_profiles import rerun_message

        print(f"profiles: {rerun_message(cfg, inter)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
