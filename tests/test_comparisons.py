"""Fair comparisons by construction: one protocol per comparison where the grid asks for it (the own-data grid),
per-arm official protocols with their differences printed where it does not (the paper's tables), borrowed
values that say so, one refusal of impossible (model, plug-in) pairs, and hparams file vs grid `fixed`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from proex import cli, experiment
from proex import grid as gridlib
from proex.comparisons import parse_protocol, shared_protocol
from proex.config import ConfigError
from proex.experiment import CellConfig, resolve
from proex.grid import load_grid, start_lines
from proex.protocol import is_borrowed, protocol_of

GRIDS = Path(__file__).resolve().parent.parent / "grids"


def _protocols(cells, model, dataset):
    """{plugin: protocol} of the first seed's cell of each arm."""
    out = {}
    for gc in cells:
        if gc.config.model == model and experiment.dataset_key(gc.config.dataset) == dataset:
            out.setdefault(gc.config.plugin, (protocol_of(dataclasses.asdict(gc.resolved.train_cfg)), gc))
    return out


def test_own_data_grid_trains_every_arm_under_one_protocol():
    cells = load_grid(GRIDS / "own-data.yaml").expand()
    arms = _protocols(cells, "lightgcn", "mine")
    assert set(arms) == {"base", "proex", "rlmrec_con"}
    protocols = {json.dumps(p, sort_keys=True) for p, _ in arms.values()}
    assert len(protocols) == 1, protocols
    assert arms["base"][0]["patience"] == 20  # ProEx's patience, the most generous, for the base too
    src = arms["base"][1].resolved.sources["train.patience"]
    assert src.startswith("grid protocol: shared") and "longest stopping window" in src


def test_table2_keeps_per_arm_protocols_and_prints_the_difference():
    grid = load_grid(GRIDS / "table2.yaml")
    cells = grid.expand()
    arms = _protocols(cells, "lightgcn", "amazon")
    assert arms["base"][0]["patience"] == 5 and arms["proex"][0]["patience"] == 20
    assert arms["base"][1].resolved.sources["train.patience"].startswith("reference: HKUDS/RLMRec")
    lines = start_lines(grid, cells)
    line = next(x for x in lines if x.startswith("lightgcn/amazon: "))
    assert "protocol differs: patience 5 (base) vs 20 (proex)" in line and "official per-arm" in line
    # the borrowed settings are listed once, by source
    assert any("borrowed from ProEx on LightGCN" in x and "gccf/proex/amazon" in x for x in lines)


def test_a_stated_shared_protocol_and_bad_values(tmp_path):
    body = (
        "name: g\naxes: {model: [lightgcn], plugin: [base, proex], dataset: [amazon], seed: [0]}\n"
        "fixed: {profiles: p}\nprotocol: {shared: {patience: 7, eval_every: 2}}\n"
    )
    (tmp_path / "g.yaml").write_text(body)
    cells = load_grid(tmp_path / "g.yaml").expand()
    got = {gc.config.plugin: gc.resolved for gc in cells}
    assert {r.train_cfg.patience for r in got.values()} == {7}
    assert {r.train_cfg.eval_every for r in got.values()} == {2}
    assert "stated in the grid file" in got["proex"].sources["train.patience"]
    (tmp_path / "bad.yaml").write_text(body.replace("patience: 7", "patient: 7"))
    with pytest.raises(ConfigError, match=r"protocol\.shared\.patient: not a protocol key"):
        load_grid(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="use protocol: official, protocol: shared"):
        parse_protocol("fair", "g.yaml: protocol")


def test_shared_rule_is_the_longest_window_and_order_free():
    base = {
        "epochs": 3000,
        "patience": 5,
        "eval_every": 3,
        "min_epochs": 0,
        "batch_size": 4096,
        "lr": 1e-3,
        "eval_offset": 0,
    }
    alpha = {
        "epochs": 500,
        "patience": 20,
        "eval_every": 5,
        "min_epochs": 10,
        "batch_size": 4096,
        "lr": 5e-4,
        "eval_offset": 1,
    }
    one = shared_protocol({"base": base, "alpharec": alpha}, "base")
    two = shared_protocol({"alpharec": alpha, "base": base}, "base")
    values = {k: v for k, (v, _) in one.items()}
    assert values == {k: v for k, (v, _) in two.items()}
    # 20 validations x 5 epochs = 100 epochs of patience, at the finer eval_every 3: ceil(100 / 3) = 34
    assert values == {
        "epochs": 3000,
        "min_epochs": 10,
        "eval_every": 3,
        "patience": 34,
        "lr": 1e-3,
        "batch_size": 4096,
        "eval_offset": 0,
    }


@pytest.mark.parametrize(
    "model,plugin,dataset,key,prefix",
    [
        ("cvga", "dmrec_g", "amazon", "plugin_config.beta", "borrowed from DMRec on Mult-VAE"),
        ("ldiffrec", "dmrec_m", "yelp", "plugin_config.hidden_dim", "borrowed from DMRec on Mult-VAE"),
        ("cvga", "base", "yelp", "train.patience", "borrowed from DMRec's Mult-VAE training protocol"),
        ("ldiffrec", "base", "amazon", "train.eval_every", "borrowed from DMRec's Mult-VAE training protocol"),
        ("lightgcn", "alpharec", "yelp", "plugin_config.temperature", "extrapolated:"),
        ("lightgcn", "alpharec", "steam", "plugin_config.temperature", "borrowed from AlphaRec's Amazon-Games"),
        ("ldiffrec", "base", "steam", "model_config.noise_scale", "borrowed from L-DiffRec's Amazon-Book"),
        ("gccf", "proex", "yelp", "train.patience", "borrowed from ProEx on LightGCN"),
        ("multvae", "proex", "yelp", "plugin_config.hidden_dim", "borrowed from DMRec's meta-network"),
        ("lightgcn", "base", "ratings.csv", "model_config.layers", "borrowed from the Amazon-Book row"),
    ],
)
def test_a_borrowed_value_says_so(model, plugin, dataset, key, prefix):
    r = resolve(CellConfig(dataset=dataset, model=model, plugin=plugin), text_dim=1536, check_profiles=False)
    assert r.sources[key].startswith(prefix) and is_borrowed(r.sources[key]), r.sources[key]


def test_official_values_are_not_marked_borrowed():
    for model, plugin, key in (
        ("multvae", "dmrec_g", "plugin_config.beta"),
        ("multvae", "base", "train.patience"),
        ("lightgcn", "proex", "train.patience"),
        ("lightgcn", "alpharec", "train.seed"),
    ):
        src = resolve(CellConfig(dataset="amazon", model=model, plugin=plugin), check_profiles=False).sources[key]
        assert src.startswith("reference: ") and not is_borrowed(src), src
    kar = resolve(CellConfig(dataset="amazon", model="lightgcn", plugin="kar"), check_profiles=False)
    assert "run_ctr.py l.29-30" in kar.sources["plugin_config.n_specific"]


def test_proex_config_sources_show_the_borrowed_value(capsys):
    assert cli.main(["config", "--model", "cvga", "--plugin", "dmrec_c", "--dataset", "steam", "--sources"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["plugin_config"]["beta"]["value"] == 0.6
    assert cfg["plugin_config"]["beta"]["source"].startswith("borrowed from DMRec on Mult-VAE")


def test_proex_config_refuses_what_proex_train_refuses(capsys, tmp_path):
    assert (
        cli.main(
            [
                "train",
                "--model",
                "simgcl",
                "--plugin",
                "alpharec",
                "--profiles",
                "synthetic-latent",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    train_err = capsys.readouterr().err
    assert cli.main(["config", "--model", "simgcl", "--plugin", "alpharec"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == train_err
    assert "alpharec: AlphaRec propagates language representations over the LightGCN graph" in train_err
    assert not (tmp_path / "run").exists()  # refused before any data or folder
    assert cli.main(["config", "--model", "multvae", "--plugin", "base", "--compare-with", "rlmrec_con"]) == 2
    assert "rlmrec_con: this plug-in needs a pairwise graph model" in capsys.readouterr().err


def test_a_grid_refuses_an_impossible_pair(tmp_path):
    (tmp_path / "g.yaml").write_text(
        "name: g\naxes: {model: [simgcl], plugin: [base, alpharec], dataset: [amazon], "
        "seed: [0]}\nfixed: {profiles: p}\n"
    )
    with pytest.raises(ConfigError, match="simgcl/alpharec.*use --model lightgcn"):
        load_grid(tmp_path / "g.yaml").expand()


def test_proex_config_shows_the_protocol_block(capsys):
    args = ["config", "--model", "lightgcn", "--plugin", "base", "--dataset", "amazon", "--compare-with", "proex"]
    assert cli.main(args) == 0
    block = json.loads(capsys.readouterr().out)["protocol"]
    assert block["mode"] == "official" and block["values"]["patience"] == 5
    assert block["differences"] == "protocol differs: patience 5 (base) vs 20 (proex)"
    assert cli.main(args + ["--protocol", "shared"]) == 0
    block = json.loads(capsys.readouterr().out)["protocol"]
    assert block["values"]["patience"] == 20 and block["differences"].startswith("none")


def test_hparams_file_wins_over_fixed_and_the_variant_over_both(tmp_path):
    (tmp_path / "hp").mkdir()
    (tmp_path / "hp" / "lightgcn-base-amazon.yaml").write_text(
        "train: {epochs: 4, lr: 0.01}\nsource: {study: s1, complete_trials: 6}\n"
    )
    (tmp_path / "g.yaml").write_text(
        "name: g\naxes: {model: [lightgcn], plugin: [base], dataset: [amazon], seed: [1],\n"
        "  variant: [{name: v, train: {lr: 0.02}}]}\nfixed: {train: {epochs: 7, lr: 0.005, patience: 3}}\n"
        "hparams: hp\n"
    )
    r = load_grid(tmp_path / "g.yaml").expand()[0].resolved
    assert (r.train_cfg.epochs, r.train_cfg.lr, r.train_cfg.patience) == (4, 0.02, 3)
    assert r.sources["train.epochs"].endswith("lightgcn-base-amazon.yaml (study s1, 6 trials)")
    assert r.sources["train.lr"].startswith("grid variant 'v'")
    assert r.sources["train.patience"].startswith("grid fixed:")
    # the documented order is the coded one
    assert "grid fixed < hparams file < grid variant" in " ".join(experiment.__doc__.split())
    assert "< `fixed` < its hparams file" in " ".join(gridlib.__doc__.split())


def test_an_hparams_file_without_a_study_says_so(tmp_path):
    (tmp_path / "hp").mkdir()
    (tmp_path / "hp" / "lightgcn-base-amazon.yaml").write_text("model_config: {layers: 2}\n")
    (tmp_path / "g.yaml").write_text(
        "name: g\naxes: {model: [lightgcn], plugin: [base], dataset: [amazon], seed: [1]}\nhparams: hp\n"
    )
    r = load_grid(tmp_path / "g.yaml").expand()[0].resolved
    assert "not from a study" in r.sources["model_config.layers"]


def test_without_protocol_datasets_outside_the_paper_share_one(tmp_path):
    (tmp_path / "g.yaml").write_text(
        "name: g\naxes: {model: [lightgcn], plugin: [base, proex], "
        "dataset: [synthetic, amazon], seed: [0]}\nfixed: {profiles: p}\n"
    )
    patience = {
        (gc.config.dataset, gc.config.plugin): gc.resolved.train_cfg.patience
        for gc in load_grid(tmp_path / "g.yaml").expand()
    }
    assert patience == {
        ("synthetic", "base"): 20,
        ("synthetic", "proex"): 20,
        ("amazon", "base"): 5,
        ("amazon", "proex"): 20,
    }
