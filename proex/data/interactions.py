"""The in-memory dataset every stage of proex consumes: three binary interaction splits plus optional text.

All loaders (RLMRec pickles, CSV/Parquet tables, the synthetic generator) return an `Interactions`.
Its checks follow the RLMRec data format (HKUDS/RLMRec data_handler_general_cf.py): one shape for all splits,
binary values, disjoint splits, every index in range, and every user with at least one training interaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp


class DataError(ValueError):
    """A dataset file or table is malformed; the message names the file, the problem and the fix."""


@dataclass
class Interactions:
    """Train/validation/test interactions of one dataset.

    train, val, test: `scipy.sparse.csr_matrix` [n_users, n_items], float32, values 1.0, pairwise disjoint.
    user_ids, item_ids: original ids of the dense indices (None when the source had none, e.g. RLMRec without mappers).
    user_text, item_text: optional DataFrames indexed by dense id with free-text columns (titles, reviews...),
        the input of the profile stage.
    source: where it came from (a path or "synthetic(...)"), used in error messages and run metadata.
    """

    name: str
    train: sp.csr_matrix
    val: sp.csr_matrix
    test: sp.csr_matrix
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    user_text: pd.DataFrame | None = None
    item_text: pd.DataFrame | None = None
    source: str = ""
    extras: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    def split(self, name: str) -> sp.csr_matrix:
        """The matrix of split `name` in {"train", "val", "test"}."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)

    def validate(self) -> Interactions:
        """Check shapes, binariness, disjointness and non-empty users; raise DataError naming the source."""
        where = self.source or self.name
        shape = self.train.shape
        for name in ("val", "test"):
            if self.split(name).shape != shape:
                raise DataError(
                    f"{where}: split '{name}' has shape {self.split(name).shape} but train has {shape}; "
                    "all three splits must cover the same users x items. Re-export them from one id mapping."
                )
        for name in ("train", "val", "test"):
            m = self.split(name)
            if m.nnz and not np.all(m.data == 1.0):
                raise DataError(f"{where}: split '{name}' holds values other than 1.0; binarise it (x != 0) first.")
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            overlap = self.split(a).multiply(self.split(b)).nnz
            if overlap:
                raise DataError(
                    f"{where}: splits '{a}' and '{b}' share {overlap} interactions; splits must be disjoint. "
                    "Remove the duplicates from the evaluation split."
                )
        empty = np.flatnonzero(np.diff(self.train.indptr) == 0)
        if len(empty):
            raise DataError(
                f"{where}: {len(empty)} user(s) have no training interaction (first: user {int(empty[0])}); "
                "every user needs one. Filter them out (e.g. min_user_interactions) or move one interaction to train."
            )
        return self

    def summary(self) -> dict:
        """Counts and sparsity, as printed by `proex data inspect`."""
        total = self.train.nnz + self.val.nnz + self.test.nnz
        return {
            "name": self.name,
            "source": self.source,
            "users": self.n_users,
            "items": self.n_items,
            "train": int(self.train.nnz),
            "val": int(self.val.nnz),
            "test": int(self.test.nnz),
            "total": int(total),
            "val_users": int((np.diff(self.val.indptr) > 0).sum()),
            "test_users": int((np.diff(self.test.indptr) > 0).sum()),
            "density": total / float(self.n_users * self.n_items),
            "has_user_text": self.user_text is not None,
            "has_item_text": self.item_text is not None,
        }


def to_binary_csr(m: sp.spmatrix) -> sp.csr_matrix:
    """Binarise (x != 0) to float32 CSR with sorted indices and no explicit zeros (the RLMRec data format)."""
    m = sp.csr_matrix(m)
    m.eliminate_zeros()
    m.sum_duplicates()
    out = sp.csr_matrix((np.ones(m.nnz, dtype=np.float32), m.indices.copy(), m.indptr.copy()), shape=m.shape)
    out.sort_indices()
    return out
