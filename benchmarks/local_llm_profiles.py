"""The profile stage against a real local model: llama.cpp's server (tests/llama_server.py) on SmolLM2-135M.

    python benchmarks/local_llm_profiles.py --per-side 6 --out docs/results/local_llm_profiles.json

Profiles `--per-side` users and items of a synthetic text dataset from an empty cache (one request at a time:
the server has one slot) and prints:

    entities_per_min     entities finished (profiled or listed as failed) per minute of wall time
    completion_tok_s     completion tokens per second of wall time (usage reported by the server)
    raw_completion_tok_s the same server answering the first entity's F1 prompt directly (one request, no job
                         around it), measured in the same process: the reference the stage is compared with
    share_repaired       first answers (step attempts) that were invalid and needed a repair call
    failed               entities whose answers stayed invalid after the repairs (listed in failures.jsonl)
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

DATASET = "synthetic:n_users=40,n_items=30,mean_interactions=6"


def raw_rate(srv, cfg, inter) -> float:
    """Completion tokens/s of one direct request (the first user's F1 prompt, JSON mode with its schema)."""
    import openai

    from proex.profiles.prompts import build_messages, entity_inputs, json_schema

    ent = entity_inputs(inter, "user", cfg)[0]
    messages = build_messages("F1", ent, {}, cfg.domain, cfg.k, cfg.max_input_chars)
    client = openai.OpenAI(api_key="EMPTY", base_url=srv.base_url, timeout=600)
    t0 = time.perf_counter()
    r = client.chat.completions.create(model=srv.model, messages=messages, max_tokens=cfg.max_tokens,
                                       temperature=cfg.temperature, seed=cfg.seed,
                                       response_format={"type": "json_object", "schema": json_schema("F1")})
    return r.usage.completion_tokens / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-side", type=int, default=6)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    from llama_server import LlamaServer

    from proex.data.registry import load_dataset
    from proex.profiles.pipeline import ProfileJobConfig, generate

    inter = load_dataset(DATASET)
    with tempfile.TemporaryDirectory() as tmp, LlamaServer(threads=args.threads) as srv:
        cfg = ProfileJobConfig(base_url=srv.base_url, model=srv.model, api_key_env="", k=args.k, limit=args.per_side,
                               concurrency=1, rpm=0, tpm=0, max_tokens=args.max_tokens, max_input_chars=900,
                               timeout_s=600, temperature=0.2, seed=7, repairs=1, out_dir=tmp, progress=False)
        raw = raw_rate(srv, cfg, inter)
        t0 = time.perf_counter()
        summary = generate(cfg, inter)
        wall = time.perf_counter() - t0
        with sqlite3.connect(os.path.join(tmp, "cache.sqlite")) as db:
            names = [s for (s,) in db.execute("SELECT step FROM calls")]
            formats = sorted(f for (f,) in db.execute("SELECT DISTINCT response_format FROM calls"))
    first = [n for n in names if ".repair" not in n]
    repaired = [n for n in names if n.endswith(".repair1")]
    calls, sides = summary["calls"], summary["sides"]
    done = sum(s["profiled"] + s["failed"] for s in sides.values())
    fig = {"entities": done, "profiled": sum(s["profiled"] for s in sides.values()),
           "failed": sum(s["failed"] for s in sides.values()), "wall_s": round(wall, 1),
           "entities_per_min": round(done / wall * 60, 2), "calls": calls["sent"], "repairs": calls["repairs"],
           "completion_tok_s": round(calls["completion_tokens"] / wall, 1),
           "prompt_tok_s": round(calls["prompt_tokens"] / wall, 1), "raw_completion_tok_s": round(raw, 1),
           "stage_vs_raw": round(calls["completion_tokens"] / wall / raw, 2),
           "share_repaired": round(len(repaired) / max(1, len(first)), 3),
           "mean_completion_tokens": round(calls["completion_tokens"] / max(1, calls["sent"]), 1),
           "response_format_sent": formats,
           "settings": {"per_side": args.per_side, "k": args.k, "max_tokens": args.max_tokens,
                        "threads": args.threads, "concurrency": 1, "dataset": DATASET}}
    print(json.dumps(fig, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(fig, f, indent=1)


if __name__ == "__main__":
    main()
