"""Mult-VAE (Liang et al., WWW'18), the paper's first generative base (reference-spec sec. 2.4).

q: I -> 600 (tanh) -> 2·200 (μ, logσ²); p: 200 -> 600 (tanh) -> I logits; multinomial likelihood.
Defaults follow the original model, which the DMRec/ProEx papers use for their "Base" row: the input row
is L2-normalised, dropout 0.5 on the input, β annealed linearly from 0 to 0.2 over 200,000 updates, Xavier
init. The DMRec code's variant (no normalisation, fixed β = 1, dropout 0.3, default init) is one switch
away: `input_norm=False, anneal_cap=1.0, total_anneal_steps=0, dropout=0.3, xavier_init=False`.
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
    dropout: float = 0.5  # input dropout (original 0.5; DMRec code 0.3 amazon/yelp, 0.2 steam)
    input_norm: bool = True  # L2-normalise the input row (original; DMRec code: False)
    anneal_cap: float = 0.2  # final KL weight β
    total_anneal_steps: int = 200000  # linear anneal length in updates; 0 = constant anneal_cap
    xavier_init: bool = True  # Xavier-normal weights, N(0, 0.001) biases (original)


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
