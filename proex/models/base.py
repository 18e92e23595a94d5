"""The small interface every base recommender implements, so that plug-ins (ProEx, RLMRec, DMRec) are
written once for all six models.

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
    additive on the final user/item representations (paper Eq. 12, official ProEx code ProRec lightgcn_proex.py),
    so side.user is [B, side_dim] and side.item is aligned with `batch.items` ([2B, side_dim]: pos then neg,
    or all items [n_items, side_dim] when scoring).
  * "generative" (Mult-VAE, L-DiffRec, CVGA): a `UserBatch` of users and their dense train rows; the fusion
    point is additive on the posterior parameters, side.user = [mu_side ‖ logvar_side] of shape [B, 2 * d]
    (DMRec fusion, BlueGhostYi/ProRec encoder/models/general_cf/mult_vae_*.py; paper Eq. 6 "aggregation
    alignment"); side.item is unused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from ..data.batches import Distinct, PairBatch, UserBatch  # noqa: F401  (re-exported: the batch types models take)
from ..data.tensors import TrainData


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


@dataclass(frozen=True)
class InnerProducts:
    """A scorer whose scores are inner products of two tables: scores(batch) = users[batch.users] @ items.T,
    [B, n_items]. Pairwise models score this way (side vectors fused into the tables first, so
    (e_u + s_u) @ (e_i + s_i).T as in `PairwiseModel.score`); a served model stores the two tables, not the network.

    users: [n_users, D], items: [n_items, D].
    """

    users: Tensor
    items: Tensor

    def __call__(self, batch) -> Tensor:
        return self.users[batch.users] @ self.items.T


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
    training step applies to every parameter of the model and its plug-in (HKUDS/RLMRec
    encoder/models/base_model.py and loss_utils.py).
    """

    name: ClassVar[str]
    family: ClassVar[str]  # "pairwise" | "generative"
    Config: ClassVar[type]  # its settings; the official values per dataset live in `proex.reference`
    # True when encode/risk read batch.distinct(): the sampler then computes it for the whole epoch at once.
    uses_distinct: ClassVar[bool] = False
    # What differs between the families, owned here so callers need not ask which family a model is:
    scores_need_rows: ClassVar[bool] = True  # scoring reads the users' dense training rows (generative)
    state_covers_all_rows: ClassVar[bool] = False  # encode(None) gives every user's and item's state (pairwise)

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

    def training_batches(self, data: TrainData, batch_size: int, distinct: bool = False) -> Iterable:
        """One epoch of training batches in this family's form (BPR triples or user rows). distinct: a plug-in
        reads each batch's distinct rows, so the sampler should compute them ahead."""
        raise NotImplementedError

    # --- optional hooks ------------------------------------------------------------------------------
    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups; override for per-module learning rates (L-DiffRec)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def on_epoch_end(self, epoch: int) -> None:
        """Called after every training epoch (annealing schedules that count epochs)."""
