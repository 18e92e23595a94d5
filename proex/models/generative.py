"""Shared parts of the generative recommenders (Mult-VAE, CVGA; L-DiffRec reuses the helpers).

Fusion point: additive on the posterior parameters, μ = μ_src + μ_side and logσ² = logσ²_src + logσ²_side
(DMRec, BlueGhostYi/ProRec encoder/models/general_cf/mult_vae_*.py; the paper's aggregation alignment, Eq. 6
and 9, maps profiles to a mean and a variance of the same width). side.user is [B, 2d] = [μ_side ‖ logσ²_side].
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ..data.sampling import user_batches
from .base import BaseModel, LatentState, Side, UserBatch


def row_offsets(batch: UserBatch) -> Tensor:
    """[B + 1]: where each row's nonzeros start in batch.nz (row_ids are sorted), the last entry nnz; their
    differences are the rows' degrees. A search, not `bincount`, which on CUDA makes the host wait."""
    row_ids, _ = batch.nz
    return torch.searchsorted(row_ids, torch.arange(batch.users.numel() + 1, device=row_ids.device))


def sparse_rows_linear(batch: UserBatch, weight: Tensor, bias: Tensor | None, values: Tensor | None = None) -> Tensor:
    """x @ weight (+ bias) for the batch's binary rows x given as nonzeros: exact, and much cheaper than a
    dense [B, n_items] product (docs/results/speed.md). weight: [n_items, H]; values: [nnz] per-nonzero input
    values (after normalisation / dropout; default 1). Returns [B, H]."""
    _, cols = batch.nz
    offsets = row_offsets(batch)[:-1]
    if values is None:
        values = torch.ones(cols.shape, device=cols.device, dtype=weight.dtype)
    out = torch.nn.functional.embedding_bag(cols, weight, offsets, mode="sum", per_sample_weights=values)
    return out if bias is None else out + bias


def row_values(batch: UserBatch, l2_normalise: bool, dropout: float, training: bool) -> Tensor:
    """[nnz] input values of the binary rows after optional L2 row normalisation and input dropout
    (the same distribution as F.dropout on the dense normalised row)."""
    row_ids, _ = batch.nz
    values = torch.ones(row_ids.shape, device=row_ids.device)
    if l2_normalise:
        deg = row_offsets(batch).diff().float()
        values = values / deg.clamp(min=1).sqrt()[row_ids]
    if training and dropout > 0:
        values = values * (torch.rand_like(values) >= dropout) / (1 - dropout)
    return values


def fuse(state: LatentState, side: Side | None) -> tuple[Tensor, Tensor]:
    """(μ, logσ²) [B, d] each, with the side posterior added when given (side.user [(E,) B, 2d]: with a
    leading environment dimension the sum broadcasts to [E, B, d])."""
    if side is None or side.user is None:
        return state.mu, state.logvar
    mu_side, logvar_side = side.user.chunk(2, dim=-1)
    return state.mu + mu_side, state.logvar + logvar_side


def multinomial_nll(logits: Tensor, rows: Tensor) -> Tensor:
    """-Σ_i x_ui log softmax(logits)_ui, averaged over the batch. logits [(E,) B, n_items], rows [B, n_items]
    -> scalar, or [E] with a leading environment dimension."""
    return -(torch.log_softmax(logits, dim=-1) * rows).sum(-1).mean(-1)


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over dims, averaged over the batch. mu, logvar: [(E,) B, d] -> [(E)]."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)).mean(-1)


def reparameterize(mu: Tensor, logvar: Tensor, training: bool) -> Tensor:
    """z = μ + σ ⊙ ε in training, z = μ at inference."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if training else mu


class VAEModel(BaseModel):
    """A VAE-style recommender: subclasses implement `encode` (-> LatentState for the batch users),
    `decode(z) -> logits [B, n_items]` and optionally `kl_weight()`."""

    family = "generative"

    @classmethod
    def side_width(cls, cfg) -> int:
        return 2 * cfg.latent_dim

    def training_batches(self, data, batch_size: int, distinct: bool = False) -> Iterable[UserBatch]:
        return user_batches(data, batch_size)

    def decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def kl_weight(self) -> float:
        return 1.0

    def risk(self, batch: UserBatch, state: LatentState, side: Side | None = None) -> dict[str, Tensor]:
        """Multinomial NLL of the batch rows + weighted KL of the (fused) posterior to N(0, I): scalars, or [E]
        when side.user has a leading environment dimension [E, B, 2d] (one call for all environments)."""
        mu, logvar = fuse(state, side)
        logits = self.decode(reparameterize(mu, logvar, self.training))
        return {"rec": multinomial_nll(logits, batch.rows), "kl": self.kl_weight() * kl_standard_normal(mu, logvar)}

    def score(self, batch: UserBatch, state: LatentState, side: Side | None = None) -> Tensor:
        mu, _ = fuse(state, side)
        return self.decode(mu)
