"""The profile tables a plug-in reads and the maps from the text space to a model's fusion point (paper Eq. 6).

* `ProfileTables`: the bank's [K, n, d_text] arrays as one non-persistent device buffer (data, not weights:
  checkpoints record the bank id instead of copying hundreds of MB).
* `DirectMap` (discriminative, "direct alignment"): c̃ = f(c) with f = Linear(d_text -> h) -> LeakyReLU(0.01)
  -> Linear(h -> side_dim), h = (d_text + side_dim) // 2, xavier_uniform weights (official ProEx, BlueGhostYi/ProRec
  lightgcn_proex.py; the RLMRec-Con MLP has the same shape, HKUDS/RLMRec lightgcn_plus.py).
* `AggregateMap` (generative, "aggregation alignment"): for user u and profile k, g = agg_{i ∈ M(u)} c_{i,k}
  + c_{u,k}, then f = Linear(d_text -> h) -> tanh -> Linear(h -> 2d) gives [μ ‖ logσ²] (the DMRec
  meta-network, ProRec mult_vae_*.py, with h = 600). agg is the SUM over the user's training items as in DMRec
  (or the mean).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..models.base import UserBatch
from ..models.generative import row_offsets, sparse_rows_linear
from ..profiles.bank import ProfileBank


class ProfileTables(nn.Module):
    """rows: [K, n_users + n_items, d_text] on the module's device, users first; `user` [K, n_users, d_text] and
    `item` [K, n_items, d_text] are views of it. One table lets a plug-in gather a batch's users and items
    with one index and map them with one MLP call."""

    def __init__(self, bank: ProfileBank):
        super().__init__()
        rows = torch.cat(
            [torch.as_tensor(bank.user[:], dtype=torch.float32), torch.as_tensor(bank.item[:], dtype=torch.float32)],
            dim=1,
        )
        self.register_buffer("rows", rows, persistent=False)
        self.n_users = int(bank.user.shape[1])
        self.bank_id = bank.bank_id

    @property
    def user(self) -> Tensor:
        return self.rows[:, : self.n_users]

    @property
    def item(self) -> Tensor:
        return self.rows[:, self.n_users :]

    @property
    def k(self) -> int:
        return self.rows.shape[0]

    @property
    def dim(self) -> int:
        return self.rows.shape[2]


META_WIDTH = 600  # hidden width of DMRec's meta-network (ProRec mult_vae_*.py)


def mapping_width(d_text: int, out_dim: int) -> int:
    """The hidden width of the official profile MLP: (d_text + out_dim) // 2 (RLMRec *_plus.py, ProRec
    lightgcn_proex.py): 784 for 1536-d profiles into a 32-d space."""
    return (d_text + out_dim) // 2


class DirectMap(nn.Module):
    """[..., d_text] -> [..., out_dim]."""

    def __init__(self, d_text: int, out_dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or mapping_width(d_text, out_dim)
        self.net = nn.Sequential(nn.Linear(d_text, hidden), nn.LeakyReLU(0.01), nn.Linear(hidden, out_dim))
        for layer in (self.net[0], self.net[2]):
            nn.init.xavier_uniform_(layer.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class AggregateMap(nn.Module):
    """Per profile k: [μ_k ‖ logσ²_k] = f(agg(rows · item_k) + user_k[users]). Output [K, B, out_dim]."""

    def __init__(self, d_text: int, out_dim: int, hidden: int | None = None, agg: Literal["sum", "mean"] = "sum"):
        super().__init__()
        self.agg = agg
        hidden = hidden or META_WIDTH
        self.net = nn.Sequential(nn.Linear(d_text, hidden), nn.Tanh(), nn.Linear(hidden, out_dim))

    def inputs(self, tables: ProfileTables, batch: UserBatch) -> Tensor:
        """g: [K, B, d_text], the aggregated item profiles of each user's training items plus the user's own."""
        row_ids, _ = batch.nz
        values = None
        if self.agg == "mean":
            deg = row_offsets(batch).diff().clamp(min=1).float()
            values = 1.0 / deg[row_ids]
        items = torch.stack([sparse_rows_linear(batch, tables.item[k], None, values) for k in range(tables.k)])
        return items + tables.user[:, batch.users]

    def forward(self, tables: ProfileTables, batch: UserBatch) -> Tensor:
        return self.net(self.inputs(tables, batch))
