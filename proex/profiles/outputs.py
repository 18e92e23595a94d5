"""What a profile job leaves behind: `<side>/profiles.jsonl`, `failures.jsonl`, `summary.json`, the cost in USD,
and the progress line on stderr. Shared by the online job (in process and on Ray) and the Batch API path."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from .client import PRICES, cost_usd
from .prompts import PROMPT_VERSION

BATCH_DISCOUNT = 0.5  # the Batch API's price relative to the same calls online (OpenAI: half)


def load_prices(cfg) -> dict:
    """PRICES, overridden by the JSON file `cfg.prices_path` ({model: [USD/1M input, USD/1M output]})."""
    prices = dict(PRICES)
    if cfg.prices_path:
        prices.update({k: tuple(v) for k, v in json.loads(Path(cfg.prices_path).read_text()).items()})
    return prices


def job_cost(cfg, prompt_tokens: float, completion_tokens: float, batch: bool | None = None) -> float | None:
    """USD for those tokens at the model's price, halved at the Batch API's rate (`batch`, default: the job's
    path); None without a price."""
    usd = cost_usd(load_prices(cfg), cfg.model, prompt_tokens, completion_tokens)
    batch = cfg.batch if batch is None else batch
    return None if usd is None else round(usd * (BATCH_DISCOUNT if batch else 1.0), 6)


def cost_incl_cached(cfg, t: dict) -> float | None:
    """USD of every answer the profiles rest on: this run's at the job's rate, cached ones at the rate they were
    bought at (online answers at the online price, Batch API answers at the batch price)."""
    online = (
        t["cached_prompt_tokens"] - t.get("cached_batch_prompt_tokens", 0),
        t["cached_completion_tokens"] - t.get("cached_batch_completion_tokens", 0),
    )
    parts = [
        job_cost(cfg, t["prompt_tokens"], t["completion_tokens"]),
        job_cost(cfg, *online, batch=False),
        job_cost(cfg, t.get("cached_batch_prompt_tokens", 0), t.get("cached_batch_completion_tokens", 0), batch=True),
    ]
    return None if parts[0] is None else round(sum(parts), 6)


def _public_url(url: str) -> str:
    """base_url without any user:password@ part."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}" if rest else url


def write_outputs(cfg, inter, out: dict, wall_s: float, backend: str) -> dict:
    """profiles.jsonl per side, failures.jsonl and summary.json in cfg.out_dir (each written atomically)."""
    root = Path(cfg.out_dir)
    per_side = {}
    for side in cfg.sides:
        recs = sorted((r for r in out["records"] if r["side"] == side), key=lambda r: r["id"])
        write_lines(root / side / "profiles.jsonl", recs)
        per_side[side] = {"profiled": len(recs), "failed": sum(f["side"] == side for f in out["failures"])}
    write_lines(root / "failures.jsonl", sorted(out["failures"], key=lambda f: (f["side"], f["id"])))
    t = out["totals"]
    fatal = out.get("fatal")
    summary = {
        "status": "stopped" if fatal else "done",
        "stopped_because": str(fatal) if fatal else None,
        "profiler": "llm-cot",
        "llm": cfg.model,
        "endpoint": _public_url(cfg.base_url),
        "prompt_version": PROMPT_VERSION,
        "k": cfg.k,
        "domain": cfg.domain,
        "dataset": inter.name,
        "n_users": inter.n_users,
        "n_items": inter.n_items,
        "sides": per_side,
        "backend": backend,
        "calls": t,
        "wall_s": round(wall_s, 2),
        "cost_usd": {
            "this_run": job_cost(cfg, t["prompt_tokens"], t["completion_tokens"]),
            "incl_cached": cost_incl_cached(cfg, t),
            "price": "batch (half the online price)" if cfg.batch else "online",
        },
        "limiter": out.get("limiter"),
        "workers": out.get("workers"),
        "batches": out.get("batches"),
        "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "base_url"},
    }
    write_lines(root / "summary.json", [summary], indent=1)
    return summary


def write_lines(path: Path, rows: list[dict], indent: int | None = None) -> None:
    """JSON lines, written to a temporary file and renamed (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, indent=indent, default=str) + "\n")
    os.replace(tmp, path)


class Progress:
    """Progress on stderr with rate and ETA: tqdm when installed, else a plain line every 2 s."""

    def __init__(self, total: int, enabled: bool, unit: str = "entity"):
        self.total, self.done, self.failed, self.t0, self.last = total, 0, 0, time.time(), 0.0
        self.enabled, self.bar = enabled, None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit=unit, desc="profiles", dynamic_ncols=True, file=sys.stderr)
            except ImportError:
                pass

    def update(self, n: int, result: dict | None = None, failed: int | None = None) -> None:
        """n more done; `result` (one entity's) or `failed` (a count) says how many of them failed."""
        self.done += n
        self.failed += failed if failed is not None else int(bool(result and "kind" in result))
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(failed=self.failed, refresh=False)
        elif self.enabled and n and (time.time() - self.last > 2 or self.done == self.total):
            self.last, rate = time.time(), self.done / max(1e-9, time.time() - self.t0)
            eta = (self.total - self.done) / rate if rate else float("inf")
            print(
                f"profiles {self.done}/{self.total} ({self.failed} failed) {rate:.2f}/s ETA {eta:.0f}s",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
