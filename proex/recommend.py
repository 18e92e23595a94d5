"""Top-K recommendation lists from a trained checkpoint: what a practitioner does with a finished run.

`recommend(path, users, k)` rebuilds the trained system from a self-describing checkpoint (proex.checkpoint),
scores every item for the given users exactly as the evaluator does (same scorer, training items masked),
and returns a table: user, rank, item, score (plus the original ids when the dataset has them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from . import checkpoint
from .data.tensors import TrainData
from .metrics import Scorer


@torch.no_grad()
def top_k(
    system, data: TrainData, users: Sequence[int], k: int = 20, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """items [len(users), k] (dense item indices, best first) and their scores; each user's training items
    are excluded. k is capped at the number of items a user can still be recommended."""
    system.eval()
    return rank(system.scorer(), data, users, k, system.model.scores_need_rows, batch_size)


@torch.no_grad()
def rank(
    scorer: Scorer, data: TrainData, users: Sequence[int], k: int = 20, dense: bool = True, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` for any scorer (a served model's stored tables too): score, mask the training items, top k.
    dense: the scorer reads the users' dense training rows (generative models)."""
    k = min(k, data.n_items)
    items, scores = [], []
    for start in range(0, len(users), batch_size):
        u = torch.as_tensor(np.asarray(users[start : start + batch_size], dtype=np.int64), device=data.device)
        batch = data.user_batch(u, dense=dense)
        s = scorer(batch)
        s[batch.nz] = float("-inf")  # never recommend what the user already interacted with in training
        top = torch.topk(s, k, dim=1)
        items.append(top.indices.cpu().numpy())
        scores.append(top.values.cpu().numpy())
    return np.concatenate(items), np.concatenate(scores)


def recommend(
    path: str,
    users: Sequence[int],
    k: int = 20,
    dataset: str | None = None,
    device: str = "cpu",
    profiles: str | None = None,
) -> pd.DataFrame:
    """Top-k lists for `users` (dense user indices) from the checkpoint at `path`.

    dataset: the dataset to load (default: the one recorded in the checkpoint). Returns columns user, rank
    (1 = best), item, score, and user_id / item_id when the dataset carries original ids. Rows with score
    -inf (a user with fewer than k unseen items) are dropped."""
    from .data.registry import load_dataset

    payload = checkpoint.read(path)
    inter = load_dataset(dataset or payload["config"]["dataset"])
    bad = [u for u in users if not 0 <= int(u) < inter.n_users]
    if bad:
        raise ValueError(f"users {bad[:5]} are outside 0..{inter.n_users - 1} (dense user indices of {inter.name})")
    system, data, _ = checkpoint.load(path, inter, device, profiles)
    items, scores = top_k(system, data, [int(u) for u in users], k)
    return table(users, items, scores, inter.user_ids, inter.item_ids)


def table(
    users: Sequence[int],
    items: np.ndarray,
    scores: np.ndarray,
    user_ids: np.ndarray | None = None,
    item_ids: np.ndarray | None = None,
) -> pd.DataFrame:
    """`recommend`'s table from `top_k`'s arrays (items, scores [len(users), k]): user, [user_id,] rank, item,
    score[, item_id]; rows with score -inf (a user with fewer than k unseen items) dropped."""
    n, kk = items.shape
    out = pd.DataFrame(
        {
            "user": np.repeat(np.asarray(users, dtype=np.int64), kk),
            "rank": np.tile(np.arange(1, kk + 1), n),
            "item": items.reshape(-1),
            "score": scores.reshape(-1),
        }
    )
    out = out[np.isfinite(out["score"])].reset_index(drop=True)
    if user_ids is not None:
        out.insert(1, "user_id", user_ids[out["user"].to_numpy()])
    if item_ids is not None:
        out["item_id"] = item_ids[out["item"].to_numpy()]
    return out
