"""The trainer: validation schedule, early stopping and restore of the best state, determinism,
resume after an interruption, and checkpoints that save and load."""

import json
import os

import pytest
import torch
from conftest import plugin_system

from proex import checkpoint
from proex.data.sampling import bpr_batches
from proex.data.tensors import TrainData
from proex.experiment import CellConfig, build_system, resolve, run_cell
from proex.runtime import seed_everything
from proex.train import Trainer, make_optimizer, training_batches, training_loss


def _cell(**train):
    return CellConfig(dataset="tiny", model="lightgcn", train={"device": "cpu", **train})


def _fit(inter, cell, callback=None, state_path=None):
    r = resolve(cell)
    seed_everything(r.train_cfg.seed)
    data = TrainData(inter)
    system = build_system(r, data)
    return Trainer(r.train_cfg, callback, state_path).fit(system, data), system, data


def test_validation_schedule_and_early_stopping(tiny):
    seen = []
    res, _, _ = _fit(tiny, _cell(epochs=300, patience=2, eval_every=3), callback=seen.append)
    epochs = [r.epoch for r in seen]
    assert epochs == list(range(0, epochs[-1] + 1, 3))  # after epochs 0, 3, 6, ...
    best = max(seen, key=lambda r: (r.metrics["recall@20"], -r.epoch))
    # Stops after exactly `patience` validations without a strict improvement over the best.
    assert epochs[-1] < 297 and seen[-1].patience_left == 0
    assert sum(r.epoch > res.best_epoch for r in seen) == 2
    assert res.best_epoch == best.epoch
    # The best state is restored: the final validation equals the best validation.
    assert res.val["recall@20"] == pytest.approx(best.metrics["recall@20"])


def test_eval_offset_validates_after_epochs_with_e_plus_offset_divisible(tiny):
    # AlphaRec validates when (epoch + 1) % verbose == 0 (LehengTHU/AlphaRec abstract_RS.py): epochs 4, 9, 14
    seen = []
    _fit(tiny, _cell(epochs=15, patience=50, eval_every=5, eval_offset=1), callback=seen.append)
    assert [r.epoch for r in seen] == [4, 9, 14]
    seen.clear()
    _fit(tiny, _cell(epochs=15, patience=50, eval_every=5), callback=seen.append)
    assert [r.epoch for r in seen] == [0, 5, 10]


def test_same_seed_same_result(tiny):
    a, _, _ = _fit(tiny, _cell(epochs=6))
    b, _, _ = _fit(tiny, _cell(epochs=6))
    assert a.test == b.test and a.history == b.history
    c, _, _ = _fit(tiny, _cell(epochs=6, seed=7))
    assert c.history != a.history


def test_resume_after_interruption_matches_uninterrupted(tiny, tmp_path, monkeypatch):
    full, _, _ = _fit(tiny, _cell(epochs=9, patience=50))
    state = str(tmp_path / "state.pt")

    class Stop(Exception):
        pass

    def crash(report):
        if report.epoch == 3:
            raise Stop

    with pytest.raises(Stop):
        _fit(tiny, _cell(epochs=9, patience=50), callback=crash, state_path=state)
    # The resumed fit trains only epochs 4..8 (the state was saved after epoch 3's validation) and validates
    # only after epoch 6: a retrain from scratch would train 9 epochs and validate after 0, 3 and 6 again.
    trained, seen = [], []
    train_epoch = Trainer._train_epoch

    def counting(*args):
        trained.append(1)
        return train_epoch(*args)

    monkeypatch.setattr(Trainer, "_train_epoch", staticmethod(counting))
    resumed, _, _ = _fit(tiny, _cell(epochs=9, patience=50), callback=seen.append, state_path=state)
    assert len(trained) == 5 and [r.epoch for r in seen] == [6]
    assert resumed.epochs_run == full.epochs_run == 9
    assert resumed.history == full.history
    assert resumed.test == pytest.approx(full.test)


def test_crafted_trainer_state_is_refused(tiny, tmp_path):
    """A state file whose pickle would call a function (here `os.system` via __reduce__) is refused with an
    error naming the file, and nothing runs."""
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state = tmp_path / "state.pt"
    torch.save({"loop": Payload()}, state, pickle_module=pickle)
    with pytest.raises(ValueError, match=r"state\.pt: refusing to load this trainer state.*delete the file"):
        _fit(tiny, _cell(epochs=3), state_path=str(state))
    assert not marker.exists()


def test_checkpoint_round_trip(tiny, tmp_path):
    result, system = run_cell(_cell(epochs=3), tiny)
    path = str(tmp_path / "ck.pt")
    checkpoint.save(path, system, result.config, tiny, {"test": result.test})
    loaded, data2, payload = checkpoint.load(path, tiny)
    users = torch.arange(10)
    system.eval()
    from proex.models import UserBatch

    with torch.no_grad():
        assert torch.equal(system.scorer()(UserBatch(users, None)), loaded.scorer()(UserBatch(users, None)))
    assert payload["metrics"]["test"] == result.test
    json.dumps(payload["config"])  # the stored config is plain data


def test_checkpoint_refuses_other_dataset(tiny, tmp_path):
    from conftest import random_interactions

    result, system = run_cell(_cell(epochs=0), tiny)
    path = str(tmp_path / "ck.pt")
    checkpoint.save(path, system, result.config, tiny)
    with pytest.raises(ValueError, match="trained on dataset"):
        checkpoint.load(path, random_interactions(seed=5))


def test_unknown_config_key_is_rejected(tiny):
    from proex.config import ConfigError

    with pytest.raises(ConfigError, match="layerz"):
        resolve(CellConfig(model="lightgcn", model_config={"layerz": 2}))
    with pytest.raises(ConfigError, match="epoch"):
        resolve(CellConfig(model="lightgcn", train={"epoch": 2}))


def test_reg_weight_is_the_sum_of_squares_penalty_on_every_parameter(tiny):
    """make_optimizer's weight decay 2w gives the same Adam step as adding w·Σ‖θ‖² to the loss
    (as the official codes' weight decay does), for the model's and the plug-in's parameters alike."""
    r = resolve(
        CellConfig(dataset="tiny", model="lightgcn", model_config={"reg_weight": 0.05}, train={"device": "cpu"})
    )
    data = TrainData(tiny)
    seed_everything(0)
    a = build_system(r, data)
    b = build_system(r, data)
    b.load_state_dict(a.state_dict())
    batch = next(iter(bpr_batches(data, 64)))
    opt_a = make_optimizer(a, 1e-2, torch.device("cpu"))
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2)
    seed_everything(1)
    sum(a.loss_terms(batch).values()).backward()
    opt_a.step()
    seed_everything(1)
    loss = sum(b.loss_terms(batch).values()) + 0.05 * sum(p.pow(2).sum() for p in b.parameters())
    loss.backward()
    opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


@pytest.mark.slow
def test_compiled_loss_matches_eager_and_trains_end_to_end(synth):
    """TrainConfig.compile: the torch.compile'd ProEx loss gives the eager loss terms and gradients (a
    deterministic setting: no Dirichlet draws, LightGCN under ProEx has no edge dropout), on batches of two
    sizes (shapes are dynamic: the batch's unique users and items vary), and a compiled cell trains."""
    inter, bank = synth
    system, data = plugin_system("proex", "lightgcn", inter, bank, mixing=False)
    eager, compiled = training_loss(system), training_loss(system, compile=True)
    for size in (64, 48):
        batch = next(iter(bpr_batches(data, size)))
        results = []
        for fn in (eager, compiled):
            system.zero_grad(set_to_none=True)
            terms = fn(batch)
            if fn is compiled:  # really compiled, not a silent eager fallback
                assert "Compiled" in type(terms["profile_reg"].grad_fn).__name__
            sum(terms.values()).backward()
            results.append(({k: v.detach() for k, v in terms.items()}, [p.grad.clone() for p in system.parameters()]))
        (t_eager, g_eager), (t_comp, g_comp) = results
        assert t_eager.keys() == t_comp.keys() and {"risk", "inv", "profile_reg"} <= set(t_eager)
        for k in t_eager:
            assert torch.allclose(t_eager[k], t_comp[k], rtol=1e-4, atol=1e-6), k
        for ge, gc in zip(g_eager, g_comp):
            assert torch.allclose(ge, gc, rtol=1e-3, atol=1e-6)
    cell = CellConfig(
        dataset="synthetic",
        model="lightgcn",
        plugin="proex",
        profiles="synthetic-latent:k=4,dim=16",
        train={"epochs": 3, "device": "cpu", "batch_size": 256, "compile": True},
    )
    result, _ = run_cell(cell, inter)
    assert result.config["train"]["compile"] is True and 0.0 < result.test["recall@20"] <= 1.0


def test_tf32_switch_is_scoped_to_the_fit(tiny, monkeypatch):
    """TrainConfig.tf32 sets CUDA's fp32 matmul precision for the fit only and restores the caller's setting
    (on this CPU it changes no arithmetic: the same result either way)."""
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    seen = []
    monkeypatch.setattr(
        Trainer,
        "_evaluate",
        staticmethod(
            lambda system, ev, _orig=Trainer._evaluate: (seen.append(matmul.fp32_precision), _orig(system, ev))[1]
        ),
    )
    fast, _, _ = _fit(tiny, _cell(epochs=3, tf32=True))
    assert set(seen) == {"tf32"} and matmul.fp32_precision == before
    seen.clear()
    exact, _, _ = _fit(tiny, _cell(epochs=3))
    assert set(seen) == {"ieee"} and matmul.fp32_precision == before
    assert fast.test == exact.test


# Operators after which the host must wait for a CUDA device (their output size or value is read on the host).
HOST_WAITS = {
    "_local_scalar_dense",
    "nonzero",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "bincount",
    "masked_select",
    "repeat_interleave",
}


@pytest.mark.parametrize("plugin", ["base", "proex"])
@pytest.mark.parametrize("model", ["gccf", "lightgcn", "simgcl", "multvae", "cvga"])
def test_training_step_never_waits_for_the_device(model, plugin, synth):
    """Loss and backward of one training batch dispatch no operator that makes the host wait for a GPU, so on
    CUDA the host queues work ahead of the device (docs/results/speed.md). Checked at the dispatch level on
    the CPU. Not listed: L-DiffRec, whose importance-sampling history reads step counts (as the official
    code does), so it still waits."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Waits(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ in HOST_WAITS:
                self.seen.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    inter, bank = synth
    system, data = plugin_system(plugin, model, inter, bank)
    system.train()
    batch = next(iter(training_batches(system, data, 32)))
    with Waits() as waits:
        sum(system.loss_terms(batch).values()).backward()
    assert waits.seen == []


def test_tf32_switch_on_torch_without_fp32_precision(monkeypatch):
    """torch < 2.9 has only the legacy `allow_tf32` flag: the switch sets and restores that one instead."""
    import types

    from proex.runtime import cuda_matmul_precision

    legacy = types.SimpleNamespace(allow_tf32=False)
    monkeypatch.setattr(torch.backends.cuda, "matmul", legacy)
    with cuda_matmul_precision(True):
        assert legacy.allow_tf32 is True
    assert legacy.allow_tf32 is False


def test_deterministic_fit_repeats_bit_for_bit():
    """TrainConfig.deterministic: two fits with one seed give identical weights, and the switch is scoped to the
    fit. LightGCN on the 600 x 400 synthetic data: every batch repeats users and items, whose index backward
    otherwise accumulates in thread order (without the switch these weights differ by ~1e-8 from run to run
    on this project's 2-core CPU)."""
    from proex.data.registry import load_dataset

    inter = load_dataset("synthetic:seed=0")
    assert not torch.are_deterministic_algorithms_enabled()
    weights = []
    for _ in range(2):
        r = resolve(
            CellConfig(
                dataset="synthetic:seed=0",
                model="lightgcn",
                train={"device": "cpu", "epochs": 3, "batch_size": 1024, "deterministic": True},
            )
        )
        seed_everything(0)
        data = TrainData(inter)
        system = build_system(r, data)
        Trainer(r.train_cfg).fit(system, data)
        weights.append([p.detach().clone() for p in system.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))
    assert not torch.are_deterministic_algorithms_enabled()


def test_run_whose_best_validation_is_its_first_is_flagged_and_warm_up_lets_it_continue(tiny, caplog):
    # lr = 0: the weights never change, so no later validation strictly beats the first one.
    res, _, _ = _fit(tiny, _cell(epochs=300, patience=2, lr=0.0))
    assert [h["epoch"] for h in res.history] == [0, 3, 6] and res.best_epoch == 0
    assert "best validation is the first one (epoch 0)" in res.first_dip and "min_epochs" in res.first_dip
    assert "best validation is the first one" in caplog.text  # the console warning
    # Warm-up: validations before epoch 12 do not spend patience, so the run goes on to epoch 15.
    warm, _, _ = _fit(tiny, _cell(epochs=300, patience=2, lr=0.0, min_epochs=12))
    assert [h["epoch"] for h in warm.history] == [0, 3, 6, 9, 12, 15] and warm.epochs_run == 16
    # A run that learns is not flagged, and the flag reaches the result dict (metrics.json, MLflow).
    ok, _ = run_cell(_cell(epochs=9, patience=5), tiny)
    assert ok.best_epoch > 0 and not ok.first_dip and ok.first_dip_warning == ""
    flagged, _ = run_cell(_cell(epochs=300, patience=2, lr=0.0), tiny)
    assert flagged.first_dip and flagged.first_dip_warning.startswith("best validation is the first one")
