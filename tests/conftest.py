"""Shared fixtures: a tiny random dataset for fast model tests, a small synthetic dataset with latent profiles
for the plug-in tests, and the real-data location."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from proex.data.interactions import Interactions, to_binary_csr

pytest_plugins = ["skip_guard", "pytester"]  # skip_guard: every skip listed, and outside its allow-list an error in CI


def random_interactions(n_users: int = 50, n_items: int = 40, per_user: int = 8, seed: int = 0) -> Interactions:
    """Each user gets `per_user` distinct random items, split 3:1:1 (at least 1 train item each)."""
    rng = np.random.default_rng(seed)
    items = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :per_user]  # [U, per_user] distinct
    n_tr, n_va = int(per_user * 0.6), int(per_user * 0.2)
    users = np.repeat(np.arange(n_users), per_user).reshape(n_users, per_user)

    def mat(cols: slice) -> sp.csr_matrix:
        u, i = users[:, cols].ravel(), items[:, cols].ravel()
        return to_binary_csr(sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(n_users, n_items)))

    return Interactions(
        "tiny",
        mat(slice(0, n_tr)),
        mat(slice(n_tr, n_tr + n_va)),
        mat(slice(n_tr + n_va, None)),
        source="tests/conftest.py",
    ).validate()


@pytest.fixture
def tiny() -> Interactions:
    return random_interactions()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def real_data_dir(name: str) -> str:
    """Directory of a real RLMRec dataset, or skip the test saying how to provide it."""
    from proex.data.registry import DATA_ENV, default_data_dir

    path = os.path.join(str(default_data_dir()), name)
    if not os.path.exists(os.path.join(path, "trn_mat.pkl")):
        pytest.skip(
            f"real dataset {name!r} not found at {path}: set {DATA_ENV} to the folder holding "
            f"amazon/ and yelp/ (or run `proex data fetch`)"
        )
    return path


@pytest.fixture(scope="module")
def synth():
    """(80 x 60 synthetic interactions, a K = 4, 16-d latent profile bank) for the plug-in tests."""
    from proex.data.synthetic import SyntheticConfig, make_synthetic
    from proex.profiles.synthetic import latent_profiles

    inter = make_synthetic(SyntheticConfig(n_users=80, n_items=60, seed=0))
    return inter, latent_profiles(inter, k=4, dim=16)


def plugin_system(plugin: str, model: str, inter, bank, **plugin_config):
    """(system, TrainData) for `plugin` over `model` with the reference defaults plus plugin_config."""
    from proex.data.tensors import TrainData
    from proex.experiment import CellConfig, build_system, resolve

    r = resolve(
        CellConfig(
            dataset="synthetic", model=model, plugin=plugin, profiles="synthetic-latent", plugin_config=plugin_config
        )
    )
    data = TrainData(inter)
    return build_system(r, data, bank), data


def assert_steps_lower_the_loss(system, batch, steps: int = 5, lr: float = 1e-3) -> None:
    """A few Adam steps on one batch lower that batch's loss (every random draw of the loss, dropout, noise,
    Dirichlet weights, replayed from one seed, so the same objective is compared), with finite gradients."""

    def seeded_loss():
        torch.manual_seed(123)
        return sum(system.loss_terms(batch).values())

    system.train()
    params = [p for p in system.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    before = seeded_loss().item()
    for _ in range(steps):
        opt.zero_grad()
        loss = seeded_loss()
        assert torch.isfinite(loss)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)
        opt.step()
    after = seeded_loss().item()
    assert after < before, (before, after)


def assert_trains_end_to_end(plugin: str, model: str, inter, batch_size: int = 256, own_terms: tuple = ()) -> None:
    """run_cell for 3 epochs on the synthetic data, and the base model alone on the same seed: the plug-in is
    recorded, its own loss terms (`own_terms`, e.g. ("loss_kd",)) are in the objective beside the base's and
    finite, and it changes what the user gets: the trained system's scores differ from the base's."""
    from proex.experiment import CellConfig, run_cell
    from proex.recommend import top_k

    def run(name):
        cell = CellConfig(
            dataset="synthetic",
            model=model,
            plugin=name,
            profiles="synthetic-latent:k=4,dim=16",
            # eval_every 1: every epoch is validated whatever the arm's eval_offset (AlphaRec's is 1)
            train={"epochs": 3, "device": "cpu", "batch_size": batch_size, "eval_every": 1},
        )
        result, system = run_cell(cell, inter)
        terms = {k for row in result.history for k in row if k.startswith("loss_")}
        return result, system, terms

    result, system, terms = run(plugin)
    base, base_system, base_terms = run("base")
    assert result.config["plugin"] == plugin and 0.0 <= result.test["recall@20"] <= 1.0
    assert all(np.isfinite(v) for row in result.history for k, v in row.items() if k.startswith("loss_"))
    assert terms - base_terms == set(own_terms), (terms, base_terms)  # the plug-in's terms are minimised
    from proex.data.tensors import TrainData

    data = TrainData(inter)
    users = list(range(20))
    _, scores = top_k(system, data, users, 10)
    _, base_scores = top_k(base_system, data, users, 10)
    assert not np.allclose(scores, base_scores, rtol=1e-3, atol=1e-5)


@pytest.fixture(scope="session")
def postgres():
    """One throw-away PostgreSQL on 127.0.0.1 for the whole session (tests/pg_service.py), stopped at the end."""
    from infra_services import free_ports
    from pg_service import Postgres

    server = Postgres(free_ports(1)[0])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_mlflow(postgres, tmp_path_factory):
    """(tracking URI, artifact folder) of an MLflow server whose runs live in that PostgreSQL and whose
    artifacts are proxied (`--serve-artifacts`): what a cluster's nodes share."""
    pytest.importorskip("mlflow")
    from infra_services import free_ports

    from proex.infra.mlflow_server import start_server, stop_server

    root = tmp_path_factory.mktemp("pg-mlflow")
    proc, uri = start_server(
        str(root),
        "127.0.0.1",
        free_ports(1)[0],
        backend_uri=postgres.create_database("mlflow"),
        workers=2,
        timeout_s=240,
    )
    yield uri, root / "artifacts"
    stop_server(proc)
