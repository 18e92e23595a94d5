"""Full-ranking evaluation exactly as the reference protocol (HKUDS/RLMRec encoder/trainer/metrics.py).

* Evaluated users: those with at least one interaction in the split; metrics are plain means over them.
* Each user's TRAINING items are masked; items of the other held-out split stay as ordinary candidates.
* Recall@K = hits in the top K / |G_u| (the full |G_u|, not min(K, |G_u|)).
* NDCG@K = DCG / IDCG with DCG = Σ_{j≤K} rel_j / log2(j + 1) and IDCG over min(K, |G_u|) positions.
Batched on the device with one `topk` per batch of users; no per-user Python loop. The batch size changes
speed and memory only, never the numbers: small batches keep the [B, n_items] score block in the CPU cache.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .data.batches import UserBatch
from .data.tensors import TrainData

Scorer = Callable[[UserBatch], Tensor]  # a batch of users -> their scores over all items [B, n_items]


class RankingEvaluator:
    """Evaluates a scorer on split `split` ("val" or "test") of `data`.

    ks: cut-offs, e.g. (10, 20). batch_size: users per scoring batch; None = 256 on CPU, 4096 on CUDA.
    """

    def __init__(self, data: TrainData, split: str, ks: tuple[int, ...] = (10, 20), batch_size: int | None = None):
        truth = data.splits[split]
        dev = data.device
        self.data, self.ks = data, tuple(sorted(ks))
        self.batch_size = batch_size or (4096 if dev.type == "cuda" else 256)
        self.max_k = min(max(self.ks), data.n_items)
        counts = np.diff(truth.indptr)
        self.users = torch.as_tensor(np.flatnonzero(counts > 0), device=dev)
        rows = np.repeat(np.arange(truth.shape[0], dtype=np.int64), counts)
        self.truth_keys = torch.as_tensor(rows * data.n_items + truth.indices, device=dev)  # sorted (CSR order)
        self.n_truth = torch.as_tensor(counts, dtype=torch.float32, device=dev)
        self.discount = 1.0 / torch.log2(torch.arange(2, self.max_k + 2, device=dev, dtype=torch.float32))
        self.ideal = torch.cumsum(self.discount, 0)  # ideal[m - 1] = IDCG with m relevant items

    def _relevant(self, users: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """[B, k] float 0/1: whether each ranked item is in the user's held-out set (binary search)."""
        keys = users.unsqueeze(1) * self.data.n_items + top
        pos = torch.searchsorted(self.truth_keys, keys).clamp_(max=self.truth_keys.numel() - 1)
        return (self.truth_keys[pos] == keys).float()

    @torch.no_grad()
    def per_user(self, scorer: Scorer, needs_rows: bool = True) -> dict[str, torch.Tensor]:
        """{"recall@K": [n_eval_users], "ndcg@K": [...]} for every K, in the order of `self.users`.

        needs_rows: build the dense training rows for the scorer (generative models); pairwise scorers
        only need the user ids, which saves a [B, n_items] allocation per batch.
        """
        out: dict[str, list[torch.Tensor]] = {f"{m}@{k}": [] for k in self.ks for m in ("recall", "ndcg")}
        for start in range(0, self.users.numel(), self.batch_size):
            users = self.users[start : start + self.batch_size]
            batch = self.data.user_batch(users, dense=needs_rows)
            scores = scorer(batch)
            scores[batch.nz] = float("-inf")  # mask training items, in place
            top = torch.topk(scores, self.max_k, dim=1).indices  # [B, max_k]
            rel = self._relevant(users, top)
            n = self.n_truth[users]
            for k in self.ks:
                hits = rel[:, :k]
                out[f"recall@{k}"].append(hits.sum(1) / n)
                idcg = self.ideal[(n.clamp(max=k) - 1).long()]
                out[f"ndcg@{k}"].append((hits * self.discount[:k]).sum(1) / idcg)
        return {name: torch.cat(vals) for name, vals in out.items()}

    def __call__(self, scorer: Scorer, needs_rows: bool = True) -> dict[str, float]:
        """Mean metrics over the evaluated users."""
        return {name: float(v.mean()) for name, v in self.per_user(scorer, needs_rows).items()}
