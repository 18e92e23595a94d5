"""Mult-VAE (Liang et al., WWW'18), the paper's first generative base
(BlueGhostYi/ProRec encoder/models/general_cf/mult_vae_*.py).

q: I -> 600 (tanh) -> 2·200 (μ, logσ²); p: 200 -> 600 (tanh) -> I logits; multinomial likelihood.

Defaults follow the DMRec/ProRec code's Mult-VAE (BlueGhostYi/ProRec encoder/models/general_cf/mult_vae_*.py), the
code the ProEx authors ran: no input normalisation, fixed KL weight β = 1, input dropout 0.3 (0.2 on steam), default
PyTorch init.
Departure, on purpose: the DMRec paper says its "Base" row is the original model (Liang et al.: L2-normalised
input, dropout 0.5, β annealed 0 -> 0.2 over 200,000 updates, Xavier init). We compared the two on amazon
VALIDATION only (seed 2024): the original peaks at epoch 30 with R@20 .1382 (β stays near 0 and it overfits),
the code's settings at epoch 195 with .1537 (docs/results/base_models.md). The original is one switch away:
`input_norm=True, anneal_cap=0.2, total_anneal_steps=200000, dropout=0.5, xavier_init=True`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import Encoded, LatentState, UserBatch
from .generative import VAEModel, row_values, sparse_rows_linear


@dataclass
class MultVAEConfig:
    hidden_dim: int = 600  # encoder/decoder hidden width (paper A.2.3: [200, 600])
    latent_dim: int = 200  # d, the width of μ and logσ²
    dropout: float = 0.3  # input dropout (DMRec code: 0.3 amazon/yelp, 0.2 steam; original 0.5)
    input_norm: bool = False  # L2-normalise the input row (original: True)
    anneal_cap: float = 1.0  # final KL weight β (original: 0.2)
    total_anneal_steps: int = 0  # linear anneal length in updates; 0 = constant anneal_cap (original: 200000)
    xavier_init: bool = False  # Xavier-normal weights, N(0, 0.001) biases (original: True)


class MultVAE(VAEModel):
    name = "multvae"
    Config = MultVAEConfig

    def __init__(self, cfg: MultVAEConfig, data):
        super().__init__(cfg, data)
        h, d = cfg.hidden_dim, cfg.latent_dim
        # The input layer is stored as an [n_items, h] table and applied to the rows' nonzeros
        # (sparse_rows_linear); mathematically the Linear(n_items -> h) of the original.
        enc_in = nn.Linear(self.n_items, h)
        self.enc_out = nn.Linear(h, 2 * d)
        self.dec_in, self.dec_out = nn.Linear(d, h), nn.Linear(h, self.n_items)
        if cfg.xavier_init:
            for layer in (enc_in, self.enc_out, self.dec_in, self.dec_out):
                nn.init.xavier_normal_(layer.weight)
                nn.init.normal_(layer.bias, std=0.001)
        self.enc_in_weight = nn.Parameter(enc_in.weight.detach().T.contiguous())  # [n_items, h]
        self.enc_in_bias = nn.Parameter(enc_in.bias.detach().clone())
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def kl_weight(self) -> float:
        if self.cfg.total_anneal_steps <= 0:
            return self.cfg.anneal_cap
        return min(self.cfg.anneal_cap, float(self.updates) / self.cfg.total_anneal_steps)

    def encode(self, batch: UserBatch) -> Encoded:
        values = row_values(batch, self.cfg.input_norm, self.cfg.dropout, self.training)
        hidden = torch.tanh(sparse_rows_linear(batch, self.enc_in_weight, self.enc_in_bias, values))
        mu, logvar = self.enc_out(hidden).chunk(2, dim=-1)
        if self.training:
            self.updates += 1  # one encode per gradient update
        return Encoded(LatentState(mu, logvar))

    def decode(self, z: Tensor) -> Tensor:
        return self.dec_out(torch.tanh(self.dec_in(z)))
