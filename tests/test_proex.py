"""ProEx faithfulness: the objective's pieces against the paper's equations on small hand-made tensors,
and the plug-in's behaviour on every base model."""

import math
import pathlib
import re

import numpy as np
import pytest
import torch
from conftest import assert_steps_lower_the_loss, plugin_system

from proex.data.sampling import bpr_batches, user_batches
from proex.data.synthetic import SyntheticConfig, make_synthetic
from proex.data.tensors import TrainData
from proex.experiment import CellConfig, resolve, run_cell
from proex.models import MODELS, Side
from proex.plugins import uniformity as kernels
from proex.plugins.proex import gaussian_kl, infonce_in_batch, profile_spread
from proex.plugins.uniformity import uniformity, uniformity_autograd


def _system(model, inter, bank, **plugin_config):
    return plugin_system("proex", model, inter, bank, **plugin_config)


def _batch(system, data):
    if system.model.family == "pairwise":
        return next(iter(bpr_batches(data, 64)))
    return next(iter(user_batches(data, 16)))


def _zero_map(system):
    last = system.map.net[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)


@pytest.mark.parametrize("name", ["lightgcn", "multvae"])
def test_zero_mapping_gives_no_variance_and_e_times_base_risk(name, synth):
    inter, bank = synth
    system, data = _system(name, inter, bank, num_envs=3, reg_weight=0.0, align_weight=0.0)
    _zero_map(system)
    system.eval()  # no dropout / sampling: every environment sees the same model
    batch = _batch(system, data)
    with torch.no_grad():
        terms = system.loss_terms(batch)
        enc = system.model.encode(batch)
        base = sum(system.model.risk(batch, enc.state, None).values())
    assert terms["inv"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["risk"].item() == pytest.approx(3 * base.item(), rel=1e-5)


def test_zero_mapping_pairwise_side_is_exactly_the_base_model(synth):
    inter, bank = synth
    system, data = _system("gccf", inter, bank)
    _zero_map(system)
    system.eval()
    users = torch.arange(10)
    with torch.no_grad():
        s_proex = system.scorer()(data.user_batch(users, dense=False))
        state = system.model.encode(None).state
        s_base = system.model.score(data.user_batch(users, dense=False), state, None)
    assert torch.allclose(s_proex, s_base)


@pytest.mark.parametrize("name", list(MODELS))
def test_env_batched_risk_equals_one_call_per_environment(name, synth, monkeypatch):
    """Every base's risk takes the E environments' side vectors in one call and returns [E] per loss."""
    inter, bank = synth
    system, data = _system(name, inter, bank)
    model = system.model
    batch = _batch(system, data)
    b, d = batch.users.numel(), model.side_dim
    if model.family == "pairwise":
        side = Side(user=torch.randn(3, b, d), item=torch.randn(3, 2 * b, d))
        per_env = [Side(side.user[e], side.item[e]) for e in range(3)]
    else:
        model.eval()  # z = μ: no sampling noise, so the batched and the looped calls see the same arithmetic
        if name == "ldiffrec":  # its diffusion step draws t and noise even in eval: fix both
            monkeypatch.setattr(model, "sample_steps", lambda n: (torch.full((n,), 2), torch.ones(n)))
            monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
        side = Side(user=torch.randn(3, b, d))
        per_env = [Side(side.user[e]) for e in range(3)]
    state = model.encode(batch).state
    batched = model.risk(batch, state, side)
    for key, value in batched.items():
        each = torch.stack([model.risk(batch, state, s)[key] for s in per_env])
        assert value.shape == (3,) and torch.allclose(value, each, rtol=1e-5, atol=1e-6), key


@pytest.mark.parametrize("plugin", ["proex", "rlmrec_con", "kar"])
def test_epoch_precomputed_distinct_rows_give_the_same_loss(plugin, synth):
    """The sampler's epoch-wide distinct rows (bpr_batches(distinct=True), what the Trainer passes to these
    plug-ins) and torch.unique per batch give the same loss terms and gradients."""
    inter, bank = synth
    system, data = plugin_system(plugin, "lightgcn", inter, bank)
    assert system.uses_distinct
    torch.manual_seed(5)
    batch = next(iter(bpr_batches(data, 64, distinct=True)))
    plain = type(batch)(batch.users, batch.pos, batch.neg)
    results = []
    for b in (batch, plain):
        torch.manual_seed(0)  # the same Dirichlet draw
        system.zero_grad()
        terms = system.loss_terms(b)
        sum(terms.values()).backward()
        results.append(({k: v.detach() for k, v in terms.items()}, [p.grad.clone() for p in system.parameters()]))
    (t1, g1), (t2, g2) = results
    assert t1.keys() == t2.keys() and all(torch.allclose(t1[k], t2[k]) for k in t1)
    assert all(torch.allclose(a, b) for a, b in zip(g1, g2))


def test_pairwise_alignment_adds_each_environments_infonce(synth):
    """align_weight λ1 > 0 (off in the official code): Σ_e risk gains λ1·Σ_e InfoNCE_e, computed per environment
    from the definition (mixing off, so every environment holds the mean-pooled profiles)."""
    inter, bank = synth
    system, data = _system("lightgcn", inter, bank, align_weight=0.5, mixing=False, num_envs=3)
    batch = _batch(system, data)
    with torch.no_grad():
        with_align = system.loss_terms(batch)
        system.align_weight = 0.0
        without = system.loss_terms(batch)
        state = system.model.encode(batch).state
        pooled = system.map(system.tables.rows[:, torch.cat([batch.users, batch.items + inter.n_users])]).mean(0)
        pu, pi = pooled.split([batch.users.numel(), batch.items.numel()])
        items, b = state.items[batch.items], batch.users.numel()
        one_env = (
            infonce_in_batch(state.users[batch.users], pu, 0.2)
            + infonce_in_batch(items[:b], pi[:b], 0.2)
            + infonce_in_batch(items[b:], pi[b:], 0.2)
        )
    gained = with_align["risk"] - without["risk"]
    assert gained.item() == pytest.approx(0.5 * 3 * one_env.item(), rel=1e-4)


def test_dirichlet_weights(synth):
    inter, bank = synth
    system, _ = _system("lightgcn", inter, bank, num_envs=5, alpha=0.1)
    w = torch.stack([system.env_weights() for _ in range(200)])  # [200, E, K]
    assert w.shape == (200, 5, 4)
    assert torch.allclose(w.sum(-1), torch.ones(200, 5), atol=1e-5) and (w >= 0).all()
    assert w.max(-1).values.mean() > 0.7  # α = 0.1: close to one-hot, as the reference notes
    no_mix, _ = _system("lightgcn", inter, bank, mixing=False)
    assert torch.equal(no_mix.env_weights(), torch.full((3, 4), 0.25))


def _mlp_np(net, x: np.ndarray, act) -> np.ndarray:
    """A two-layer MLP evaluated in numpy from the module's weights: W2·act(W1·x + b1) + b2."""
    w1, b1, w2, b2 = (t.detach().double().numpy() for t in (net[0].weight, net[0].bias, net[2].weight, net[2].bias))
    return act(x @ w1.T + b1) @ w2.T + b2


def test_inference_is_mean_pooling_pairwise(synth):
    """Algorithm 2, computed here in numpy: score(u, i) = (e_u + 1/K Σ_k f(c_u^k)) · (e_i + 1/K Σ_k f(c_i^k))."""
    inter, bank = synth
    system, data = _system("lightgcn", inter, bank)
    system.eval()
    users = torch.arange(12)
    with torch.no_grad():
        got = system.scorer()(data.user_batch(users, dense=False)).double().numpy()
        state = system.model.encode(None).state  # the collaborative part (the base model's own test covers it)
    leaky = lambda x: np.where(x > 0, x, 0.01 * x)  # noqa: E731
    k = bank.user.shape[0]
    pu = sum(_mlp_np(system.map.net, np.asarray(bank.user[j], float)[:12], leaky) for j in range(k)) / k
    pi = sum(_mlp_np(system.map.net, np.asarray(bank.item[j], float), leaky) for j in range(k)) / k
    want = (state.users.double().numpy()[:12] + pu) @ (state.items.double().numpy() + pi).T
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_inference_is_mean_pooling_generative(synth):
    """Generative: μ = μ_src + 1/K Σ_k μ_k, μ_k from the meta-network on g_k = Σ_{i ∈ train(u)} c_i^k + c_u^k."""
    inter, bank = synth
    system, data = _system("cvga", inter, bank)
    system.eval()
    users = torch.arange(12)
    batch = data.user_batch(users)
    with torch.no_grad():
        got = system.scorer()(batch)
        mu_src = system.model.encode(batch).state.mu.double().numpy()
    rows = inter.train.toarray()[:12] > 0
    k, d = bank.user.shape[0], mu_src.shape[1]
    mu_llm = np.zeros_like(mu_src)
    for j in range(k):
        g = rows @ np.asarray(bank.item[j], float) + np.asarray(bank.user[j], float)[:12]
        mu_llm += _mlp_np(system.map.net, g, np.tanh)[:, :d] / k
    with torch.no_grad():
        want = system.model.decode(torch.as_tensor(mu_src + mu_llm, dtype=torch.float32))
    assert torch.allclose(got, want, atol=1e-4)


def test_inv_is_lambda3_times_the_unbiased_variance_of_different_environment_risks(synth, monkeypatch):
    """With fixed, different environment weights, each environment's BPR is computed here by hand; the plug-in's
    `inv` must be λ3 · Σ_e (L_e - mean)² / (E - 1) (REx, unbiased) and `risk` Σ_e L_e (official code)."""
    inter, bank = synth
    system, data = _system("lightgcn", inter, bank, reg_weight=0.0)
    w = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0.2, 0.2, 0.1, 0.5]])
    monkeypatch.setattr(system, "env_weights", lambda: w)
    batch = _batch(system, data)
    with torch.no_grad():
        terms = system.loss_terms(batch)
        state = system.model.encode(batch).state
        p_user = torch.stack([system.map(bank_row) for bank_row in torch.as_tensor(bank.user[:])])  # [K, U, D]
        p_item = torch.stack([system.map(bank_row) for bank_row in torch.as_tensor(bank.item[:])])  # [K, I, D]
    risks = []
    for e in range(3):
        hu = (state.users + torch.einsum("k,knd->nd", w[e], p_user))[batch.users].double()
        hi = (state.items + torch.einsum("k,knd->nd", w[e], p_item)).double()
        x = (hu * hi[batch.neg]).sum(1) - (hu * hi[batch.pos]).sum(1)
        risks.append(float(torch.nn.functional.softplus(x).mean()))
    mean = sum(risks) / 3
    assert max(risks) - min(risks) > 1e-3  # the environments really differ
    assert terms["risk"].item() == pytest.approx(sum(risks), rel=1e-5)
    assert terms["inv"].item() == pytest.approx(10.0 * sum((r - mean) ** 2 for r in risks) / 2, rel=1e-4)


def test_uniformity_matches_definition():
    x = torch.randn(5, 3)
    tau = 0.2
    xn = x / x.norm(dim=1, keepdim=True)
    want = 0.0
    for i in range(5):
        denom = sum(math.exp(float(xn[i] @ xn[j]) / tau) for j in range(5))
        want += -math.log(math.exp(1 / tau) / denom + 1e-5)
    assert uniformity(x, tau).item() == pytest.approx(want / 5, rel=1e-5)


def test_uniformity_over_k_profiles_is_the_sum_of_each():
    x = torch.randn(3, 7, 4)  # K = 3 profiles of 7 entities
    want = sum(uniformity(x[k], 0.2) for k in range(3))
    assert uniformity(x, 0.2).item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.parametrize("block", [None, 2, 3])
def test_uniformity_hand_written_gradient_is_autograds(block, monkeypatch):
    """The eager Ω gradient (`_Uniformity.backward`) against numerical differentiation (gradcheck, float64) and
    against autograd through the definition, with one row of norm < 1e-12 (F.normalize's clamped branch);
    with P formed whole (block None) and walked in CPU blocks of 2 or 3 rows (9 and 8 rows: blocks that do not
    divide n leave a last partial block)."""
    if block is not None:
        monkeypatch.setattr(kernels, "CPU_BLOCK", block)
    assert kernels._blocked(torch.empty(8, 4)) == (block is not None)
    x = torch.randn(3, 9, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: uniformity(v, 0.2), (x,))
    y = torch.randn(2, 8, 5, dtype=torch.float64)
    y[1, 3] *= 1e-14
    y.requires_grad_()
    (got,) = torch.autograd.grad(uniformity(y, 0.3), y)
    (want,) = torch.autograd.grad(uniformity_autograd(y, 0.3), y)
    assert torch.allclose(got, want, rtol=1e-10, atol=0.0)
    assert uniformity(y, 0.3).item() == pytest.approx(uniformity_autograd(y, 0.3).item(), rel=1e-12)


def test_profile_spread_matches_eq7():
    p = torch.randn(3, 4, 6)  # K = 3 profiles of 4 entities
    tau = 0.5
    pn = p / p.norm(dim=-1, keepdim=True)
    total = 0.0
    for n in range(4):
        for k in range(3):
            s = sum(math.exp(float(pn[k, n] @ pn[j, n]) / tau) for j in range(3) if j != k)
            total += math.log(1 + math.exp(1 / tau) * s)
    assert profile_spread(p, tau).item() == pytest.approx(total / 4, rel=1e-5)


def test_alignment_terms_match_their_definitions():
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    logits = an @ bn.T / 0.2
    want = sum(-(logits[i, i] - torch.logsumexp(logits[i], 0)) for i in range(6)) / 6
    assert infonce_in_batch(a, b, 0.2).item() == pytest.approx(want.item(), rel=1e-5)
    b_env = torch.randn(3, 6, 4)  # one row block per environment: [E] values, each the 2-D definition
    each = torch.stack([infonce_in_batch(a, b_env[e], 0.2) for e in range(3)])
    assert torch.allclose(infonce_in_batch(a, b_env, 0.2), each, rtol=1e-6)
    mq, lq, mp, lp = (torch.randn(5, 3) for _ in range(4))
    ref = (
        torch.distributions.kl_divergence(
            torch.distributions.Normal(mq, (0.5 * lq).exp()), torch.distributions.Normal(mp, (0.5 * lp).exp())
        )
        .sum(-1)
        .mean()
    )
    assert gaussian_kl(mq, lq, mp, lp).item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("form", ["mddm", "added"])
def test_generative_eq11_in_both_forms(form, synth):
    """mddm: rec + β·KL(q‖N(0,I)) + (1−β)·KL(q‖N(μ̃,σ̃²)) on the FUSED posterior q (DMRec-M code);
    added: the model's risk + (1−β)·KL(q_u‖N(μ̃,σ̃²)) + β·KL(q_u‖N(0,I)) on the collaborative q_u."""
    inter, bank = synth
    system, data = _system("multvae", inter, bank, align_form=form, align_beta=0.3)
    system.eval()
    batch = _batch(system, data)
    state = system.model.encode(batch).state
    mu_env, logvar_env = torch.randn_like(state.mu), torch.randn_like(state.mu)
    side = Side(user=torch.cat([0.1 * torch.randn_like(state.mu), 0.1 * torch.randn_like(state.mu)], -1))
    got = sum(system._aligned_risk(batch, state, side, mu_env, logvar_env).values())
    plain = system.model.risk(batch, state, side)
    zero = torch.zeros_like(state.mu)
    if form == "mddm":
        mu, logvar = state.mu + side.user[:, :200], state.logvar + side.user[:, 200:]
        want = (
            plain["rec"] + 0.3 * gaussian_kl(mu, logvar, zero, zero) + 0.7 * gaussian_kl(mu, logvar, mu_env, logvar_env)
        )
    else:
        want = (
            plain["rec"]
            + plain["kl"]
            + 0.7 * gaussian_kl(state.mu, state.logvar, mu_env, logvar_env)
            + 0.3 * gaussian_kl(state.mu, state.logvar, zero, zero)
        )
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_generative_defaults_follow_the_paper_pairwise_the_code(synth):
    inter, bank = synth
    assert _system("cvga", inter, bank)[0].inv_weight == 1.0  # paper A.2.3
    assert _system("lightgcn", inter, bank)[0].inv_weight == 10.0  # official yml


@pytest.mark.parametrize("name", list(MODELS))
def test_every_base_trains_with_proex(name, synth):
    inter, bank = synth
    system, data = _system(name, inter, bank)
    system.train()
    terms = system.loss_terms(_batch(system, data))
    assert {"risk", "inv", "profile_reg"} <= set(terms)
    loss = sum(terms.values())
    assert torch.isfinite(loss)
    loss.backward()
    assert system.map.net[0].weight.grad is not None and torch.isfinite(system.map.net[0].weight.grad).all()
    # the whole objective, profile terms included, goes down under a few steps on this batch
    assert_steps_lower_the_loss(system, _batch(system, data))
    # and the mapped profiles change what users are recommended: the same system with a zero map (no profile
    # signal at the fusion point) scores differently
    system.eval()
    users = data.user_batch(torch.arange(8))
    with torch.no_grad():
        scores = system.scorer()(users)
        _zero_map(system)
        without = system.scorer()(users)
    assert torch.isfinite(scores).all() and not torch.allclose(scores, without, atol=1e-5)


def test_profile_subset_and_original_only(synth):
    inter, bank = synth
    system, _ = _system("lightgcn", inter, bank, profiles=[0])
    assert system.tables.k == 1 and torch.equal(system.tables.user[0], torch.as_tensor(bank.user[0]))
    terms = system.loss_terms(next(iter(bpr_batches(TrainData(inter), 64))))
    assert terms["inv"].item() == 0.0  # one profile: every environment is the same
    with pytest.raises(ValueError, match="profile subset"):
        _system("lightgcn", inter, bank, profiles=[7])


def test_official_lightgcn_encoder_under_proex_and_overridable():
    r = resolve(CellConfig(model="lightgcn", plugin="proex", profiles="synthetic-latent"))
    assert (r.model_cfg.include_ego, r.model_cfg.keep_rate) == (False, 1.0)
    r = resolve(
        CellConfig(model="lightgcn", plugin="proex", profiles="synthetic-latent", model_config={"include_ego": True})
    )
    assert r.model_cfg.include_ego is True
    assert resolve(CellConfig(model="lightgcn")).model_cfg.include_ego is True  # the base keeps RLMRec's


def test_proex_requires_profiles():
    from proex.config import ConfigError

    with pytest.raises(ConfigError, match="profile bank"):
        resolve(CellConfig(model="lightgcn", plugin="proex"))


def test_run_cell_end_to_end_records_bank(synth):
    inter, _ = synth
    result, _ = run_cell(
        CellConfig(
            dataset="synthetic",
            model="lightgcn",
            plugin="proex",
            profiles="synthetic-latent:k=3",
            train={"epochs": 4, "device": "cpu"},
        ),
        inter,
    )
    assert result.profile_bank and result.config["profiles"] == "synthetic-latent:k=3"
    assert 0 < result.test["recall@20"] <= 1


def test_models_never_import_plugins():
    root = pathlib.Path(__file__).resolve().parents[1] / "proex" / "models"
    for path in root.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(\.\.plugins|proex\.plugins)", text, re.M), path


def test_proex_checkpoint_reloads_with_its_bank(tmp_path):
    from proex import checkpoint

    inter = make_synthetic(SyntheticConfig(n_users=70, n_items=50, seed=2))
    cell = CellConfig(
        dataset="synthetic:n_users=70,n_items=50,seed=2",
        model="cvga",
        plugin="proex",
        profiles="synthetic-latent:k=3,dim=8",
        train={"epochs": 2, "device": "cpu"},
    )
    result, system = run_cell(cell, inter)
    path = str(tmp_path / "ck.pt")
    checkpoint.save(path, system, result.config, inter, profile_bank=result.profile_bank)
    loaded, data, _ = checkpoint.load(path, inter)
    batch = data.user_batch(torch.arange(9))
    system.eval()
    with torch.no_grad():
        assert torch.allclose(system.scorer()(batch), loaded.scorer()(batch))
    with pytest.raises(ValueError, match="profile bank"):
        checkpoint.load(path, inter, profiles="synthetic-latent:k=3,dim=8,seed=5")


def test_reference_kernels_switch_runs_the_autograd_uniformity():
    from proex.runtime import reference_kernels

    x = torch.randn(2, 9, 5, requires_grad=True)
    fast = uniformity(x, 0.2)
    with reference_kernels():
        ref = uniformity(x, 0.2)
    assert type(fast.grad_fn).__name__ == "_UniformityBackward"
    assert type(ref.grad_fn).__name__ != "_UniformityBackward"
    assert fast.item() == pytest.approx(ref.item(), rel=1e-6)
