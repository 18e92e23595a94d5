"""Ω's uniformity term (ProEx, Eq. 14; BlueGhostYi/ProRec `lightgcn_proex.py`): a fast version with its gradient
written out (`_Uniformity`) beside the definition differentiated by autograd (`uniformity_autograd`), which runs
under `proex.runtime.reference_kernels()` and under torch.compile. Used by `plugins/proex.py`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..runtime import reference_kernels_on


def uniformity(x: Tensor, temperature: float) -> Tensor:
    """Official Ω term: mean_i −log(e^{1/τ} / Σ_j e^{x̂_i·x̂_j/τ} + 1e-5) for one profile x [n, D] -> scalar,
    or summed over profiles for x [K, n, D] (one batched product instead of K).

    Eager, its gradient is written out (`_Uniformity`): the derivative autograd would take, in about half the
    operators and one [n, n] product instead of two (this term dominates an eager ProEx step's operator count;
    docs/results/speed.md). The reference form `uniformity_autograd` runs under `reference_kernels()` and under
    torch.compile (TrainConfig.compile): TorchInductor derives and fuses its backward itself, and dynamo
    fails on two calls of one autograd.Function that carry Python floats."""
    if torch.compiler.is_compiling() or reference_kernels_on():
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
