"""Mini-batch samplers, vectorised on the training device (no per-edge or per-user Python loop).

* `bpr_batches`: every training edge exactly once per epoch in a random order, each with one negative item
  drawn uniformly from all items and redrawn while it is one of the user's TRAINING items (validation and
  test items are allowed, as in the reference: HKUDS/RLMRec encoder/data_utils/datasets_general_cf.py).
  Rejection runs in whole-tensor rounds over the still-rejected entries; the expected number of rounds is tiny
  (density << 1).
* `user_batches`: all users shuffled and cut into chunks, with their dense training rows (ProRec generative trainer).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .batches import PairBatch, UserBatch
from .distinct_epoch import epoch_distinct  # the sync-free Distinct.of of a whole epoch, beside its reference
from .tensors import TrainData


def sample_negatives(data: TrainData, users: torch.Tensor, max_rounds: int = 100) -> torch.Tensor:
    """[N] uniform negatives for `users` [N], none of them a training item of its user."""
    neg = torch.randint(data.n_items, users.shape, device=users.device)
    bad = data.is_train(users, neg)
    rounds = 0
    while bool(bad.any()):
        rounds += 1
        if rounds > max_rounds:
            full = (data.user_degree[users[bad]] >= data.n_items).nonzero()
            raise RuntimeError(
                f"negative sampling did not finish after {max_rounds} rounds; {len(full)} user(s) "
                "have interacted with every item and have no negative. Remove such users."
            )
        idx = bad.nonzero().squeeze(1)
        neg[idx] = torch.randint(data.n_items, idx.shape, device=users.device)
        bad[idx] = data.is_train(users[idx], neg[idx])
    return neg


def bpr_batches(data: TrainData, batch_size: int, distinct: bool = False) -> Iterator[PairBatch]:
    """One epoch of BPR triples: ceil(E / batch_size) batches, negatives drawn once at the epoch start.
    `distinct=True` attaches each batch's `Distinct` rows, computed for the whole epoch at once."""
    order = torch.randperm(data.n_edges, device=data.device)
    users, pos = data.edge_users[order], data.edge_items[order]
    neg = sample_negatives(data, users)
    index = epoch_distinct(users, pos, neg, batch_size, data.n_users, data.n_items) if distinct else None
    for b, start in enumerate(range(0, data.n_edges, batch_size)):
        sl = slice(start, start + batch_size)
        yield PairBatch(users[sl], pos[sl], neg[sl], index[b] if index else None)


def user_batches(data: TrainData, batch_size: int, shuffle: bool = True) -> Iterator[UserBatch]:
    """One epoch of user batches with dense training rows [B, n_items]."""
    users = (
        torch.randperm(data.n_users, device=data.device) if shuffle else torch.arange(data.n_users, device=data.device)
    )
    for start in range(0, data.n_users, batch_size):
        chunk = users[start : start + batch_size]
        yield data.user_batch(chunk)
