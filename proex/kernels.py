"""Hand-written fast versions of two computations, each beside the plain reference version it must equal.

The algorithm files call the dispatchers here and read as the paper; `reference_kernels()` (or
`TrainConfig.reference_kernels`, `--train reference_kernels=true`) switches every dispatcher to the reference
version for the scope of a fit, so a suspected kernel bug is one flag away from being ruled out.

* Ω's uniformity term (ProEx, ProRec `lightgcn_proex.py`): `_Uniformity`, an autograd.Function with its gradient
  written out, vs `uniformity_autograd`, the definition differentiated by autograd.
* The distinct users and items of every BPR batch: `epoch_distinct`, all batches of an epoch in three sorts,
  vs `Distinct.of` (`torch.unique` per batch). On a GPU each `torch.unique` makes the host wait for the device.
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .data.batches import Distinct

_REFERENCE = contextvars.ContextVar("proex_reference_kernels", default=False)


@contextlib.contextmanager
def reference_kernels(on: bool = True):
    """Within the block, every dispatcher here runs its reference version (when `on`)."""
    token = _REFERENCE.set(on)
    try:
        yield
    finally:
        _REFERENCE.reset(token)


def uniformity(x: Tensor, temperature: float) -> Tensor:
    """Official Ω term: mean_i −log(e^{1/τ} / Σ_j e^{x̂_i·x̂_j/τ} + 1e-5) for one profile x [n, D] -> scalar,
    or summed over profiles for x [K, n, D] (one batched product instead of K).

    Eager, its gradient is written out (`_Uniformity`): the derivative autograd would take, in about half the
    operators and one [n, n] product instead of two (this term dominates an eager ProEx step's operator count;
    docs/results/speed.md). The reference form `uniformity_autograd` runs under `reference_kernels()` and under
    torch.compile (TrainConfig.compile): TorchInductor derives and fuses its backward itself, and dynamo
    fails on two calls of one autograd.Function that carry Python floats."""
    if torch.compiler.is_compiling() or _REFERENCE.get():
        return uniformity_autograd(x, temperature)
    return _Uniformity.apply(x, temperature)


def uniformity_autograd(x: Tensor, temperature: float) -> Tensor:
    """`uniformity` written for autograd: the definition as the official code computes it."""
    x = F.normalize(x, dim=-1) * temperature**-0.5  # 1/τ folded into the [n, D] rows, not the [n, n] logits
    denom = torch.exp(x @ x.transpose(-1, -2)).sum(-1)  # [(K,) n]
    return -torch.log(math.exp(1.0 / temperature) / denom + 1e-5).mean(-1).sum()


# Rows per block of P on the CPU. A [K, 256, n] slab of P stays in cache where the whole [K, n, n] matrix
# (28 M entries for a 4,096-triple batch) streams through memory three times; see `_Uniformity`.
CPU_BLOCK = 256


class _Uniformity(torch.autograd.Function):
    """Forward as in `uniformity`; z = x̂·τ^{-1/2} ([(K,) n, D], 1/τ folded into the rows, not the [n, n]
    logits), P = exp(z zᵀ) ([(K,) n, n], symmetric), d_i = Σ_j P_ij, L = Σ_k mean_i −log(c/d_i + ε), c = e^{1/τ}.

    Backward: ∂L/∂d_i = c / (n·d_i·(c + ε·d_i)) =: g_i; ∂L/∂z_i = Σ_j (g_i + g_j) P_ij z_j (P symmetric)
    = g_i (P z)_i + (P (g∘z))_i, i.e. one product of P with [z, g∘z] ([(K,) n, 2D]);
    then through z = x·s/max(‖x‖, 1e-12), s = τ^{-1/2} (F.normalize's clamp): ∂L/∂x = s/‖x‖·(∂z − x̂(x̂·∂z)),
    the projection dropped where the norm is clamped (there the map is linear).

    On a GPU, P is formed once and kept for the backward. On the CPU with n > 2·CPU_BLOCK, P is never formed
    whole: the forward and the backward each walk its blocks on and above the diagonal (`_blocks`), each block
    also standing for its mirror image, so each computes half of P's exponentials, and every block is used
    while it is in cache. Same sums in another order: equal to float rounding (tests/test_proex.py)."""

    @staticmethod
    def forward(ctx, x: Tensor, temperature: float) -> Tensor:
        clamped = x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        z = x / (clamped * temperature**0.5)
        if _blocked(z):
            p, d = None, _blocks(z, None)
        else:
            p = (z @ z.transpose(-1, -2)).exp_()  # in place: one [(K,) n, n] buffer instead of two
            d = p.sum(-1)
        c = math.exp(1.0 / temperature)
        ctx.save_for_backward(z, clamped, d, *(() if p is None else (p,)))
        ctx.c, ctx.scale = c, temperature**-0.5
        return -torch.log(c / d + 1e-5).mean(-1).sum()

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, clamped, d, *kept = ctx.saved_tensors
        unclamped = clamped > 1e-12  # where ‖x‖ > 1e-12
        c, n = ctx.c, d.shape[-1]
        g = (grad * c / (n * d * (c + 1e-5 * d))).unsqueeze(-1)  # [(K,) n, 1]
        # Σ_j (g_i + g_j) P_ij z_j = g_i (P z)_i + (P (g∘z))_i: one product with [z, g∘z] ([(K,) n, 2D]) instead
        # of forming (g_i + g_j) P_ij, two element-wise passes over the [n, n] matrix.
        zg = torch.cat([z, g * z], -1)
        pz, pgz = (kept[0] @ zg if kept else _blocks(z, zg)).chunk(2, dim=-1)
        dz = g * pz + pgz  # [(K,) n, D]
        x_hat = z / ctx.scale
        dz = dz - x_hat * ((x_hat * dz).sum(-1, keepdim=True) * unclamped)
        return dz * (ctx.scale / clamped), None


def _blocked(z: Tensor) -> bool:
    return z.device.type == "cpu" and z.shape[-2] > 2 * CPU_BLOCK


def _blocks(z: Tensor, w: Tensor | None) -> Tensor:
    """With P = exp(z zᵀ) ([(K,) n, n], symmetric) walked in row blocks from the diagonal on: P's row sums
    [(K,) n] when w is None, else P @ w ([(K,) n, m] for w [(K,) n, m]). The block of rows [s, e) and columns
    [s, n) adds to rows [s, e) and, by symmetry, its part right of the diagonal block adds (transposed) to
    rows [e, n)."""
    n = z.shape[-2]
    out = z.new_zeros(z.shape[:-1] + (() if w is None else (w.shape[-1],)))
    for s in range(0, n, CPU_BLOCK):
        e = min(s + CPU_BLOCK, n)
        p = (z[..., s:e, :] @ z[..., s:, :].transpose(-1, -2)).exp_()  # [(K,) e - s, n - s]
        if w is None:
            out[..., s:e] += p.sum(-1)
            out[..., e:] += p[..., e - s :].sum(-2)
        else:
            out[..., s:e, :] += p @ w[..., s:, :]
            out[..., e:, :] += p[..., e - s :].transpose(-1, -2) @ w[..., s:e, :]
    return out


def epoch_distinct(
    users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, batch_size: int, n_users: int, n_items: int
) -> list[Distinct] | None:
    """`Distinct.of` every batch of an epoch (users, pos, neg [N], cut into batches of `batch_size`) at once;
    None under `reference_kernels()`, so each batch computes its own with `Distinct.of`.

    Why: `torch.unique` makes the host wait for the GPU, and a plug-in called it three times per batch, so the
    host could never run ahead of the device. Here three sorts of batch-tagged keys (batch · n + id) cover the
    epoch, the host waits a few times per epoch instead of three times per batch, and every batch's tensors
    are views."""
    if _REFERENCE.get():
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
