"""The batch types the samplers produce and the models consume (data flows one way: data -> models).

* `PairBatch`: BPR triples for the pairwise models; `Distinct`: its distinct users and items (what
  `torch.unique(..., return_inverse=True)` gives), which plug-ins map profiles for.
* `UserBatch`: users with their training rows, for the generative models and for scoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Distinct:
    """A PairBatch's distinct users and items, sorted, and where each batch entry sits among them (what
    `torch.unique(..., return_inverse=True)` gives). Plug-ins map the profiles of these rows only.

    users [n_u]; user_inv [B] with batch.users == users[user_inv]; items [n_i], the distinct positives and
    negatives; item_inv [2B] with batch.items == items[item_inv]; pos [n_p], the positions in `items` of the
    distinct positives (ProEx's Ω runs over them, BlueGhostYi/ProRec encoder/models/general_cf/lightgcn_proex.py).
    """

    users: Tensor
    user_inv: Tensor
    items: Tensor
    item_inv: Tensor
    pos: Tensor

    @staticmethod
    def of(batch: PairBatch) -> Distinct:
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
