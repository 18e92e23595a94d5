"""KAR (Xi et al., RecSys'24) as a single-profile sibling plug-in for the pairwise bases.

KAR encodes the LLM's knowledge (the user's preferences, the item's facts) with a text encoder and maps it
with a hybrid-expert adaptor (HEA) into augmented vectors for the backbone. KAR's code targets CTR models
(`YunjiaXi/Open-World-Knowledge-Augmented-Recommendation`, `RS/layers.py` HEA); for the LightGCN top-K rows of
the paper's Table 3 there is no official code, so this follows the reference spec's guidance [inferred]:
HEA(user profile) and HEA(item profile) give side_dim vectors that are ADDED to the collaborative
representations at the model's fusion point (the point ProEx uses, paper Eq. 12), trained with the model's BPR.
Inference scores with the same fused representations.

HEA: n_shared experts used by both towers plus n_specific experts per tower (KAR: 2 and 5); every expert is an
MLP d_text -> expert_hidden (128) -> ReLU -> side_dim; each tower mixes its shared and specific experts with a
softmax gate computed from the same input. Profile `profile` of the bank (0 = the original) feeds both towers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..models.base import PairBatch, Side
from ..profiles.bank import ProfileBank
from .base import Scorer
from .rlmrec import _PairwiseOnly


@dataclass
class KARConfig:
    profile: int = 0  # which profile of the bank (0 = original profile)
    n_shared: int = 2  # experts shared by the user and item towers (KAR)
    n_specific: int = 5  # experts of each tower (KAR)
    expert_hidden: int = 128  # expert MLP hidden width (KAR expert arch 128 -> 32)

    def validate(self) -> None:
        if self.n_shared < 0 or self.n_specific < 0 or self.n_shared + self.n_specific < 1:
            raise ValueError(
                f"n_shared, n_specific: need at least one expert per tower, got n_shared="
                f"{self.n_shared}, n_specific={self.n_specific}"
            )


class HybridExperts(nn.Module):
    """Two gated towers over a common pool of experts, all experts evaluated as one batched product.

    Experts 0..n_shared-1 are shared; then n_specific for the user tower and n_specific for the item tower.
    tower(x [n, d_text], which) -> [n, out_dim].
    """

    def __init__(self, d_text: int, out_dim: int, n_shared: int, n_specific: int, hidden: int):
        super().__init__()
        n = n_shared + 2 * n_specific
        self.w1 = nn.Parameter(torch.empty(n, d_text, hidden))
        self.b1 = nn.Parameter(torch.zeros(n, 1, hidden))
        self.w2 = nn.Parameter(torch.empty(n, hidden, out_dim))
        self.b2 = nn.Parameter(torch.zeros(n, 1, out_dim))
        for w in (self.w1, self.w2):
            for e in range(n):
                nn.init.xavier_uniform_(w.data[e])
        per_tower = n_shared + n_specific
        self.gates = nn.ModuleDict({t: nn.Linear(d_text, per_tower) for t in ("user", "item")})
        shared = list(range(n_shared))
        self.experts = {
            "user": shared + list(range(n_shared, n_shared + n_specific)),
            "item": shared + list(range(n_shared + n_specific, n)),
        }

    def gate(self, x: Tensor, which: str) -> Tensor:
        """[n, n_shared + n_specific] softmax weights of the tower's experts."""
        return torch.softmax(self.gates[which](x), dim=-1)

    def forward(self, x: Tensor, which: str) -> Tensor:
        idx = self.experts[which]
        h = torch.relu(torch.matmul(x, self.w1[idx]) + self.b1[idx])  # [e, n, hidden]
        out = torch.matmul(h, self.w2[idx]) + self.b2[idx]  # [e, n, out_dim]
        return torch.einsum("ne,end->nd", self.gate(x, which), out)


class KAR(_PairwiseOnly):
    """KAR: hybrid-expert adaptor of one profile, fused additively; see the module doc."""

    name = "kar"
    uses_distinct = True
    Config = KARConfig

    def __init__(self, model, cfg: KARConfig, bank: ProfileBank):
        super().__init__(model, cfg, bank)
        self.hea = HybridExperts(self.tables.dim, model.side_dim, cfg.n_shared, cfg.n_specific, cfg.expert_hidden)

    def loss_terms(self, batch: PairBatch) -> dict[str, Tensor]:
        enc = self.model.encode(batch)
        rows = batch.distinct()  # map each entity of the batch once
        side = Side(
            user=self.hea(self.tables.user[0, rows.users], "user")[rows.user_inv],
            item=self.hea(self.tables.item[0, rows.items], "item")[rows.item_inv],
        )
        return {**enc.losses, **self.model.risk(batch, enc.state, side)}

    @torch.no_grad()
    def _all(self, table: Tensor, which: str, chunk: int = 8192) -> Tensor:
        return torch.cat([self.hea(table[s : s + chunk], which) for s in range(0, table.shape[0], chunk)])

    def scorer(self) -> Scorer:
        model = self.model
        state = model.encode(None).state
        su, si = self._all(self.tables.user[0], "user"), self._all(self.tables.item[0], "item")
        return model.score_tables(state, Side(user=su, item=si))
