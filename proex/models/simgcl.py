"""SimGCL (Yu et al., SIGIR'22) on RLMRec's LightGCN (HKUDS/RLMRec encoder/models/general_cf/simgcl.py).

Clean view: LightGCN without edge dropout, sum of layers 0..L. Two perturbed views add, at every layer,
Δ = eps · normalize(U(0,1)) ⊙ sign(E^l). The contrastive loss is RLMRec's InfoNCE of view 1 against view 2
for the batch users (candidates: ALL users of view 2) and the batch positive items (candidates: ALL items),
summed over batch rows (duplicates kept) and divided by B, times cl_weight. BPR and scoring use the clean view.

Speed: rows of duplicate users/items are identical, so the sum is computed over distinct ids weighted by their
counts (the same value, fewer rows in the [rows x all-users] logits); the distinct ids come from the sampler's
per-epoch `batch.distinct()`, so no `torch.unique` makes the host wait for a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Encoded, PairBatch
from .graph import SparseAdj
from .lightgcn import propagate
from .pairwise import PairwiseModel


@dataclass
class SimGCLConfig:
    dim: int = 32  # embedding size d
    layers: int = 3  # L (simgcl.yml: 3 everywhere)
    reg_weight: float = 1e-5  # λ on Σ‖θ‖²
    cl_weight: float = 0.1  # weight of the view-contrast InfoNCE
    temperature: float = 0.2  # InfoNCE τ (amazon/yelp 0.2, steam 0.5)
    eps: float = 0.9  # noise magnitude (amazon/yelp 0.9, steam 0.2)


def perturbed_view(adj: SparseAdj, ego: Tensor, layers: int, eps: float) -> Tensor:
    """Sum over layers 0..L of the noised propagation (ego included, as in RLMRec)."""
    h, out = ego, ego
    for _ in range(layers):
        h = adj.matmul(h)
        h = h + torch.sign(h) * F.normalize(torch.rand_like(h), dim=-1) * eps
        out = out + h
    return out


def weighted_infonce(uniq: Tensor, counts: Tensor, view1: Tensor, view2: Tensor, temperature: float) -> Tensor:
    """Σ over batch rows of RLMRec InfoNCE(view1[id] -> view2[id]; candidates view2), given the rows as distinct
    ids `uniq` [n] and their counts [n]."""
    a = F.normalize(view1[uniq], dim=-1, eps=1e-8)
    c = F.normalize(view2, dim=-1, eps=1e-8)
    logits = a @ c.T / temperature  # [n_unique, N]
    pos = logits.gather(1, uniq.unsqueeze(1)).squeeze(1)
    return ((torch.logsumexp(logits, dim=-1) - pos) * counts).sum()


class SimGCL(PairwiseModel):
    name = "simgcl"
    Config = SimGCLConfig
    uses_distinct = True

    def encode(self, batch: PairBatch | None = None, ego: Tensor | None = None) -> Encoded:
        ego = self.embedding if ego is None else ego
        clean = self.split(propagate(self.adj, ego, self.cfg.layers, include_ego=True))
        losses = {}
        if self.training and batch is not None and self.cfg.cl_weight > 0:
            v1 = self.split(perturbed_view(self.adj, ego, self.cfg.layers, self.cfg.eps))
            v2 = self.split(perturbed_view(self.adj, ego, self.cfg.layers, self.cfg.eps))
            t = self.cfg.temperature
            rows = batch.distinct()
            cl = weighted_infonce(rows.users, rows.user_counts(), v1.users, v2.users, t) + weighted_infonce(
                *rows.positives(), v1.items, v2.items, t
            )
            losses["cl"] = self.cfg.cl_weight * cl / batch.users.numel()
        return Encoded(clean, losses)
