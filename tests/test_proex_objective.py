"""ProEx's objective recomputed by hand on a real training batch: λ2·Ω over the batch's distinct users and
distinct positive items (both reg_form values), the generative mixing of Eq. 9, and one Dirichlet weight row
per environment. The hand versions loop over entities and profiles in float64 from the mapped profiles, so
they share no code with the plug-in beyond the profile map itself."""

import math

import numpy as np
import pytest
import torch
from conftest import plugin_system

from proex.data.sampling import bpr_batches, user_batches
from proex.models import Side

TAU = 0.2


def _official_omega(p: np.ndarray, tau: float) -> float:
    """Σ_k mean_i −log(e^{1/τ} / Σ_j e^{x̂_i·x̂_j/τ} + 1e-5) for mapped profiles p [K, n, D]
    (BlueGhostYi/ProRec lightgcn_proex.py, one profile at a time)."""
    total = 0.0
    for k in range(p.shape[0]):
        x = p[k] / np.linalg.norm(p[k], axis=1, keepdims=True)
        rows = [
            -math.log(math.exp(1 / tau) / sum(math.exp(x[i] @ x[j] / tau) for j in range(len(x))) + 1e-5)
            for i in range(len(x))
        ]
        total += sum(rows) / len(rows)
    return total


def _paper_omega(p: np.ndarray, tau: float) -> float:
    """Paper Eq. 7, Σ_k log(1 + e^{1/τ} Σ_{k'≠k} e^{c̃_k·c̃_k'/τ}) over each entity's own K profiles,
    averaged over the entities of p [K, n, D]."""
    k_, n = p.shape[:2]
    total = 0.0
    for i in range(n):
        c = p[:, i] / np.linalg.norm(p[:, i], axis=1, keepdims=True)
        total += sum(
            math.log(1 + math.exp(1 / tau) * sum(math.exp(c[k] @ c[j] / tau) for j in range(k_) if j != k))
            for k in range(k_)
        )
    return total / n


@pytest.mark.parametrize("form", ["official", "paper"])
def test_profile_reg_is_lambda2_omega_over_the_batch_users_and_positive_items(form, synth):
    inter, bank = synth
    system, data = plugin_system("proex", "lightgcn", inter, bank, reg_form=form, reg_weight=0.3)
    system.train()
    batch = next(iter(bpr_batches(data, 64)))
    got = system.loss_terms(batch)["profile_reg"].item()
    users, pos = torch.unique(batch.users), torch.unique(batch.pos)
    assert len(pos) < len(torch.unique(batch.items))  # negatives exist that Ω must leave out
    with torch.no_grad():
        pu = system.map(system.tables.user[:, users]).double().numpy()  # [K, n_u, D]
        pi = system.map(system.tables.item[:, pos]).double().numpy()  # [K, n_p, D]
    omega = _official_omega if form == "official" else _paper_omega
    want = 0.3 * (omega(pu, TAU) + omega(pi, TAU))
    assert got == pytest.approx(want, rel=1e-4)


def test_generative_profile_reg_is_over_the_batch_users_profile_means(synth):
    inter, bank = synth
    system, data = plugin_system("proex", "multvae", inter, bank, reg_weight=0.5)
    system.train()
    batch = next(iter(user_batches(data, 16)))
    got = system.loss_terms(batch)["profile_reg"].item()
    with torch.no_grad():
        mu_k = system.map(system.tables, batch).chunk(2, dim=-1)[0].double().numpy()  # [K, B, d]
    assert got == pytest.approx(0.5 * _official_omega(mu_k, TAU), rel=1e-4)


def test_generative_mixing_is_eq9(synth, monkeypatch):
    """μ̃^e = Σ_k w_ek μ_k and σ̃^e² = Σ_k w_ek σ_k² (Eq. 9), checked on what the model's risk receives."""
    inter, bank = synth
    system, data = plugin_system("proex", "multvae", inter, bank, num_envs=2, align_weight=0.0)
    system.eval()  # no dropout: the map gives the same μ_k, σ_k² below
    batch = next(iter(user_batches(data, 8)))
    w = torch.tensor([[0.7, 0.1, 0.2, 0.0], [0.05, 0.15, 0.3, 0.5]])
    monkeypatch.setattr(system, "env_weights", lambda: w)
    seen = {}
    risk = system.model.risk

    def capture(b, state, side):
        seen["side"] = side.user.detach()
        return risk(b, state, side)

    monkeypatch.setattr(system.model, "risk", capture)
    system.loss_terms(batch)
    with torch.no_grad():
        mu_k, logvar_k = (t.double().numpy() for t in system.map(system.tables, batch).chunk(2, dim=-1))
    d = mu_k.shape[-1]
    side = seen["side"].double().numpy()  # [E, B, 2d]: [μ̃ ‖ log σ̃²]
    for e in range(2):
        mu = sum(float(w[e, k]) * mu_k[k] for k in range(4))
        var = sum(float(w[e, k]) * np.exp(logvar_k[k]) for k in range(4))
        np.testing.assert_allclose(side[e, :, :d], mu, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.exp(side[e, :, d:]), var + 1e-8, rtol=1e-4)


def test_each_environment_gets_its_own_dirichlet_row(synth, monkeypatch):
    """E = 3 rows per draw, all different; a new draw per batch; and the side vectors the base's risk sees
    differ between environments (the mixtures really use each environment's row)."""
    inter, bank = synth
    system, data = plugin_system("proex", "lightgcn", inter, bank, num_envs=3)
    draws = [system.env_weights() for _ in range(20)]
    for w in draws:
        assert w.shape == (3, 4)
        assert all(not torch.allclose(w[a], w[b]) for a in range(3) for b in range(a + 1, 3))
    assert not any(torch.allclose(draws[0], d) for d in draws[1:])
    seen = {}
    risk = system.model.risk

    def capture(b, state, side: Side):
        seen["user"] = side.user.detach()
        return risk(b, state, side)

    monkeypatch.setattr(system.model, "risk", capture)
    system.train()
    system.loss_terms(next(iter(bpr_batches(data, 32))))
    user = seen["user"]  # [E, B, D]
    assert user.shape[0] == 3
    assert all(not torch.allclose(user[a], user[b]) for a in range(3) for b in range(a + 1, 3))
