"""DMRec (GODM / CPDM / MDDM) as single-profile plug-ins for the generative bases
(official code: BlueGhostYi/ProRec encoder/models/general_cf/{mult_vae,cvga}_{godm,cpdm,mddm}.py).

Per training batch of users (ProRec mult_vae_*.py):
  1. the model's collaborative posterior (μ_src, logσ²_src) [B, d] (`encode`);
  2. the probabilistic meta-network over ONE profile (config `profile`, default 0 = original): g = x̃ W_I + w_u
     [B, d_text] with x̃ the dropout-masked binary rows (×1/(1−p) like nn.Dropout), W_I the item profiles and
     w_u the user's profile; f(g) = Linear(d_text -> 600) -> tanh -> Linear(600 -> 2d) = [μ_llm ‖ logσ²_llm]
     (`AggregateMap` with K = 1, default PyTorch init as in the code);
  3. fusion at the posterior via the model's `risk(batch, state, Side(user=[μ_llm ‖ logσ²_llm]))`:
     μ = μ_src + μ_llm, logσ² = logσ²_src + logσ²_llm, giving {"rec": NLL, "kl": KL₀ of the FUSED posterior};
  4. the matching term of the variant (ProRec mult_vae_*.py), with KL(N(a, e^A) ‖ N(b, e^B)) computed as coded:
     −½ mean_B Σ_d [1 + log(e^A/(e^B+ε) + ε) − (a−b)²/(e^B+ε) − e^A/(e^B+ε)], ε = 1e-7:
       GODM: + β · mean_B sqrt(‖μ_src − μ_llm‖² + ‖σ_src − σ_llm‖² + ε)   (UNFUSED pair, 2-Wasserstein);
       CPDM: + β · [KL(N(μ, σ²) ‖ N_mix) + KL(N(μ_llm, σ²_llm) ‖ N_mix)],  N_mix = ((μ+μ_llm)/2, (logσ²+logσ²_llm)/2),
             FUSED (μ, σ²);
       MDDM: KL₀ is reweighted to β·KL₀ (the "kl" entry of risk) + (1 − β) · KL(N(μ, σ²) ‖ N(μ_llm, σ²_llm)), FUSED.
Inference: z = μ_src + μ_llm with the meta-network on the undropped rows; scores = the decoder (model.score).

Dropout mask of x̃: the code applies ONE nn.Dropout to x and feeds the result to both the Mult-VAE encoder and the
meta-network. Our Mult-VAE draws its mask inside `encode`, so for multvae the plug-in replays the same draw
(`torch.random.fork_rng` around an identical `row_values` call just before `encode`): the masks are identical.
For CVGA (and L-DiffRec) the code's meta-network drops the batch rows separately from the encoder (which
drops its output), so an independent mask with the model's `dropout` is drawn.

Bases: Mult-VAE and CVGA as in the code. Mult-VAE's own defaults are the DMRec-code variant (ProRec mult_vae_*.py: no
input normalisation, KL weight fixed at 1, default init, dropout 0.3, steam 0.2), so DMRec changes none.
L-DiffRec [inferred, no reference code]: accepted, with its own risk ({"elbo", "rec", "kl"}); "KL₀" is then
its annealed KL as the model weights it. A generative model whose risk has no "kl" entry raises for MDDM.
Σ‖θ‖²: the VAE configs have no reg_weight (the DMRec yml's is unused), so the Trainer adds none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..models.base import Side, UserBatch
from ..models.generative import fuse, row_values, sparse_rows_linear
from ..profiles.bank import ProfileBank
from .base import Plugin, Scorer
from .profile_maps import AggregateMap
from .rlmrec import single_profile

Variant = Literal["godm", "cpdm", "mddm"]


def kl_gauss(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor, eps: float = 1e-7) -> Tensor:
    """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) as the DMRec code computes it (ε in the divisions and the log),
    summed over dims, batch mean. All [B, d] -> scalar."""
    var_q, var_p = logvar_q.exp(), logvar_p.exp() + eps
    inner = 1 + torch.log(var_q / var_p + eps) - (mu_q - mu_p).pow(2) / var_p - var_q / var_p
    return (-0.5 * inner.sum(-1)).mean()


def wasserstein2(mu_a: Tensor, logvar_a: Tensor, mu_b: Tensor, logvar_b: Tensor, eps: float = 1e-7) -> Tensor:
    """GODM: mean_B sqrt(‖μ_a − μ_b‖² + ‖σ_a − σ_b‖² + ε), the closed-form W2 of diagonal Gaussians.

    [B, d] -> scalar."""
    sd = torch.exp(0.5 * logvar_a) - torch.exp(0.5 * logvar_b)
    return torch.sqrt((mu_a - mu_b).pow(2).sum(-1) + sd.pow(2).sum(-1) + eps).mean()


@dataclass
class DMRecConfig:
    variant: Variant = "godm"  # matching term (fixed by the registered name)
    beta: float = 0.4  # β of the matching term (GODM amazon; per variant and dataset in proex.reference)
    profile: int = 0  # which profile of the bank (0 = original RLMRec/DMRec profile)
    hidden_dim: int = 600  # meta-network width (code: 600)
    eps: float = 1e-7  # ε of the KL and W2 terms (code: 10e-8)

    def validate(self) -> None:
        if self.variant == "mddm" and not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta: MDDM needs beta in [0, 1], got {self.beta}")


class DMRec(Plugin):
    """DMRec on a generative base; see the module doc. Registered through the three variant subclasses."""

    name = "dmrec"
    Config = DMRecConfig
    needs_profiles = True

    @classmethod
    def refusal(cls, model_cls) -> str | None:
        if model_cls.family != "generative":
            return (
                f"{cls.name}: DMRec needs a generative model (multvae, cvga, ldiffrec); "
                f"{model_cls.name!r} is {model_cls.family}. Use rlmrec_con/rlmrec_gen or proex for it."
            )
        return None

    def __init__(self, model, cfg: DMRecConfig, bank: ProfileBank):
        super().__init__(model)
        self.cfg = cfg
        self.tables = single_profile(bank, cfg.profile, model, self.name)
        self.map = AggregateMap(self.tables.dim, model.side_dim, cfg.hidden_dim, agg="sum")
        self.dropout = float(getattr(model.cfg, "dropout", 0.0))
        self.shared_mask = model.name == "multvae"  # the code's one nn.Dropout feeds encoder and meta-network

    # --- pieces ------------------------------------------------------------------------------------------
    def meta(self, batch: UserBatch, values: Tensor | None) -> Tensor:
        """[μ_llm ‖ logσ²_llm] [B, 2d] = f(x̃ W_I + w_u); values: [nnz] of x̃ (None = the undropped rows)."""
        g = sparse_rows_linear(batch, self.tables.item[0], None, values) + self.tables.user[0, batch.users]
        return self.map.net(g)

    def encode_with_mask(self, batch: UserBatch):
        """(Encoded, x̃ values [nnz] or None): the model's encode and the meta-network's dropped row values."""
        if not self.training or self.dropout <= 0:
            return self.model.encode(batch), None
        if not self.shared_mask:
            return self.model.encode(batch), row_values(batch, False, self.dropout, True)
        dev = batch.nz[0].device
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [], device_type=dev.type):
            values = row_values(batch, False, self.dropout, True)  # the draw MultVAE.encode is about to make
        return self.model.encode(batch), values

    def matching(self, state, llm: Tensor, risk: dict[str, Tensor]) -> dict[str, Tensor]:
        """The variant's matching term(s); may reweight risk["kl"] (MDDM). Returns the loss dict."""
        c, out = self.cfg, dict(risk)
        mu_llm, logvar_llm = llm.chunk(2, dim=-1)
        mu, logvar = fuse(state, Side(user=llm))
        if c.variant == "godm":
            out["match"] = c.beta * wasserstein2(state.mu, state.logvar, mu_llm, logvar_llm, c.eps)
        elif c.variant == "cpdm":
            mu_mix, logvar_mix = (mu + mu_llm) / 2, (logvar + logvar_llm) / 2
            out["match"] = c.beta * (
                kl_gauss(mu, logvar, mu_mix, logvar_mix, c.eps)
                + kl_gauss(mu_llm, logvar_llm, mu_mix, logvar_mix, c.eps)
            )
        else:
            if "kl" not in out:
                raise ValueError(
                    f"{self.name}: MDDM reweights the model's KL term, but {self.model.name!r}'s risk "
                    f"has no 'kl' entry (it has {sorted(out)})"
                )
            out["kl"] = c.beta * out["kl"]
            out["match"] = (1 - c.beta) * kl_gauss(mu, logvar, mu_llm, logvar_llm, c.eps)
        return out

    # --- the plug-in interface ---------------------------------------------------------------------------
    def loss_terms(self, batch: UserBatch) -> dict[str, Tensor]:
        enc, values = self.encode_with_mask(batch)
        llm = self.meta(batch, values)
        risk = self.model.risk(batch, enc.state, Side(user=llm))
        return {**enc.losses, **self.matching(enc.state, llm, risk)}

    def scorer(self) -> Scorer:
        model = self.model

        def score(batch: UserBatch) -> Tensor:
            llm = self.map(self.tables, batch)[0]  # [B, 2d], no dropout at test
            return model.score(batch, model.encode(batch).state, Side(user=llm))

        return score


@dataclass
class GODMConfig(DMRecConfig):
    variant: Variant = "godm"
    beta: float = 0.4  # amazon (yelp 0.8, steam 1.0)


@dataclass
class CPDMConfig(DMRecConfig):
    variant: Variant = "cpdm"
    beta: float = 0.2  # amazon (yelp 0.9, steam 0.6)


@dataclass
class MDDMConfig(DMRecConfig):
    variant: Variant = "mddm"
    beta: float = 0.6  # amazon (yelp 0.4, steam 0.5)


class DMRecG(DMRec):
    """GODM: 2-Wasserstein matching of the unfused collaborative and language posteriors."""

    name, Config = "dmrec_g", GODMConfig


class DMRecC(DMRec):
    """CPDM: both posteriors matched to their common (geometric-mean) Gaussian."""

    name, Config = "dmrec_c", CPDMConfig


class DMRecM(DMRec):
    """MDDM: β·KL(q ‖ N(0, I)) + (1 − β)·KL(q ‖ language posterior)."""

    name, Config = "dmrec_m", MDDMConfig
