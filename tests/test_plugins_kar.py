"""KAR (hybrid-expert adaptor, Xi et al., RecSys'24): the adaptor against a per-expert re-computation, the
additive fusion against the base model, and the plug-in on every pairwise base."""

import pytest
import torch
from conftest import assert_trains_end_to_end, plugin_system

from proex.data.sampling import bpr_batches
from proex.models.base import UserBatch
from proex.plugins.kar import HybridExperts


def _system(model, inter, bank, **plugin_config):
    return plugin_system("kar", model, inter, bank, **plugin_config)


def test_hybrid_experts_equal_a_loop_over_gated_experts():
    torch.manual_seed(0)
    hea = HybridExperts(d_text=6, out_dim=3, n_shared=2, n_specific=3, hidden=5)
    x = torch.randn(4, 6)
    for which, own in (("user", [2, 3, 4]), ("item", [5, 6, 7])):
        experts = [0, 1] + own
        gate = torch.softmax(hea.gates[which](x), -1)
        assert torch.allclose(gate.sum(-1), torch.ones(4))
        want = sum(
            gate[:, j : j + 1] * (torch.relu(x @ hea.w1[e] + hea.b1[e]) @ hea.w2[e] + hea.b2[e])
            for j, e in enumerate(experts)
        )
        assert torch.allclose(hea(x, which), want, atol=1e-6)


@pytest.mark.parametrize("model", ["gccf", "lightgcn", "simgcl"])
def test_trains_on_every_pairwise_base_and_shared_experts_learn_from_both_towers(model, synth):
    inter, bank = synth
    system, data = _system(model, inter, bank)
    batch = next(iter(bpr_batches(data, 64)))
    terms = system.loss_terms(batch)
    assert "bpr" in terms and all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())
    sum(terms.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in system.hea.parameters())
    users = torch.arange(5)
    scores = system.scorer()(UserBatch(users=users, rows=None, nz=None))
    assert scores.shape == (5, data.n_items) and torch.isfinite(scores).all()


def test_zero_adaptor_is_exactly_the_base_model(synth):
    inter, bank = synth
    torch.manual_seed(0)
    system, data = _system("lightgcn", inter, bank)
    torch.nn.init.zeros_(system.hea.w2)
    torch.nn.init.zeros_(system.hea.b2)
    system.eval()
    batch = next(iter(bpr_batches(data, 64)))
    with torch.no_grad():
        state = system.model.encode(batch).state
        assert torch.equal(system.loss_terms(batch)["bpr"], system.model.risk(batch, state, None)["bpr"])
        ub = UserBatch(users=torch.arange(7), rows=None, nz=None)
        full = system.model.encode(None).state
        assert torch.allclose(system.scorer()(ub), system.model.score(ub, full, None))


def test_refuses_generative_models_and_missing_profiles(synth):
    inter, bank = synth
    with pytest.raises(ValueError, match="needs a pairwise"):
        _system("multvae", inter, bank)
    with pytest.raises(ValueError, match="profile=4"):
        _system("lightgcn", inter, bank, profile=4)
    with pytest.raises(ValueError, match="at least one expert"):
        _system("lightgcn", inter, bank, n_shared=0, n_specific=0)


def test_run_cell_end_to_end(synth):
    assert_trains_end_to_end("kar", "lightgcn", synth[0])  # no term of its own: the augmented vectors change BPR
