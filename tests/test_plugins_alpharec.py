"""AlphaRec (Sheng et al., ICLR'25): language inputs instead of ID embeddings, the sampled-softmax InfoNCE
against a direct computation, cosine scores, and the defaults it brings to LightGCN."""

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_trains_end_to_end, plugin_system

from proex.data.sampling import bpr_batches
from proex.experiment import CellConfig, resolve
from proex.models.base import UserBatch


def test_inputs_are_item_profiles_and_users_item_means(synth):
    inter, bank = synth
    system, _ = plugin_system("alpharec", "lightgcn", inter, bank)
    u = 3
    items = inter.train[u].indices
    assert torch.allclose(system.inputs[u], torch.as_tensor(bank.item[0][items].mean(0)), atol=1e-6)
    assert torch.equal(system.inputs[inter.n_users + 5], torch.as_tensor(bank.item[0][5]))
    star, _ = plugin_system("alpharec", "lightgcn", inter, bank, user_input="profile")
    assert torch.equal(star.inputs[u], torch.as_tensor(bank.user[0][u]))


def test_infonce_and_scores_match_a_direct_computation(synth):
    inter, bank = synth
    system, data = plugin_system("alpharec", "lightgcn", inter, bank, negatives=7)
    batch = next(iter(bpr_batches(data, 32)))
    torch.manual_seed(3)
    got = system.loss_terms(batch)["infonce"]
    torch.manual_seed(3)
    neg = torch.randint(0, data.n_items, (32, 7))
    state = system.model.encode(None, ego=system.mlp(system.inputs)).state
    users, items = F.normalize(state.users, dim=-1), F.normalize(state.items, dim=-1)
    want = 0.0
    for b in range(32):
        u = users[batch.users[b]]
        logits = torch.cat([(u @ items[batch.pos[b]]).view(1), items[neg[b]] @ u]) / 0.15
        want += -torch.log_softmax(logits, 0)[0]
    assert got.item() == pytest.approx(want.item() / 32, rel=1e-5)
    got.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in system.mlp.parameters())
    with torch.no_grad():
        scores = system.scorer()(UserBatch(users=torch.arange(4), rows=None, nz=None))
    assert scores.shape == (4, data.n_items) and scores.abs().max() <= 1.0 + 1e-5  # cosines


def test_defaults_and_refusals(synth):
    inter, bank = synth
    r = resolve(CellConfig(dataset="synthetic", model="lightgcn", plugin="alpharec", profiles="synthetic-latent"))
    assert (r.model_cfg.dim, r.model_cfg.layers, r.model_cfg.keep_rate, r.model_cfg.reg_weight) == (64, 2, 1.0, 0.0)
    assert r.train_cfg.lr == 5e-4
    mine = resolve(
        CellConfig(
            dataset="synthetic", model="lightgcn", plugin="alpharec", profiles="synthetic-latent", train={"lr": 1e-3}
        )
    )
    assert mine.train_cfg.lr == 1e-3
    assert resolve(CellConfig(dataset="synthetic", model="gccf")).train_cfg.lr == 1e-3
    with pytest.raises(ValueError, match="use --model lightgcn"):
        plugin_system("alpharec", "gccf", inter, bank)
    with pytest.raises(ValueError, match="user_input"):
        plugin_system("alpharec", "lightgcn", inter, bank, user_input="ids")


def test_run_cell_end_to_end(synth):
    assert_trains_end_to_end("alpharec", "lightgcn", synth[0], own_terms=("loss_infonce",))  # replaces BPR
