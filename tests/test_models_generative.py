"""L-DiffRec and CVGA on a tiny random dataset: losses, gradients, fusion point, determinism, checkpoints,
and L-DiffRec's schedules (YiyanXu/DiffRec L-DiffRec)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from proex.data.interactions import Interactions
from proex.data.tensors import TrainData
from proex.models import MODELS, Side, UserBatch, model_class
from proex.models.graph import user_item_adjacency
from proex.models.ldiffrec import linear_var_betas
from proex.plugins.base import Base
from proex.train import TrainConfig, Trainer

U, N_ITEMS, PER_USER = 60, 40, 6
NAMES = ["ldiffrec", "cvga"]


@pytest.fixture(scope="module")
def data() -> TrainData:
    """60 users x 40 items, 6 distinct items per user: 4 train, 1 val, 1 test."""
    rng = np.random.default_rng(0)
    items = np.stack([rng.choice(N_ITEMS, PER_USER, replace=False) for _ in range(U)])  # [U, 6]

    def csr(cols):
        rows = np.repeat(np.arange(U), cols.shape[1])
        return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols.ravel())), shape=(U, N_ITEMS))

    inter = Interactions("tiny", csr(items[:, :4]), csr(items[:, 4:5]), csr(items[:, 5:])).validate()
    return TrainData(inter, "cpu")


def build(name: str, data: TrainData, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cls = model_class(name)
    return cls(cls.Config(**overrides), data)


def batch_of(data: TrainData, users=None) -> UserBatch:
    users = torch.arange(16) if users is None else users
    return UserBatch(users, data.rows(users))


def loss_of(model, batch, side=None):
    enc = model.encode(batch)
    terms = {**enc.losses, **model.risk(batch, enc.state, side)}
    return sum(terms.values()), terms


def test_registry_order():
    assert list(MODELS) == ["gccf", "lightgcn", "simgcl", "multvae", "ldiffrec", "cvga"]


@pytest.mark.parametrize("name", NAMES)
def test_loss_finite_and_every_parameter_gets_a_gradient(name, data):
    model = build(name, data).train()
    loss, terms = loss_of(model, batch_of(data))
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in terms.values())
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name,side_dim", [("ldiffrec", 600), ("cvga", 128)])
def test_scores_and_fusion_point(name, side_dim, data):
    model = build(name, data)
    assert model.side_dim == side_dim
    batch = batch_of(data)
    side = Side(user=(0.3 * torch.randn(16, side_dim)).requires_grad_())
    model.eval()
    with torch.no_grad():
        state = model.encode(batch).state
        plain, fused = model.score(batch, state, None), model.score(batch, state, side)
    assert plain.shape == (16, N_ITEMS) and torch.isfinite(plain).all()
    assert not torch.allclose(plain, fused)
    model.train()
    torch.manual_seed(1)
    plain_loss, _ = loss_of(model, batch)
    torch.manual_seed(1)
    fused_loss, _ = loss_of(model, batch, side)
    assert not torch.isclose(plain_loss, fused_loss)
    fused_loss.backward()
    assert side.user.grad is not None and side.user.grad.abs().sum() > 0


def _train_steps(model, data, steps=3):
    opt = torch.optim.Adam(model.param_groups(1e-3))
    losses = []
    for _ in range(steps):
        users = torch.randperm(U)[:20]
        loss, _ = loss_of(model, batch_of(data, users))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", NAMES)
def test_seeded_runs_repeat_and_state_dict_round_trip(name, data):
    runs = []
    for _ in range(2):
        model = build(name, data, seed=3).train()
        torch.manual_seed(4)
        losses = _train_steps(model, data)
        model.eval()
        with torch.no_grad():
            batch = batch_of(data)
            runs.append((losses, model.score(batch, model.encode(batch).state), model))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    fresh = build(name, data, seed=99).eval()
    fresh.load_state_dict(runs[0][2].state_dict())
    with torch.no_grad():
        batch = batch_of(data)
        assert torch.equal(fresh.score(batch, fresh.encode(batch).state), runs[0][1])
    for key, value in runs[0][2].state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


@pytest.mark.parametrize("name", NAMES)
def test_sparse_encoder_product_matches_dense_value_and_gradient(name, data):
    model = build(name, data).eval()
    batch = batch_of(data)
    x = model.normalised_rows(batch) if name == "cvga" else batch.rows
    state = model.encode(batch).state
    (state.mu.sum() + state.logvar.pow(2).sum()).backward()
    grad = model.enc.weight.grad.clone()
    model.enc.weight.grad = None
    h = model.enc(x) if name == "cvga" else torch.tanh(model.enc(x))
    mu, logvar = h.chunk(2, -1)
    assert torch.allclose(mu, state.mu, atol=1e-6)
    (mu.sum() + logvar.pow(2).sum()).backward()
    assert torch.allclose(model.enc.weight.grad, grad, atol=1e-6)


def test_cvga_encoder_equals_sparse_graph_convolution(data):
    model = build("cvga", data).eval()
    users = torch.tensor([0, 5, 17, 59])
    state = model.encode(batch_of(data, users)).state
    adj = user_item_adjacency(data.train_csr, data.device)
    h = adj.matmul(model.enc.weight.T) + model.enc.bias  # R̃ Wᵀ + b for all users
    assert torch.allclose(torch.cat([state.mu, state.logvar], -1), h[users], atol=1e-6)
    mu_all, _ = model.posterior_all()
    assert torch.allclose(mu_all[users], state.mu, atol=1e-6)
    model.train()  # dropout acts on the output: some entries zeroed, the rest scaled by 1/(1-p)
    torch.manual_seed(0)
    st = model.encode(batch_of(data, users)).state
    out = torch.cat([st.mu, st.logvar], -1)
    zero = out == 0
    assert zero.any() and torch.allclose(out[~zero], h[users][~zero] / 0.7, atol=1e-5)


def test_ldiffrec_encoder_target_and_schedule(data):
    model = build("ldiffrec", data).eval()
    batch = batch_of(data)
    state = model.encode(batch).state
    ref = torch.tanh(model.enc(batch.rows)).chunk(2, -1)
    assert torch.allclose(state.mu, ref[0], atol=1e-5) and torch.allclose(state.logvar, ref[1], atol=1e-5)
    model.train()
    target = model.encode(batch).state.extra["target"]  # the dropout-corrupted row (official quirk)
    assert torch.equal(target, batch.rows * (target != 0) / 0.9) and not torch.equal(target, batch.rows)
    clean = build("ldiffrec", data, corrupted_target=False).train()
    assert torch.equal(clean.encode(batch).state.extra["target"], batch.rows)
    var = 0.5 * np.linspace(0.001, 0.005, 5)
    abar = np.cumprod(1 - linear_var_betas(0.5, 0.001, 0.005, 5))
    assert np.allclose(abar, 1 - var)
    assert math.isclose(float(model.posterior_mean_coef1[0]), 1.0) and float(model.posterior_mean_coef2[0]) == 0.0
    snr = abar / (1 - abar)
    assert np.allclose(model.step_weight.numpy(), np.r_[1.0, snr[:-1] - snr[1:]])


def test_ldiffrec_counters_and_lambda_schedule(data):
    model = build("ldiffrec", data).train()
    batch = batch_of(data)
    anneals = [model.encode(batch).state.extra["anneal"] for _ in range(3)]
    assert anneals == [0.0, 1 / 200, 2 / 200] and int(model.vae_updates) == 3
    model.eval()
    model.encode(batch)
    assert int(model.vae_updates) == 3  # evaluation does not advance the batch counter
    model.vae_updates.fill_(1000)
    assert model.vae_anneal() == 0.3
    assert model.lamda() == 0.05
    model.on_epoch_end(0)
    assert int(model.epochs_done) == 1 and math.isclose(model.lamda(), (1 - 1 / 500) * 0.05)
    model.on_epoch_end(449)
    assert math.isclose(model.lamda(), 0.005)  # (1 - 450/500)·0.05 = 0.005 = the cap
    model.on_epoch_end(499)
    assert model.lamda() == 0.005
    _, terms = loss_of(model.train(), batch)
    assert set(terms) == {"elbo", "rec", "kl"}


def test_ldiffrec_importance_sampler(data):
    model = build("ldiffrec", data).train()
    t, pt = model.sample_steps(500)
    assert torch.equal(pt, torch.ones(500)) and set(t.tolist()) == {0, 1, 2, 3, 4}
    model.record_losses(torch.zeros(12, dtype=torch.long), torch.arange(12.0))  # rolling window of 10
    assert int(model.lt_count[0]) == 10 and model.lt_history[0].tolist() == [float(v) for v in range(2, 12)]
    model.record_losses(torch.zeros(1, dtype=torch.long), torch.tensor([50.0]))
    assert model.lt_history[0].tolist()[-1] == 50.0 and model.lt_history[0].tolist()[0] == 3.0
    assert torch.equal(model.sample_steps(8)[1], torch.ones(8))  # still uniform: steps 1..4 have no history
    model.lt_history.copy_(torch.arange(1.0, 6.0, dtype=torch.float64).unsqueeze(1).expand(5, 10))
    model.lt_count.fill_(10)
    t, pt = model.sample_steps(20000)
    p = torch.arange(1.0, 6.0) / 15 * 0.999 + 0.001 / 5
    assert torch.allclose(pt, p[t] * 5)
    freq = torch.bincount(t, minlength=5).float() / t.numel()
    assert torch.allclose(freq, p, atol=0.015)
    fresh = build("ldiffrec", data).train()  # risk itself fills the history, 16 samples per batch
    for _ in range(40):
        loss_of(fresh, batch_of(data))
    assert (fresh.lt_count == 10).all()
    assert not torch.equal(fresh.sample_steps(64)[1], torch.ones(64))


def test_ldiffrec_param_groups_use_their_own_learning_rates(data):
    model = build("ldiffrec", data)
    groups = model.param_groups(1e-3)
    assert [g["lr"] for g in groups] == [5e-4, 1e-4]
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.dnn.parameters()}


@pytest.mark.parametrize("name", NAMES)
def test_trainer_runs_and_calls_epoch_hook(name, data):
    model = build(name, data)
    cfg = TrainConfig(epochs=2, batch_size=32, eval_every=1, patience=5, seed=0, device="cpu")
    result = Trainer(cfg).fit(Base(model), data)
    assert all(math.isfinite(v) for v in result.test.values()) and result.epochs_run == 2
    if name == "ldiffrec":
        # the best state (with its counters) is restored: 2 batches of 32 users per epoch
        done = result.best_epoch + 1
        assert int(model.epochs_done) == done and int(model.vae_updates) == 2 * done
