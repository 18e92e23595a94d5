"""AlphaRec (Sheng et al., ICLR'25, "Language representations can be what recommenders need"), a sibling
plug-in on LightGCN (official code: `LehengTHU/AlphaRec:models/General/AlphaRec.py`).

AlphaRec has no ID embeddings: its node inputs are language representations mapped by an MLP,
  items: f(c_i), users: f(mean of c_i over the user's training items)   (c = profile `profile` of the bank),
  f = Linear(d_text -> m·d_text) -> LeakyReLU -> Linear(-> dim)        (m = hidden_mult; 2 for ada-002 'v2'),
propagated by the LightGCN graph (2 layers; AlphaRec averages layers 0..L, our LightGCN sums them: the same
after the L2 normalisation below). Loss: sampled-softmax InfoNCE on L2-normalised vectors, τ = 0.15, with
`negatives` uniformly drawn items per (user, positive) pair; scores are cosines. Adam lr 5e-4 without weight
decay (the official `--weight_decay` never reaches the optimiser).

The reference configuration (`proex.reference`) sets LightGCN to what AlphaRec runs (64-d, 2 layers, layers
0..L, no edge dropout, no L2 penalty; the model's own ID table then goes unused) and the official training
protocol (lr 5e-4, at most 500 epochs, validation every 5 epochs, patience 20 validations). `user_input="profile"`
gives AlphaRec* of the DMRec paper (the user's own profile instead of the item mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.base import InnerProducts, PairBatch
from ..profiles.bank import ProfileBank
from .base import Plugin, Scorer
from .rlmrec import single_profile


@dataclass
class AlphaRecConfig:
    profile: int = 0  # which profile of the bank (0 = original profile)
    hidden_mult: float = 2.0  # MLP hidden width = hidden_mult · d_text (official, ada-002 'v2': 2)
    temperature: float = 0.15  # τ (books/movies 0.15; games 0.2: per dataset in proex.reference)
    negatives: int = 256  # uniformly sampled negative items per (user, positive) pair
    user_input: Literal["items_mean", "profile"] = "items_mean"  # AlphaRec | AlphaRec* (the user's own profile)

    def validate(self) -> None:
        if self.negatives < 1:
            raise ValueError(f"negatives: must be >= 1, got {self.negatives}")


class AlphaRec(Plugin):
    name = "alpharec"
    Config = AlphaRecConfig
    needs_profiles = True

    @classmethod
    def refusal(cls, model_cls) -> str | None:
        if model_cls.name != "lightgcn":
            return (
                f"alpharec: AlphaRec propagates language representations over the LightGCN graph; "
                f"use --model lightgcn (got {model_cls.name!r})"
            )
        return None

    def __init__(self, model, cfg: AlphaRecConfig, bank: ProfileBank):
        super().__init__(model)
        self.cfg = cfg
        tables = single_profile(bank, cfg.profile, model, self.name)
        items = tables.item[0]  # [I, d_text]
        if cfg.user_input == "items_mean":
            r = sp.csr_matrix(model.train_csr, dtype=np.float32)
            r = sp.diags(1.0 / np.maximum(np.asarray(r.sum(1)).ravel(), 1.0)).astype(np.float32) @ r
            users = torch.as_tensor(r @ items.numpy(), dtype=torch.float32)  # [U, d_text] row means
        else:
            users = tables.user[0]
        self.register_buffer("inputs", torch.cat([users, items]), persistent=False)  # [U + I, d_text]
        d_text, hidden = items.shape[1], max(int(cfg.hidden_mult * items.shape[1]), 1)
        self.mlp = nn.Sequential(nn.Linear(d_text, hidden), nn.LeakyReLU(), nn.Linear(hidden, model.cfg.dim))

    def _normalised_state(self):
        """(users [U, dim], items [I, dim]), L2-normalised, after LightGCN propagation of the mapped inputs."""
        state = self.model.encode(None, ego=self.mlp(self.inputs)).state
        return F.normalize(state.users, dim=-1), F.normalize(state.items, dim=-1)

    def loss_terms(self, batch: PairBatch) -> dict[str, Tensor]:
        users, items = self._normalised_state()
        u = users[batch.users]  # [B, dim]
        neg = torch.randint(0, items.shape[0], (batch.users.numel(), self.cfg.negatives), device=u.device)
        pos_logit = (u * items[batch.pos]).sum(-1, keepdim=True)  # [B, 1]
        neg_logits = torch.einsum("bd,bnd->bn", u, items[neg])  # [B, N]
        logits = torch.cat([pos_logit, neg_logits], dim=1) / self.cfg.temperature
        return {"infonce": (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()}

    def scorer(self) -> Scorer:
        users, items = self._normalised_state()
        return InnerProducts(users, items)  # cosine similarities [B, I]
