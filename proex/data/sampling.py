"""Mini-batch samplers, vectorised on the training device (no per-edge or per-user Python loop).

* `bpr_batches`: every training edge exactly once per epoch in a random order, each with one negative item
  drawn uniformly from all items and redrawn while it is one of the user's TRAINING items (validation and
  test items are allowed, as in the reference: reference-spec sec. 1.2). Rejection runs in whole-tensor
  rounds over the still-rejected entries; the expected number of rounds is tiny (density << 1).
* `user_batches`: all users shuffled and cut into chunks, with their dense training rows (sec. 1.3).
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..models.base import Distinct, PairBatch, UserBatch
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


def epoch_distinct(users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, batch_size: int,
                   n_users: int, n_items: int) -> list[Distinct]:
    """`Distinct.of` every batch of an epoch (users, pos, neg [N], cut into batches of `batch_size`) at once.

    Why: `torch.unique` makes the host wait for the GPU, and a plug-in called it three times per batch, so the
    host could never run ahead of the device. Here three sorts of batch-tagged keys (batch · n + id) cover the
    epoch, the host waits a few times per epoch instead of three times per batch, and every batch's tensors
    are views."""
    n = users.numel()
    dev = users.device
    bid = torch.arange(n, device=dev) // batch_size
    # Each batch's items laid out contiguously as [its positives, its negatives], i.e. PairBatch.items.
    size = (n - bid * batch_size).clamp(max=batch_size)
    at = bid * batch_size + torch.arange(n, device=dev)  # 2·start + offset in the batch
    items = torch.empty(2 * n, dtype=pos.dtype, device=dev)
    items[at] = pos
    items[at + size] = neg
    item_bid = torch.arange(2 * n, device=dev) // (2 * batch_size)
    user_keys, user_inv = torch.unique(bid * n_users + users, return_inverse=True)
    item_keys, item_inv = torch.unique(item_bid * n_items + items, return_inverse=True)
    pos_keys = torch.unique(bid * n_items + pos)
    n_batches = -(-n // batch_size)
    counts = torch.stack([torch.bincount(keys // width, minlength=n_batches) for keys, width in
                          ((user_keys, n_users), (item_keys, n_items), (pos_keys, n_items))])  # [3, n_batches]
    starts = counts.cumsum(1) - counts
    user_inv = user_inv - starts[0, bid]  # positions within the batch's own distinct rows
    item_inv = item_inv - starts[1, item_bid]
    pos_at = torch.searchsorted(item_keys, pos_keys) - starts[1, pos_keys // n_items]
    user_ids, item_ids = user_keys % n_users, item_keys % n_items
    c, s = counts.tolist(), starts.tolist()
    out = []
    for b in range(n_batches):
        e0, e1 = b * batch_size, min((b + 1) * batch_size, n)
        out.append(Distinct(users=user_ids[s[0][b]: s[0][b] + c[0][b]], user_inv=user_inv[e0:e1],
                            items=item_ids[s[1][b]: s[1][b] + c[1][b]], item_inv=item_inv[2 * e0: 2 * e1],
                            pos=pos_at[s[2][b]: s[2][b] + c[2][b]]))
    return out


def user_batches(data: TrainData, batch_size: int, shuffle: bool = True) -> Iterator[UserBatch]:
    """One epoch of user batches with dense training rows [B, n_items]."""
    users = torch.randperm(data.n_users, device=data.device) if shuffle else torch.arange(data.n_users, device=data.device)
    for start in range(0, data.n_users, batch_size):
        chunk = users[start:start + batch_size]
        yield data.user_batch(chunk)
