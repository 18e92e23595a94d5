"""CVGA (Zhang et al., TOIS'23), the paper's third generative base (BlueGhostYi/ID-GRec models/CVGA.py).

A VAE whose encoder is one light graph convolution: [μ ‖ logσ²] = dropout(R̃ Wᵀ + b) with
R̃ = D_u^{-1/2} R D_i^{-1/2} the user-item normalised training matrix (U × I, no user-user / item-item
blocks) and W ∈ R^{2d × I}; dropout acts on the OUTPUT (both μ and logσ²). Decoder: one Linear d -> I
(logits). Loss: multinomial NLL + KL(q ‖ N(0, I)) with weight 1 as the batch mean of the per-user sum
(ProRec `cvga_*`; ID-GRec's extra 1/B on the KL is a quirk not copied). Inference: z = μ (ProRec
`cvga_*`; ID-GRec samples z at test, which the spec says not to copy).

Efficiency: the reference computes R̃ Wᵀ for ALL users at every step and then indexes the batch. Row u of
R̃ is x_u · du_u^{-1/2} · di^{-1/2} with x_u the binary training row, so `encode` computes only the batch
rows from `batch.rows`, exactly (dropout is element-wise, so dropping the batch rows of the full output is
the same distribution). `posterior_all()` gives every user's (μ, logσ²) via the sparse R̃ when needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.tensors import TrainData
from .base import Encoded, LatentState, UserBatch
from .generative import VAEModel
from .graph import user_item_adjacency


@dataclass
class CVGAConfig:
    latent_dim: int = (
        64  # d, width of μ and logσ² (ID-GRec configure/CVGA.txt embedding_size; ID-GRec CVGA.py [inferred])
    )
    dropout: float = 0.3  # dropout on the encoder OUTPUT (ID-GRec CVGA.txt; paper A.2.3 "as in Mult-VAE")
    xavier_init: bool = False  # Xavier-normal weights / zero biases; False = PyTorch default init (ID-GRec, ProRec)


def degree_inv_sqrt(train) -> tuple[np.ndarray, np.ndarray]:
    """(du^{-1/2} [U], di^{-1/2} [I]) of a binary training matrix, 0 where the degree is 0 (as in R̃)."""
    du = np.asarray(train.sum(axis=1), dtype=np.float64).ravel()
    di = np.asarray(train.sum(axis=0), dtype=np.float64).ravel()
    with np.errstate(divide="ignore"):
        return np.where(du > 0, du**-0.5, 0.0), np.where(di > 0, di**-0.5, 0.0)


class CVGA(VAEModel):
    """Graph-encoder VAE. State: LatentState(μ, logσ²) [B, d] of the batch users; fusion (inherited from
    VAEModel) adds side.user = [μ_side ‖ logσ²_side] [B, 2d] to the posterior before sampling."""

    name = "cvga"
    Config = CVGAConfig

    def __init__(self, cfg: CVGAConfig, data: TrainData):
        super().__init__(cfg, data)
        d = cfg.latent_dim
        self.enc = nn.Linear(self.n_items, 2 * d)  # W [2d, I], b [2d]
        self.dec = nn.Linear(d, self.n_items)
        if cfg.xavier_init:
            for layer in (self.enc, self.dec):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)
        du, di = degree_inv_sqrt(data.train_csr)
        # Normalisers of R̃ (non-persistent: rebuilt from the data, never stale in a checkpoint).
        self.register_buffer("du_isqrt", torch.as_tensor(du, dtype=torch.float32, device=data.device), persistent=False)
        self.register_buffer("di_isqrt", torch.as_tensor(di, dtype=torch.float32, device=data.device), persistent=False)
        self.adj = user_item_adjacency(data.train_csr, data.device)  # R̃ [U, I], for posterior_all

    def normalised_rows(self, batch: UserBatch) -> Tensor:
        """R̃[batch.users] as a dense [B, I] block, from the binary training rows."""
        return batch.rows * self.du_isqrt[batch.users].unsqueeze(1) * self.di_isqrt

    def _heads(self, h: Tensor) -> tuple[Tensor, Tensor]:
        h = F.dropout(h, self.cfg.dropout, self.training)  # on the output, both halves (ID-GRec CVGA.py)
        mu, logvar = h.chunk(2, dim=-1)
        return mu, logvar

    def encode(self, batch: UserBatch) -> Encoded:
        """(μ, logσ²) [B, d] = split(dropout(R̃[u] Wᵀ + b)) for the batch users. The rows are ~0.1% dense, so
        the product is sparse (same value as self.enc(rows), several times cheaper forward and backward)."""
        h = torch.sparse.mm(self.normalised_rows(batch).to_sparse(), self.enc.weight.t()) + self.enc.bias
        return Encoded(LatentState(*self._heads(h)))

    def posterior_all(self) -> tuple[Tensor, Tensor]:
        """(μ, logσ²) [U, d] for every user via the sparse R̃ (the reference's all-user encoder)."""
        return self._heads(self.adj.matmul(self.enc.weight.T) + self.enc.bias)

    def decode(self, z: Tensor) -> Tensor:
        """Logits [B, I] from z [B, d]."""
        return self.dec(z)
