"""ProEx (paper sec. 2.3.2-2.4, Algorithms 1-2) as ONE plug-in over the base-model interface, for all six bases.

Per training batch:
  1. map the K profiles of the batch's entities only (the official code maps every user and item for every
     profile at every batch; restricting to the rows the loss touches gives identical gradients, ProRec
     lightgcn_proex.py);
  2. draw E Dirichlet(α·1_K) weight vectors, one per environment, shared by the whole batch (official, ProRec
     lightgcn_proex.py);
  3. mix the mapped profiles per environment (Eq. 8 discriminative, Eq. 9 generative) and call the model's
     `risk` ONCE with all E mixtures at its fusion point (Eq. 12: addition; the risk broadcasts over a leading
     environment dimension and returns [E]), plus λ1·alignment;
  4. objective = Σ_e L_e (official; `env_reduce="mean"` averages) + λ3·Var_e(L_e) (unbiased, REx) + λ2·Ω (Eq. 14).
At inference the K mapped profiles are mean-pooled (weights 1/K, Algorithm 2), computed once per evaluation.

Where the official LightGCN code and the paper differ (env_reduce, λ3, reg_form, the LightGCN encoder,
alignment), both are options and the default follows the code; docs/reference.md ("ProEx's plug-in") lists
each with its sources and the reason for the default.
Generative mixing (Eq. 9) mixes the means and the variances σ² linearly, then fuses log σ̃² additively.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.base import PairBatch, Side, UserBatch
from ..models.generative import fuse
from ..profiles.bank import ProfileBank
from .base import Plugin, Scorer
from .profile_maps import AggregateMap, DirectMap, ProfileTables
from .uniformity import uniformity


@dataclass
class ProExConfig:
    # Field defaults are the official LightGCN-ProEx amazon values; per base and dataset: `proex.reference`.
    num_envs: int = 3  # E, environments per batch
    alpha: float = 0.1  # Dirichlet concentration α
    inv_weight: float = 10.0  # λ3 on Var_e(L_e) (code 10; paper A.2.3 1.0, used for generative bases); 0 = "w/o inv"
    reg_weight: float = 0.4  # λ2 on Ω (the yml's ex_weight); 0 = "w/o reg"
    reg_form: Literal["official", "paper"] = (
        "official"  # "official" per-profile uniformity | "paper" Eq. 7 across an entity's profiles
    )
    reg_temperature: float = 0.2  # τ of Ω (hard-coded 0.2 in the code; paper default)
    env_reduce: Literal["sum", "mean"] = "sum"  # "sum" of environment risks (code) | "mean"
    mixing: bool = True  # False = ablation "w/o mixing": mean-pooled profiles in training too
    align_weight: float = 0.0  # λ1 (0 in the pairwise code; 1.0 for generative bases, Eq. 11)
    align_temperature: float = 0.2  # τ of the discriminative alignment InfoNCE
    align_beta: float = 0.5  # β of Eq. 11 (weight of the N(0, I) prior term)
    align_form: Literal["mddm", "added"] = (
        "mddm"  # generative Eq. 11: "mddm" (DMRec-M code form) | "added" (see module doc)
    )
    hidden_dim: int | None = None  # mapping width; None = profile_maps.mapping_width(d_text, side_dim), set by
    #                                resolve once the bank is known (generative bases: 600, DMRec's meta-network)
    agg: Literal["sum", "mean"] = "sum"  # generative aggregation of item profiles: "sum" (DMRec) | "mean"
    profiles: tuple[int, ...] | None = None  # profile subset (ablation: (0,) = original only); None = all K

    def validate(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"num_envs: must be >= 1, got {self.num_envs}")


def profile_spread(p: Tensor, temperature: float) -> Tensor:
    """Paper Eq. 7 averaged over entities: p [K, n, D] -> scalar."""
    p = F.normalize(p, dim=-1).transpose(0, 1)  # [n, K, D]
    sim = torch.exp(p @ p.transpose(1, 2) / temperature)  # [n, K, K]
    off = sim.sum(-1) - torch.diagonal(sim, dim1=1, dim2=2)  # Σ_{k'≠k}
    return torch.log1p(math.exp(1.0 / temperature) * off).sum(-1).mean()


def infonce_in_batch(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Mean InfoNCE of a_i -> b_i with the other rows of b as negatives. a, b: [(E,) n, D] (broadcast) -> [(E)]."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2) / temperature  # [(E,) n, n]
    return (torch.logsumexp(logits, -1) - torch.diagonal(logits, dim1=-2, dim2=-1)).mean(-1)


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) summed over dims, batch mean. All [(E,) B, d] (broadcast) -> [(E)]."""
    kl = 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1)
    return kl.sum(-1).mean(-1)


class ProEx(Plugin):
    name = "proex"
    Config = ProExConfig
    needs_profiles = True
    uses_distinct = True

    def __init__(self, model, cfg: ProExConfig, bank: ProfileBank):
        super().__init__(model)
        self.cfg = cfg
        bank = bank.subset(cfg.profiles) if cfg.profiles else bank
        bank.check(model.n_users, model.n_items, where=bank.path or "profile bank")
        self.tables = ProfileTables(bank)
        self.generative = model.family == "generative"
        if self.generative:
            self.map = AggregateMap(self.tables.dim, model.side_dim, cfg.hidden_dim, cfg.agg)
        else:
            self.map = DirectMap(self.tables.dim, model.side_dim, cfg.hidden_dim)
        self.align_weight, self.inv_weight = cfg.align_weight, cfg.inv_weight

    # --- environments ----------------------------------------------------------------------------------
    def env_weights(self) -> Tensor:
        """[E, K] mixing weights: Dirichlet(α·1_K) per environment, or 1/K everywhere without mixing."""
        k, e = self.tables.k, self.cfg.num_envs
        dev = self.tables.user.device
        if not self.cfg.mixing or k == 1:
            return torch.full((e, k), 1.0 / k, device=dev)
        # validate_args=False: the argument check would wait on the GPU every batch.
        alpha = torch.full((k,), self.cfg.alpha, device=dev)
        return torch.distributions.Dirichlet(alpha, validate_args=False).sample((e,))

    def _reduce(self, risks: Tensor) -> dict[str, Tensor]:
        out = {"risk": risks.sum() if self.cfg.env_reduce == "sum" else risks.mean()}
        if self.inv_weight > 0 and risks.numel() > 1:
            out["inv"] = self.inv_weight * risks.var(unbiased=True)
        return out

    def _omega(self, users: Tensor, pos: Tensor) -> Tensor:
        """Ω on mapped profiles of unique users and unique positive items, each [K, n, D]."""
        t = self.cfg.reg_temperature
        if self.cfg.reg_form == "paper":
            return profile_spread(users, t) + (profile_spread(pos, t) if pos is not None else 0.0)
        return uniformity(users, t) + (uniformity(pos, t) if pos is not None else 0.0)

    # --- training --------------------------------------------------------------------------------------
    def loss_terms(self, batch) -> dict[str, Tensor]:
        enc = self.model.encode(batch)
        terms = self._pairwise(batch, enc.state) if not self.generative else self._generative(batch, enc.state)
        return {**enc.losses, **terms}

    def _pairwise(self, batch: PairBatch, state) -> dict[str, Tensor]:
        rows = batch.distinct()
        n_u = rows.users.numel()
        # The batch's distinct users and items mapped in one call: [K, n_u + n_i, D].
        mapped = self.map(self.tables.rows[:, torch.cat([rows.users, rows.items + self.tables.n_users])])
        k, n, d = mapped.shape
        pu, pi = mapped.split([n_u, rows.items.numel()], dim=1)
        w = self.env_weights()
        # The E mixtures (Eq. 8) of all those rows in one product, [E, n_u + n_i, D], then each triple's rows
        # for all environments at once: side.user [E, B, D], side.item [E, 2B, D].
        mixed = (w @ mapped.reshape(k, n * d)).view(-1, n, d)
        side = Side(user=mixed[:, rows.user_inv], item=mixed[:, rows.item_inv + n_u])
        risks = sum(self.model.risk(batch, state, side).values())  # [E]: pairwise risks broadcast over E
        if self.align_weight > 0:
            risks = risks + self.align_weight * self._align_pairwise(batch, state, side)
        out = self._reduce(risks)
        if self.cfg.reg_weight > 0:
            out["profile_reg"] = self.cfg.reg_weight * self._omega(pu, pi[:, rows.pos])
        return out

    def _align_pairwise(self, batch: PairBatch, state, side: Side) -> Tensor:
        """In-environment InfoNCE between the ID representations and the mixed profiles of the batch's users,
        positives and negatives: side.user [E, B, D], side.item [E, 2B, D] -> [E]."""
        t, b = self.cfg.align_temperature, batch.users.numel()
        items = state.items[batch.items]
        return (
            infonce_in_batch(state.users[batch.users], side.user, t)
            + infonce_in_batch(items[:b], side.item[..., :b, :], t)
            + infonce_in_batch(items[b:], side.item[..., b:, :], t)
        )

    def _generative(self, batch: UserBatch, state) -> dict[str, Tensor]:
        mu_k, logvar_k = self.map(self.tables, batch).chunk(2, dim=-1)  # [K, B, d] each
        w = self.env_weights()
        # Eq. 9 for all environments at once, [E, B, d]; the model's risk broadcasts over E and returns [E].
        mu_e = torch.einsum("ek,kbd->ebd", w, mu_k)
        logvar_e = torch.log(torch.einsum("ek,kbd->ebd", w, logvar_k.exp()) + 1e-8)
        side = Side(user=torch.cat([mu_e, logvar_e], -1))
        out = self._reduce(sum(self._aligned_risk(batch, state, side, mu_e, logvar_e).values()))
        if self.cfg.reg_weight > 0:
            out["profile_reg"] = self.cfg.reg_weight * self._omega(mu_k, None)
        return out

    def _aligned_risk(self, batch: UserBatch, state, side: Side, mu_env: Tensor, logvar_env: Tensor) -> dict:
        """The model's risk plus Eq. 11 (see the module doc for the two forms), [E] for all environments at once
        (mu_env, logvar_env [E, B, d]; side.user [E, B, 2d])."""
        risk = self.model.risk(batch, state, side)
        lam, beta = self.align_weight, self.cfg.align_beta
        if lam <= 0:
            return risk
        if self.cfg.align_form == "added":
            zero = torch.zeros_like(state.mu)
            risk["align"] = lam * (
                (1 - beta) * gaussian_kl(state.mu, state.logvar, mu_env, logvar_env)
                + beta * gaussian_kl(state.mu, state.logvar, zero, zero)
            )
            return risk
        mu, logvar = fuse(state, side)
        risk["kl"] = beta * risk["kl"]
        risk["align"] = lam * (1 - beta) * gaussian_kl(mu, logvar, mu_env, logvar_env)
        return risk

    # --- inference -------------------------------------------------------------------------------------
    @torch.no_grad()
    def pooled(self, table: Tensor, chunk: int = 8192) -> Tensor:
        """(1/K) Σ_k f(c_k) for every row of a [K, n, d_text] table, in chunks: [n, D]."""
        return torch.cat([self.map(table[:, s : s + chunk]).mean(0) for s in range(0, table.shape[1], chunk)])

    def scorer(self) -> Scorer:
        model = self.model
        if not self.generative:
            state = model.encode(None).state
            pu, pi = self.pooled(self.tables.user), self.pooled(self.tables.item)
            return model.score_tables(state, Side(user=pu, item=pi))

        def score(batch: UserBatch) -> Tensor:
            mu_k, logvar_k = self.map(self.tables, batch).chunk(2, dim=-1)
            side = torch.cat([mu_k.mean(0), torch.log(logvar_k.exp().mean(0) + 1e-8)], -1)
            return model.score(batch, model.encode(batch).state, Side(user=side))

        return score
