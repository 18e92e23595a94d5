"""RLMRec-Con (`*_plus`) and RLMRec-Gen (`*_gene`) as single-profile plug-ins for the pairwise bases
(GCCF, LightGCN, SimGCL) (official code: HKUDS/RLMRec encoder/models/general_cf/*_plus.py and *_gene.py).

Both read ONE profile of the bank (config `profile`, default 0 = the original RLMRec profile), which is what
makes them the paper's "single-profile" baselines; the other K-1 profiles are never touched.

* RLMRec-Con (RLMRec *_plus.py): s = MLP(profile), MLP = Linear(d_text -> (d_text + D)//2) -> LeakyReLU(0.01) ->
  Linear(-> D) (xavier_uniform weights; `DirectMap`), D = the model's final width (32, or (L+1)·32 for GCCF).
  kd = kd_weight / B · [NCE(e_u -> s_u; candidates: ALL users' s) + NCE(e_i -> s_i; candidates: the batch's
  positive-item s) + NCE(e_j -> s_j; candidates: the batch's negative-item s)], NCE = RLMRec
  `cal_infonce_loss` (RLMRec loss_utils.py, `graph.infonce`: a SUM over rows), e the collaborative final embedding
  (SimGCL: the clean view). Profiles are NOT added to the representation; inference = the base model.
  Cost: the official code maps every user and item every step; the user term needs all users' s as
  candidates, so they are mapped once per step, but only the batch's items are mapped (the loss touches no
  other item row, so the gradients are identical).
* RLMRec-Gen (RLMRec *_gene.py): NodeMask draws S, max(⌊mask_ratio·(U+I)⌋, 1) distinct nodes (redrawn every batch;
  torch's RNG instead of np.random.choice), whose ego embeddings are replaced by a learnable zero-initialised
  mask token [1, d]. The masked table is propagated by the model (`encode(batch, ego=...)`: LightGCN with its
  edge dropout, GCCF concat, SimGCL's three views) and the SAME masked forward feeds the BPR (and SimGCL's cl).
  recon = recon_weight · ssl_con_loss(MLP(final emb of S), profile of S, re_temperature), MLP = Linear(D ->
  (d_text + D)//2) -> LeakyReLU -> Linear(-> d_text). Inference: the base model on the unmasked table.

The Σ‖θ‖² penalty over all parameters (MLP and mask token included) is added by the Trainer (RLMRec loss_utils.py).

Hyper-parameters: the `*_plus.yml` / `*_gene.yml` dataset blocks of each base, GCCF without self-loops and
LightGCN with RLMRec's encoder (edge dropout, ego layer) under both, are rows of `proex.reference`; the
Config field defaults below are the lightgcn amazon values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.base import PairBatch
from ..models.graph import infonce
from ..profiles.bank import ProfileBank
from .base import Base
from .profile_maps import DirectMap, ProfileTables


def ssl_con_loss(x: Tensor, y: Tensor, temperature: float) -> Tensor:
    """RLMRec `ssl_con_loss` (RLMRec loss_utils.py): rows L2-normalised, then
    mean_i −log( exp(x̂_i·ŷ_i/τ) / (Σ_j exp(x̂_i·ŷ_j/τ) + 1e-8) + 1e-8 ), in-set negatives. x, y: [n, D]."""
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    num = torch.exp((x * y).sum(-1) / temperature)
    den = torch.exp(x @ y.T / temperature).sum(-1)
    return -torch.log(num / (den + 1e-8) + 1e-8).mean()


def single_profile(bank: ProfileBank, index: int, model, who: str) -> ProfileTables:
    """Tables holding only profile `index` of the bank (K = 1), checked against the model's sizes."""
    bank.check(model.n_users, model.n_items, where=bank.path or "profile bank")
    if not 0 <= index < bank.k:
        raise ValueError(f"{who}: profile={index} but the bank has K = {bank.k} profiles (use 0..{bank.k - 1})")
    return ProfileTables(bank.subset([index]))


class _PairwiseOnly(Base):
    """Shared checks and the base model's scorer (neither RLMRec plug-in changes inference; KAR overrides it)."""

    needs_profiles = True

    @classmethod
    def refusal(cls, model_cls) -> str | None:
        if model_cls.family != "pairwise":
            return (
                f"{cls.name}: this plug-in needs a pairwise graph model (gccf, lightgcn, simgcl); "
                f"{model_cls.name!r} is {model_cls.family}. Use dmrec_g/dmrec_c/dmrec_m or proex for it."
            )
        return None

    def __init__(self, model, cfg, bank: ProfileBank):
        super().__init__(model)
        self.cfg = cfg
        self.tables = single_profile(bank, cfg.profile, model, self.name)


@dataclass
class RLMRecConConfig:
    kd_weight: float = 1e-2  # weight of the kd (InfoNCE) loss (lightgcn_plus amazon; table in the module doc)
    kd_temperature: float = 0.2  # τ of the three InfoNCE terms (lightgcn_plus amazon)
    profile: int = 0  # which profile of the bank (0 = original RLMRec profile)
    hidden_dim: int | None = None  # MLP width; None = (d_text + D) // 2 as in RLMRec (set by resolve)


class RLMRecCon(_PairwiseOnly):
    """RLMRec-Con: contrastive alignment of collaborative embeddings with mapped profiles (RLMRec *_plus.py)."""

    name = "rlmrec_con"
    uses_distinct = True
    Config = RLMRecConConfig

    def __init__(self, model, cfg: RLMRecConConfig, bank: ProfileBank):
        super().__init__(model, cfg, bank)
        self.map = DirectMap(self.tables.dim, model.side_dim, cfg.hidden_dim)

    def kd_loss(self, batch: PairBatch, users: Tensor, items: Tensor) -> Tensor:
        """kd_weight/B · Σ of the three InfoNCE terms. users: [U, D], items: [I, D] collaborative finals."""
        t = self.cfg.kd_temperature
        s_users = self.map(self.tables.user[0])  # [U, D]: all users are candidates of the user term
        rows = batch.distinct()
        s_items = self.map(self.tables.item[0, rows.items])[
            rows.item_inv
        ]  # [2B, D] only the batch's items, pos then neg
        s_pos, s_neg = s_items.split(batch.users.numel())
        kd = (
            infonce(users[batch.users], s_users[batch.users], s_users, t)
            + infonce(items[batch.pos], s_pos, s_pos, t)
            + infonce(items[batch.neg], s_neg, s_neg, t)
        )
        return self.cfg.kd_weight * kd / batch.users.numel()

    def loss_terms(self, batch: PairBatch) -> dict[str, Tensor]:
        enc = self.model.encode(batch)
        terms = {**enc.losses, **self.model.risk(batch, enc.state, None)}
        if self.cfg.kd_weight > 0:
            terms["kd"] = self.kd_loss(batch, enc.state.users, enc.state.items)
        return terms


@dataclass
class RLMRecGenConfig:
    mask_ratio: float = 0.15  # fraction of the U + I nodes masked per batch (lightgcn_gene amazon)
    recon_weight: float = 0.1  # weight of the reconstruction loss (lightgcn_gene amazon)
    re_temperature: float = 0.5  # τ of ssl_con_loss (lightgcn_gene amazon)
    profile: int = 0  # which profile of the bank (0 = original RLMRec profile)
    hidden_dim: int | None = None  # MLP width; None = (d_text + D) // 2 as in RLMRec (set by resolve)

    def validate(self) -> None:
        if not 0.0 <= self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio: must be in [0, 1], got {self.mask_ratio}")


class RLMRecGen(_PairwiseOnly):
    """RLMRec-Gen: masked-node reconstruction of the profile embeddings (RLMRec *_gene.py)."""

    name = "rlmrec_gen"
    Config = RLMRecGenConfig

    def __init__(self, model, cfg: RLMRecGenConfig, bank: ProfileBank):
        super().__init__(model, cfg, bank)
        if not isinstance(getattr(model, "embedding", None), nn.Parameter):
            raise ValueError(f"{self.name}: model {model.name!r} has no ego embedding table to mask")
        self.mask_token = nn.Parameter(torch.zeros(1, model.embedding.shape[1]))  # NodeMask token, zero init
        self.recon = DirectMap(model.side_dim, self.tables.dim, cfg.hidden_dim)

    def mask_nodes(self) -> tuple[Tensor, Tensor]:
        """(masked ego table [(U + I), d], seeds [n_mask] distinct node ids, users first then items)."""
        ego = self.model.embedding
        n = ego.shape[0]
        seeds = torch.randperm(n, device=ego.device)[: max(int(n * self.cfg.mask_ratio), 1)]
        hit = torch.zeros(n, 1, dtype=torch.bool, device=ego.device)
        hit[seeds] = True
        return torch.where(hit, self.mask_token, ego), seeds

    def profiles_of(self, nodes: Tensor) -> Tensor:
        """Profile rows [n, d_text] of node ids over users ∪ items, without concatenating the tables."""
        n_users = self.model.n_users
        is_user = (nodes < n_users).unsqueeze(1)
        return torch.where(
            is_user,
            self.tables.user[0, nodes.clamp(max=n_users - 1)],
            self.tables.item[0, (nodes - n_users).clamp(min=0)],
        )

    def loss_terms(self, batch: PairBatch) -> dict[str, Tensor]:
        masked, seeds = self.mask_nodes()
        enc = self.model.encode(batch, ego=masked)
        terms = {**enc.losses, **self.model.risk(batch, enc.state, None)}
        if self.cfg.recon_weight > 0:
            final = torch.cat([enc.state.users, enc.state.items])[seeds]  # [n_mask, D]
            terms["recon"] = self.cfg.recon_weight * ssl_con_loss(
                self.recon(final), self.profiles_of(seeds), self.cfg.re_temperature
            )
        return terms
