"""The distinct users and items of every BPR batch of an epoch at once (`epoch_distinct`), the fast version of
`Distinct.of` per batch (`torch.unique` each time, which makes the host wait for a GPU). `Distinct.of` runs
instead under `proex.runtime.reference_kernels()`. Used by `data/sampling.py`."""

from __future__ import annotations

import torch

from ..runtime import reference_kernels_on
from .batches import Distinct


def epoch_distinct(
    users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, batch_size: int, n_users: int, n_items: int
) -> list[Distinct] | None:
    """`Distinct.of` every batch of an epoch (users, pos, neg [N], cut into batches of `batch_size`) at once;
    None under `reference_kernels()`, so each batch computes its own with `Distinct.of`.

    Why: `torch.unique` makes the host wait for the GPU, and a plug-in called it three times per batch, so the
    host could never run ahead of the device. Here three sorts of batch-tagged keys (batch · n + id) cover the
    epoch, the host waits a few times per epoch instead of three times per batch, and every batch's tensors
    are views."""
    if reference_kernels_on():
        return None
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
    counts = torch.stack(
        [
            torch.bincount(keys // width, minlength=n_batches)
            for keys, width in ((user_keys, n_users), (item_keys, n_items), (pos_keys, n_items))
        ]
    )  # [3, n_batches]
    starts = counts.cumsum(1) - counts
    user_inv = user_inv - starts[0, bid]  # positions within the batch's own distinct rows
    item_inv = item_inv - starts[1, item_bid]
    pos_at = torch.searchsorted(item_keys, pos_keys) - starts[1, pos_keys // n_items]
    user_ids, item_ids = user_keys % n_users, item_keys % n_items
    c, s = counts.tolist(), starts.tolist()
    out = []
    for b in range(n_batches):
        e0, e1 = b * batch_size, min((b + 1) * batch_size, n)
        out.append(
            Distinct(
                users=user_ids[s[0][b] : s[0][b] + c[0][b]],
                user_inv=user_inv[e0:e1],
                items=item_ids[s[1][b] : s[1][b] + c[1][b]],
                item_inv=item_inv[2 * e0 : 2 * e1],
                pos=pos_at[s[2][b] : s[2][b] + c[2][b]],
            )
        )
    return out
