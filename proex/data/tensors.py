"""`TrainData`: the device-side view of an `Interactions` that models, samplers and evaluators share.

Everything here is a tensor on one device, built once per run, so the hot paths (negative sampling,
dense user rows, ranking) never leave the device or loop over users in Python.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .batches import UserBatch
from .interactions import Interactions


def csr_to_torch(m: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    """scipy CSR [n, m] -> torch sparse CSR on `device` (float32 values, int64 indices)."""
    m = sp.csr_matrix(m, dtype=np.float32)
    return torch.sparse_csr_tensor(
        torch.as_tensor(m.indptr, dtype=torch.int64),
        torch.as_tensor(m.indices, dtype=torch.int64),
        torch.as_tensor(m.data, dtype=torch.float32),
        size=m.shape,
    ).to(device)


class TrainData:
    """Training interactions on `device`, plus what evaluation needs.

    Attributes (E = number of training interactions):
      n_users, n_items: ints.
      edge_users, edge_items: [E] int64, the training edges sorted by (user, item).
      edge_keys: [E] int64, user * n_items + item, sorted: membership tests by `searchsorted`.
      indptr, indices: the training CSR arrays ([n_users + 1], [E]) for vectorised row gathers.
      train_csr: scipy CSR of the training matrix (host), for models that build graphs from it.
      splits: {"val": scipy CSR, "test": scipy CSR} held-out interactions (host).
    """

    def __init__(self, data: Interactions, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.name = data.name
        self.n_users, self.n_items = data.n_users, data.n_items
        train = sp.csr_matrix(data.train)
        train.sort_indices()
        self.train_csr = train
        self.splits = {"val": sp.csr_matrix(data.val), "test": sp.csr_matrix(data.test)}
        self.indptr = torch.as_tensor(train.indptr, dtype=torch.int64, device=self.device)
        self.indices = torch.as_tensor(train.indices, dtype=torch.int64, device=self.device)
        self.edge_users = torch.repeat_interleave(
            torch.arange(self.n_users, device=self.device), self.indptr[1:] - self.indptr[:-1]
        )
        self.edge_items = self.indices
        self.edge_keys = self.edge_users * self.n_items + self.edge_items  # sorted because CSR rows are sorted
        self.user_degree = (self.indptr[1:] - self.indptr[:-1]).float()
        self.item_degree = torch.bincount(self.indices, minlength=self.n_items).float()

    @property
    def n_edges(self) -> int:
        return int(self.edge_users.numel())

    def is_train(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """[N] bool: whether each (user, item) pair is a training interaction. Vectorised binary search."""
        keys = users * self.n_items + items
        pos = torch.searchsorted(self.edge_keys, keys).clamp_(max=self.edge_keys.numel() - 1)
        return self.edge_keys[pos] == keys

    def gather(
        self, users: torch.Tensor, csr: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Nonzeros of the rows `users` [B] of the training CSR (or of `csr` = (indptr, indices)).

        Returns (row_ids, cols), each [nnz of those rows]: row_ids index into `users` (0..B-1).
        """
        indptr, indices = csr if csr is not None else (self.indptr, self.indices)
        starts = indptr[users]
        lengths = indptr[users + 1] - starts
        row_ids = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), lengths)
        first = torch.repeat_interleave(
            starts - (torch.cumsum(lengths, 0) - lengths), lengths, output_size=row_ids.numel()
        )  # sized: no second wait on a GPU
        cols = indices[first + torch.arange(row_ids.numel(), device=users.device)]
        return row_ids, cols

    def user_batch(self, users: torch.Tensor, dense: bool = True) -> UserBatch:
        """A `UserBatch` for `users` [B]: dense rows (if `dense`) and the nonzeros of the training rows."""
        nz = self.gather(users)
        rows = None
        if dense:
            rows = torch.zeros(users.numel(), self.n_items, device=users.device)
            rows[nz] = 1.0
        return UserBatch(users, rows, nz)

    def rows(self, users: torch.Tensor, csr: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Dense binary rows [B, n_items] (float32) of the training matrix (or of `csr`)."""
        row_ids, cols = self.gather(users, csr)
        out = torch.zeros(users.numel(), self.n_items, device=users.device)
        out[row_ids, cols] = 1.0
        return out
