"""L-DiffRec (Wang et al., SIGIR'23) with n_cate = 1, the paper's second generative base
(paper A.2.3; official code YiyanXu/DiffRec:L-DiffRec).

A VAE compressor plus a Gaussian diffusion on its latent:
  * AE encoder: dropout_0.1(x) -> Linear(I -> 2·300) -> tanh -> (μ, logσ²) [B, 300] each (both tanh-bounded);
    z0 = μ + σ ε in training, μ at eval; decoder Linear(300 -> I) logits. Xavier-normal weights, zero biases.
  * Denoiser: ẑ0 = Linear(300 -> 300)(tanh(Linear(310 -> 300)([dropout_0.5(z_t) ‖ Linear(10 -> 10)(sin10(t))]))),
    predicting x0 ("cat" time embedding, norm False).
  * Diffusion: linear-var schedule with T = 5; importance-sampled t; x0-MSE weighted by SNR(t-1) - SNR(t)
    (reweight); the decoder is applied to the PREDICTED ẑ0; total = λ·elbo + NLL + anneal·KL.
  * Inference: z_T := μ (no noise), z <- posterior mean(DNN(z, t), z, t) for t = T-1..0, scores = Dec(z).

Interface: `encode` gives the AE posterior, which is the fusion point (side vectors are added to μ and logσ²,
as VAEModel's `fuse`; side_dim = 2·300). `risk` returns {"elbo": λ·elbo, "rec": NLL, "kl": anneal·KL}, whose
sum is the official loss. Two AdamW optimisers with wd 0 (== Adam) become two Adam groups (`param_groups`)
with the config's lr1 (AE) and lr2 (DNN); the trainer's lr is ignored for this model.

Counters (buffers, so checkpoints carry them): `vae_updates` counts batches (advanced in `encode`, once per
batch even when a plug-in calls `risk` per environment); `epochs_done` counts epochs (`on_epoch_end`);
`lt_history`/`lt_count` hold the last 10 losses per step for importance sampling (updated by every training
`risk` call). Departures from the official code: reweight=False runs the "elbo + λ·vae" branch with unit
weights (the official branch crashes, DiffRec L-DiffRec); batches are 1024 users (protocol ProRec generative
trainer), not 400; evaluation masks train items only (RLMRec trainer/metrics.py). noise_scale must be > 0 (the
official no-noise path is not kept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.tensors import TrainData
from .base import Encoded, LatentState, Side, UserBatch
from .generative import VAEModel, fuse, kl_standard_normal, multinomial_nll, reparameterize


@dataclass
class LDiffRecConfig:
    latent_dim: int = 300  # AE latent width (in_dims [300], DiffRec inference.py; side_dim = 2·300)
    dropout: float = 0.1  # AE input dropout (Autoencoder default dropout=0.1)
    corrupted_target: bool = True  # reconstruct the dropout-corrupted input (official AE quirk); False = clean row
    reparam: bool = True  # z0 = μ + σε in training (main.py --reparam True)
    mlp_dim: int = 300  # denoiser hidden width (mlp_dims [300])
    emb_size: int = 10  # sinusoidal time-embedding size (emb_size 10; paper A.2.3)
    dnn_dropout: float = 0.5  # dropout on z_t inside the denoiser (DNN default dropout=0.5)
    steps: int = 5  # diffusion steps T (inference.py amazon-book/yelp; paper A.2.3 {5, 40, 100})
    noise_scale: float = 0.5  # linear-var schedule scale (inference.py amazon-book 0.5; yelp 0.01)
    noise_min: float = 0.001  # variance at t = 0 is noise_scale·noise_min (amazon-book 0.001; yelp 0.005)
    noise_max: float = 0.005  # variance at t = T-1 is noise_scale·noise_max (amazon-book 0.005; yelp 0.01)
    history: int = 10  # losses kept per step; importance sampling once every step has this many (history_num_per_term)
    uniform_prob: float = 0.001  # uniform mass mixed into p_t (sample_timesteps uniform_prob)
    reweight: bool = True  # SNR-difference x0 weights, total = λ·elbo + vae (the only branch the official code runs)
    lamda: float = 0.05  # initial λ on the diffusion elbo (inference.py amazon-book 0.05; yelp 0.03)
    anneal_steps: int = 500  # λ decays linearly to anneal_cap over this many EPOCHS (main.py anneal_steps)
    anneal_cap: float = 0.005  # floor of λ (main.py anneal_cap)
    vae_anneal_cap: float = 0.3  # cap of the KL weight (main.py vae_anneal_cap)
    vae_anneal_steps: int = 200  # KL weight = min(cap, BATCHES / this) (main.py vae_anneal_steps)
    lr1: float = 5e-4  # AE learning rate (inference.py amazon-book/yelp lr1)
    lr2: float = 1e-4  # denoiser learning rate (inference.py amazon-book/yelp lr2)


def linear_var_betas(scale: float, lo: float, hi: float, steps: int, max_beta: float = 0.999) -> np.ndarray:
    """β [T] of the linear-var schedule: 1 - ᾱ_t = linspace(scale·lo, scale·hi, T), β_0 = 1 - ᾱ_0,
    β_t = min(1 - ᾱ_t / ᾱ_{t-1}, max_beta) (gaussian_diffusion.betas_from_linear_variance)."""
    abar = 1.0 - np.linspace(scale * lo, scale * hi, steps, dtype=np.float64)
    betas = np.concatenate([[1.0 - abar[0]], np.minimum(1.0 - abar[1:] / abar[:-1], max_beta)])
    if not ((betas > 0).all() and (betas <= 1).all()):
        raise ValueError(
            f"L-DiffRec noise schedule gives betas outside (0, 1]: {betas}; need "
            "noise_scale > 0 and 0 < noise_min < noise_max (or equal with steps = 1)"
        )
    return betas


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """[cos(t·f) ‖ sin(t·f)] with f_k = max_period^{-k/half}, zero-padded to dim. t: [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float().unsqueeze(1) * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim - 2 * half))


class Denoiser(nn.Module):
    """The DNN of L-DiffRec (mlp_dims [300], time_type "cat", tanh). forward(z_t [B, d], t [B]) -> ẑ0 [B, d].
    Init as the official DNN: weights N(0, 2/(fan_in + fan_out)), biases N(0, 0.001)."""

    def __init__(self, d: int, hidden: int, emb_size: int, dropout: float):
        super().__init__()
        self.emb_size = emb_size
        self.emb = nn.Linear(emb_size, emb_size)
        self.inp = nn.Linear(d + emb_size, hidden)
        self.out = nn.Linear(hidden, d)
        self.drop = nn.Dropout(dropout)
        for layer in (self.emb, self.inp, self.out):
            fan_out, fan_in = layer.weight.shape
            nn.init.normal_(layer.weight, std=math.sqrt(2.0 / (fan_in + fan_out)))
            nn.init.normal_(layer.bias, std=0.001)

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        h = torch.cat([self.drop(z), self.emb(timestep_embedding(t, self.emb_size))], dim=-1)
        return self.out(torch.tanh(self.inp(h)))


class LDiffRec(VAEModel):
    name = "ldiffrec"
    Config = LDiffRecConfig

    def __init__(self, cfg: LDiffRecConfig, data: TrainData):
        super().__init__(cfg, data)
        d, dev = cfg.latent_dim, data.device
        self.enc = nn.Linear(self.n_items, 2 * d)
        self.dec = nn.Linear(d, self.n_items)
        for layer in (self.enc, self.dec):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.dnn = Denoiser(d, cfg.mlp_dim, cfg.emb_size, cfg.dnn_dropout)
        betas = torch.as_tensor(linear_var_betas(cfg.noise_scale, cfg.noise_min, cfg.noise_max, cfg.steps), device=dev)
        abar = torch.cumprod(1.0 - betas, 0)
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        snr = abar / (1.0 - abar)
        weight = torch.cat([snr.new_ones(1), snr[:-1] - snr[1:]])  # SNR(t-1) - SNR(t), 1 at t = 0
        schedule = {  # float64 like the official code; cast to float32 where used
            "betas": betas,
            "alphas_cumprod": abar,
            "alphas_cumprod_prev": abar_prev,
            "sqrt_alphas_cumprod": abar.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - abar).sqrt(),
            "posterior_mean_coef1": betas * abar_prev.sqrt() / (1.0 - abar),
            "posterior_mean_coef2": (1.0 - abar_prev) * (1.0 - betas).sqrt() / (1.0 - abar),
            "step_weight": weight,
        }
        for name, value in schedule.items():
            self.register_buffer(name, value)
        self.register_buffer("lt_history", torch.zeros(cfg.steps, cfg.history, dtype=torch.float64, device=dev))
        self.register_buffer("lt_count", torch.zeros(cfg.steps, dtype=torch.long, device=dev))
        self.register_buffer("vae_updates", torch.zeros((), dtype=torch.long, device=dev))  # batches seen
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long, device=dev))  # epochs finished

    # --- schedules ---------------------------------------------------------------------------------
    def lamda(self) -> float:
        """λ = max((1 - epochs/anneal_steps)·lamda, anneal_cap) (main.py; counts EPOCHS)."""
        c = self.cfg
        if c.anneal_steps <= 0:
            return max(c.lamda, c.anneal_cap)
        return max((1.0 - float(self.epochs_done) / c.anneal_steps) * c.lamda, c.anneal_cap)

    def vae_anneal(self) -> float:
        """KL weight min(vae_anneal_cap, batches / vae_anneal_steps) (main.py; counts BATCHES)."""
        c = self.cfg
        if c.vae_anneal_steps <= 0:
            return c.vae_anneal_cap
        return min(c.vae_anneal_cap, float(self.vae_updates) / c.vae_anneal_steps)

    def on_epoch_end(self, epoch: int) -> None:
        self.epochs_done.fill_(epoch + 1)

    def param_groups(self, lr: float) -> list[dict]:
        """AE (encoder + decoder) at cfg.lr1, denoiser at cfg.lr2; `lr` is not used (two optimisers, DiffRec
        L-DiffRec)."""
        ae = [p for n, p in self.named_parameters() if not n.startswith("dnn.")]
        return [{"params": ae, "lr": self.cfg.lr1}, {"params": list(self.dnn.parameters()), "lr": self.cfg.lr2}]

    # --- importance sampling of t ------------------------------------------------------------------
    def sample_steps(self, n: int) -> tuple[Tensor, Tensor]:
        """(t [n] int64, p_t·T [n] float32): uniform until every step has `history` losses, then
        p_t ∝ sqrt(E[L_t²]) mixed with uniform_prob uniform mass (sample_timesteps 'importance')."""
        T, dev = self.cfg.steps, self.lt_count.device
        if not bool((self.lt_count == self.cfg.history).all()):
            return torch.randint(0, T, (n,), device=dev), torch.ones(n, device=dev)
        rms = self.lt_history.pow(2).mean(-1).sqrt()
        p = rms / rms.sum() * (1.0 - self.cfg.uniform_prob) + self.cfg.uniform_prob / T
        t = torch.multinomial(p, n, replacement=True)
        return t, (p[t] * T).float()

    @torch.no_grad()
    def record_losses(self, t: Tensor, losses: Tensor) -> None:
        """Append per-sample losses [n] to the history of their step t [n], keeping the last `history`
        (same result as the official per-sample loop; a loop over the T steps only)."""
        for s in range(self.cfg.steps):
            new = losses[t == s].to(self.lt_history.dtype)
            if new.numel() == 0:
                continue
            merged = torch.cat([self.lt_history[s, : int(self.lt_count[s])], new])[-self.cfg.history :]
            self.lt_history[s, : merged.numel()] = merged
            self.lt_count[s] = merged.numel()

    # --- the interface -----------------------------------------------------------------------------
    def encode(self, batch: UserBatch) -> Encoded:
        """AE posterior (μ, logσ²) [B, d] of dropout(rows); extra: the reconstruction target [B, I] and the
        KL weight of this batch (read before the batch counter advances, as main.py)."""
        x = batch.rows
        x_drop = F.dropout(x, self.cfg.dropout, self.training)
        # x_drop W^T + b as a sparse product (~1% dense rows): same value as self.enc(x_drop), ~2x cheaper.
        h = torch.sparse.mm(x_drop.to_sparse(), self.enc.weight.t()) + self.enc.bias
        mu, logvar = torch.tanh(h).chunk(2, dim=-1)
        extra = {"target": x_drop if self.cfg.corrupted_target else x, "anneal": self.vae_anneal()}
        if self.training:
            self.vae_updates += 1
        return Encoded(LatentState(mu, logvar, extra))

    def risk(self, batch: UserBatch, state: LatentState, side: Side | None = None) -> dict[str, Tensor]:
        """One diffusion training step on the (fused) AE latent plus the AE losses (main.py training loop).
        With side.user [E, B, 2d] the E environments' latents are diffused together as E·B samples (each with
        its own step t) and every loss is [E]; their per-step losses enter the history in environment order."""
        c = self.cfg
        mu, logvar = fuse(state, side)
        z0 = reparameterize(mu, logvar, self.training and c.reparam)  # [(E,) B, d]
        lead, z0 = z0.shape[:-1], z0.reshape(-1, z0.shape[-1])  # [N, d], N = (E·)B
        t, pt = self.sample_steps(z0.shape[0])
        z_t = self.sqrt_alphas_cumprod[t].float().unsqueeze(1) * z0 + self.sqrt_one_minus_alphas_cumprod[
            t
        ].float().unsqueeze(1) * torch.randn_like(z0)
        z0_hat = self.dnn(z_t, t)
        mse = (z0 - z0_hat).pow(2).mean(-1)  # [N]
        per = self.step_weight[t].float() * mse if c.reweight else mse
        if self.training:
            self.record_losses(t, per.detach())
        elbo = (per / pt).view(lead).mean(-1)
        rec = multinomial_nll(self.dec(z0_hat.view(*lead, -1)), state.extra["target"])
        kl = state.extra["anneal"] * kl_standard_normal(mu, logvar)
        lam = self.lamda()
        if c.reweight:
            return {"elbo": lam * elbo, "rec": rec, "kl": kl}
        return {"elbo": elbo, "rec": lam * rec, "kl": lam * kl}

    def score(self, batch: UserBatch, state: LatentState, side: Side | None = None) -> Tensor:
        """Deterministic T-step denoising from z_T := μ (fused), then Dec: [B, I] logits (p_sample, steps 0)."""
        z, _ = fuse(state, side)
        for s in reversed(range(self.cfg.steps)):
            t = torch.full((z.shape[0],), s, dtype=torch.long, device=z.device)
            z0_hat = self.dnn(z, t)
            z = self.posterior_mean_coef1[s].float() * z0_hat + self.posterior_mean_coef2[s].float() * z
        return self.dec(z)

    def decode(self, z: Tensor) -> Tensor:
        return self.dec(z)
