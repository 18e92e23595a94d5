"""Shared parts of the pairwise (BPR) graph recommenders: GCCF, LightGCN, SimGCL.

Their fusion point is additive on the final representations (official ProEx code, BlueGhostYi/ProRec
encoder/models/general_cf/lightgcn_proex.py; paper Eq. 12 with element-wise addition): h_u = e_u + side_u,
h_i = e_i + side_i.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..data.sampling import bpr_batches
from ..data.tensors import TrainData
from .base import BaseModel, GraphState, InnerProducts, PairBatch, Side, UserBatch
from .graph import bipartite_adjacency, bpr_loss


class PairwiseModel(BaseModel):
    """A user/item ID embedding table [U + I, d] (xavier_uniform, HKUDS/RLMRec encoder/models/base_model.py and
    loss_utils.py) propagated over the normalised bipartite graph. Subclasses implement `encode`; risk and score are
    shared."""

    family = "pairwise"
    scores_need_rows = False  # scores come from the propagated tables: user ids suffice
    state_covers_all_rows = True

    def __init__(self, cfg, data: TrainData):
        super().__init__(cfg, data)
        self.embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users + self.n_items, cfg.dim)))
        self.adj = bipartite_adjacency(
            data.train_csr, self_loops=bool(getattr(cfg, "self_loops", False)), device=data.device
        )

    @classmethod
    def side_width(cls, cfg) -> int:
        return cfg.dim

    def training_batches(self, data: TrainData, batch_size: int, distinct: bool = False) -> Iterable[PairBatch]:
        return bpr_batches(data, batch_size, distinct=distinct or self.uses_distinct)

    def split(self, h: Tensor) -> GraphState:
        """[(U + I), D] -> GraphState(users [U, D], items [I, D])."""
        return GraphState(h[: self.n_users], h[self.n_users :])

    def risk(self, batch: PairBatch, state: GraphState, side: Side | None = None) -> dict[str, Tensor]:
        """Mean BPR of the batch on (optionally side-fused) representations.

        side.user [B, D] and side.item [2B, D] give a scalar; with a leading environment dimension
        ([E, B, D], [E, 2B, D]) the fusion broadcasts and the BPR is [E], one risk per environment."""
        u = state.users[batch.users]  # [B, D]
        i = state.items[batch.items]  # [2B, D]: positives then negatives
        if side is not None:
            u = u + side.user
            i = i + side.item
        pos, neg = i.split(batch.users.numel(), dim=-2)
        return {"bpr": bpr_loss(u, pos, neg)}

    def score(self, batch: UserBatch, state: GraphState, side: Side | None = None) -> Tensor:
        """Inner products [B, n_items]; side.item (if any) is [n_items, D]."""
        u, items = state.users[batch.users], state.items
        if side is not None:
            u, items = u + side.user, items + side.item
        return u @ items.T

    def score_tables(self, state: GraphState, side: Side | None = None) -> InnerProducts:
        """`score` for every user at once, as its two tables (side.user here is [n_users, D], all users)."""
        users, items = state.users, state.items
        if side is not None:
            users, items = users + side.user, items + side.item
        return InnerProducts(users, items)
