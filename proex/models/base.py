"""The small interface every base recommender implements, so that plug-ins (ProEx, RLMRec, DMRec) are
written once for all six models (shared/DESIGN.md, "The interface that lets one ProEx serve six bases").

A training step is split in two:
  encode(batch)             -> Encoded(state, losses): everything that does not depend on side information
                               (graph propagation, the VAE posterior, SimGCL's contrastive views) plus the
                               losses that never see side vectors.
  risk(batch, state, side)  -> {name: loss}: the model's own training loss, with optional side vectors added
                               at its ONE documented fusion point. Summing the dict gives the model's risk.
  score(batch, state, side) -> [B, n_items] scores for full ranking (train items are masked by the evaluator).

A plug-in calls `encode` once and `risk` once for all its environments: every model takes side tensors with a
leading environment dimension (pairwise [E, B, D] and [E, 2B, D], generative [E, B, 2d]) and returns [E]
risks, so the E environments are one batched call, not a Python loop. The base models never import a plug-in.

Two families differ only in what a batch and a side vector are:
  * "pairwise" (GCCF, LightGCN, SimGCL): a `PairBatch` of (user, pos, neg) triples; the fusion point is
    additive on the final user/item representations (paper Eq. 12, official ProEx code sec. 3.4(2)),
    so side.user is [B, side_dim] and side.item is aligned with `batch.items` ([2B, side_dim]: pos then neg,
    or all items [n_items, side_dim] when scoring).
  * "generative" (Mult-VAE, L-DiffRec, CVGA): a `UserBatch` of users and their dense train rows; the fusion
    point is additive on the posterior parameters, side.user = [mu_side ‖ logvar_side] of shape [B, 2 * d]
    (DMRec fusion, reference-spec sec. 4.1; paper Eq. 6 "aggregation alignment"); side.item is unused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..data.tensors import TrainData


@dataclass
class Distinct:
    """A PairBatch's distinct users and items, sorted, and where each batch entry sits among them (what
    `torch.unique(..., return_inverse=True)` gives). Plug-ins map the profiles of these rows only.

    users [n_u]; user_inv [B] with batch.users == users[user_inv]; items [n_i], the distinct positives and
    negatives; item_inv [2B] with batch.items == items[item_inv]; pos [n_p], the positions in `items` of the
    distinct positives (ProEx's Ω runs over them, reference-spec sec. 3.4 (6)).
    """

    users: Tensor
    user_inv: Tensor
    items: Tensor
    item_inv: Tensor
    pos: Tensor

    @staticmethod
    def of(batch: "PairBatch") -> "Distinct":
        """Computed for one batch. On a GPU each `torch.unique` waits for the device, which is why
        `bpr_batches(distinct=True)` computes the whole epoch's at once (data/sampling.py)."""
        users, user_inv = torch.unique(batch.users, return_inverse=True)
        items, item_inv = torch.unique(batch.items, return_inverse=True)
        return Distinct(users, user_inv, items, item_inv, torch.searchsorted(items, torch.unique(batch.pos)))

    def user_counts(self) -> Tensor:
        """[n_u] float: how often each distinct user occurs in the batch (index_add_, not bincount: no host wait)."""
        ones = torch.ones(self.user_inv.shape, device=self.user_inv.device)
        return torch.zeros(self.users.shape, device=ones.device).index_add_(0, self.user_inv, ones)

    def positives(self) -> tuple[Tensor, Tensor]:
        """(the distinct positive items [n_p], how often each occurs among the batch's positives [n_p] float)."""
        b = self.user_inv.numel()
        ones = torch.ones(b, device=self.item_inv.device)
        counts = torch.zeros(self.items.shape, device=ones.device).index_add_(0, self.item_inv[:b], ones)
        return self.items[self.pos], counts[self.pos]


@dataclass
class PairBatch:
    """BPR triples: users, positive items, negative items, each [B] int64, and optionally their `Distinct`
    rows computed ahead (by the sampler, for the whole epoch at once)."""

    users: Tensor
    pos: Tensor
    neg: Tensor
    precomputed: Distinct | None = field(default=None, repr=False)

    @property
    def items(self) -> Tensor:
        """[2B] the items a side vector must be aligned with: positives then negatives."""
        return torch.cat([self.pos, self.neg])

    def distinct(self) -> Distinct:
        """The batch's distinct users and items: precomputed if the sampler did, else computed now."""
        return self.precomputed if self.precomputed is not None else Distinct.of(self)


@dataclass
class UserBatch:
    """A batch of users and their training rows.

    users: [B] int64. rows: [B, n_items] float32 dense binary rows (None when scoring with a pairwise model,
    which needs only the ids). nz: the same rows as nonzeros (row_ids [nnz] indexing into the batch, sorted,
    and cols [nnz]), so input layers can use sparse products (`generative.sparse_rows_linear`).
    """

    users: Tensor
    rows: Tensor | None
    nz: tuple[Tensor, Tensor] | None = None


@dataclass
class Side:
    """Side vectors to add at a model's fusion point (see module docstring for shapes per family)."""

    user: Tensor | None = None
    item: Tensor | None = None


@dataclass
class Encoded:
    """What `encode` returns: a model-specific state and the side-free losses (may be empty)."""

    state: Any
    losses: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class GraphState:
    """State of the pairwise graph models: final representations of every user and item.

    users: [n_users, D], items: [n_items, D] (D = side_dim; for GCCF D = (L + 1) * d, the concatenation).
    """

    users: Tensor
    items: Tensor


@dataclass
class LatentState:
    """State of the generative models for a batch of users: the collaborative posterior.

    mu, logvar: [B, d] (before any side vector is fused). `extra` carries model-specific tensors.
    """

    mu: Tensor
    logvar: Tensor
    extra: dict[str, Any] = field(default_factory=dict)


class BaseModel(nn.Module):
    """Base class of the six recommenders. Subclasses set `name`, `family`, `Config`, and implement the three
    methods. `side_dim` is the width a side vector must have; `reg_weight` scales the Σ‖θ‖² penalty that the
    training step applies to every parameter of the model and its plug-in (reference-spec sec. 1.8).
    """

    name: ClassVar[str]
    family: ClassVar[str]  # "pairwise" | "generative"
    Config: ClassVar[type]  # its settings; the official values per dataset live in `proex.reference`
    # True when encode/risk read batch.distinct(): the sampler then computes it for the whole epoch at once.
    uses_distinct: ClassVar[bool] = False

    def __init__(self, cfg: Any, data: TrainData):
        super().__init__()
        self.cfg = cfg
        self.n_users, self.n_items = data.n_users, data.n_items
        self.train_csr = data.train_csr  # host scipy CSR [U, I]; for plug-ins that read the whole graph (AlphaRec)

    # --- the interface -------------------------------------------------------------------------------
    @classmethod
    def side_width(cls, cfg: Any) -> int:
        """The width of a side vector at the fusion point for settings `cfg` (known before the model is built)."""
        raise NotImplementedError

    @property
    def side_dim(self) -> int:
        return type(self).side_width(self.cfg)

    @property
    def reg_weight(self) -> float:
        return float(getattr(self.cfg, "reg_weight", 0.0))

    def encode(self, batch: PairBatch | UserBatch | None) -> Encoded:
        raise NotImplementedError

    def risk(self, batch: Any, state: Any, side: Side | None = None) -> dict[str, Tensor]:
        raise NotImplementedError

    def score(self, batch: UserBatch, state: Any, side: Side | None = None) -> Tensor:
        raise NotImplementedError

    # --- optional hooks ------------------------------------------------------------------------------
    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups; override for per-module learning rates (L-DiffRec)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def on_epoch_end(self, epoch: int) -> None:
        """Called after every training epoch (annealing schedules that count epochs)."""
