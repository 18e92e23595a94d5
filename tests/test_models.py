"""Every base model on a tiny dataset: finite loss, working backward, score shapes, a live fusion point,
and (on the synthetic data) a few epochs beat a popularity ranking."""

import pytest
import torch
from conftest import assert_steps_lower_the_loss

from proex.data.sampling import bpr_batches, user_batches
from proex.data.tensors import TrainData
from proex.experiment import CellConfig, build_system, resolve
from proex.metrics import RankingEvaluator
from proex.models import MODELS, Side
from proex.train import Trainer


def _system(model, inter, **model_config):
    data = TrainData(inter)
    return build_system(resolve(CellConfig(dataset=inter.name, model=model, model_config=model_config)), data), data


def _batch(system, data):
    if system.model.family == "pairwise":
        return next(iter(bpr_batches(data, 64)))
    return next(iter(user_batches(data, 16)))


def _side(model, batch, n_items=None):
    b = batch.users.numel()
    user = torch.randn(b, model.side_dim)
    if model.family != "pairwise":
        return Side(user=user)
    n = n_items if n_items is not None else batch.items.numel()
    return Side(user=user, item=torch.randn(n, model.side_dim))


@pytest.mark.parametrize("name", list(MODELS))
def test_loss_backward_and_scores(name, tiny):
    system, data = _system(name, tiny)
    system.train()
    batch = _batch(system, data)
    terms = system.loss_terms(batch)
    loss = sum(terms.values())
    assert torch.isfinite(loss), terms
    loss.backward()
    grads = [p.grad for p in system.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    system.eval()
    users = torch.arange(7)
    with torch.no_grad():
        scores = system.scorer()(data.user_batch(users))
    assert scores.shape == (7, tiny.n_items) and torch.isfinite(scores).all()
    assert_steps_lower_the_loss(system, batch)  # the gradient points downhill on the model's own objective
    system.eval()
    with torch.no_grad():
        trained = system.scorer()(data.user_batch(users))
    assert not torch.allclose(trained, scores)  # and training moves what users are recommended


@pytest.mark.parametrize("name", list(MODELS))
def test_fusion_point_changes_risk_and_scores(name, tiny):
    """Side vectors of width side_dim are accepted at the fusion point and change what the model computes."""
    system, data = _system(name, tiny)
    model = system.model
    system.eval()  # deterministic: no dropout or sampling noise
    batch = _batch(system, data)
    torch.manual_seed(1)
    with torch.no_grad():
        state = model.encode(batch).state
        torch.manual_seed(2)
        r0 = sum(model.risk(batch, state, None).values())
        torch.manual_seed(2)
        r1 = sum(model.risk(batch, state, _side(model, batch)).values())
        users = torch.arange(5)
        ub = data.user_batch(users)
        st = model.encode(ub).state if model.family != "pairwise" else state
        s0 = model.score(ub, st, None)
        s1 = model.score(ub, st, _side(model, ub, n_items=tiny.n_items))
    assert not torch.isclose(r0, r1)
    assert s1.shape == s0.shape and not torch.allclose(s0, s1)


def _popularity_recall(data, evaluator):
    pop = data.item_degree
    return evaluator(lambda b: pop.repeat(b.users.numel(), 1))["recall@20"]


# L-DiffRec trains with its own two learning rates (lr1 for the AE, lr2 for the denoiser), not the trainer's.
FAST_LR = {"ldiffrec": {"lr1": 5e-3, "lr2": 5e-3}}


@pytest.mark.parametrize("name", list(MODELS))
def test_beats_popularity_on_synthetic(name):
    from proex.data.synthetic import SyntheticConfig, make_synthetic

    inter = make_synthetic(SyntheticConfig(seed=0))
    system, data = _system(name, inter, **FAST_LR.get(name, {}))
    evaluator = RankingEvaluator(data, "test", (20,))
    pop = _popularity_recall(data, evaluator)
    cfg = resolve(
        CellConfig(
            dataset="synthetic", model=name, train={"epochs": 40, "patience": 100, "batch_size": 256, "lr": 5e-3}
        )
    ).train_cfg
    Trainer(cfg).fit(system, data)
    system.eval()
    with torch.no_grad():
        rec = evaluator(system.scorer(), needs_rows=system.model.family != "pairwise")["recall@20"]
    assert rec > pop * 1.1, f"{name}: recall@20 {rec:.4f} vs popularity {pop:.4f}"


def test_sparse_rows_linear_equals_dense_product(tiny):
    from proex.models.generative import row_values, sparse_rows_linear

    data = TrainData(tiny)
    batch = data.user_batch(torch.arange(20))
    w, b = torch.randn(tiny.n_items, 5), torch.randn(5)
    assert torch.allclose(sparse_rows_linear(batch, w, b), batch.rows @ w + b, atol=1e-5)
    values = row_values(batch, l2_normalise=True, dropout=0.0, training=True)
    dense = torch.nn.functional.normalize(batch.rows, dim=-1)
    assert torch.allclose(sparse_rows_linear(batch, w, None, values), dense @ w, atol=1e-5)
    dropped = row_values(batch, l2_normalise=False, dropout=0.5, training=True)
    assert set(dropped.unique().tolist()) <= {0.0, 2.0}
