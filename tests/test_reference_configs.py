"""Every row of the official configuration files resolves to its official value (table-driven).

The tables below are transcribed from the official files themselves, in their own key names, independently of
`proex.reference`: HKUDS/RLMRec encoder/config/modelconf/{gccf,lightgcn,simgcl}{,_plus,_gene}.yml,
BlueGhostYi/ProRec encoder/config/modelconf/{lightgcn_proex,mult_vae_godm,mult_vae_cpdm,mult_vae_mddm}.yml
(and its amazon log's num_envs), YiyanXu/DiffRec L-DiffRec/inference.py, BlueGhostYi/ID-GRec CVGA.txt, the
official AlphaRec settings and KAR's HEA. A key is mapped to ours by YML_KEYS. No resolved value is None except
the ones listed in NONE_MEANS_NONE.
"""

from __future__ import annotations

import json

import pytest

from proex import cli
from proex.experiment import CellConfig, resolve

# official yml key -> (section, our key)
YML_KEYS = {
    "layer_num": ("model_config", "layers"),
    "reg_weight": ("model_config", "reg_weight"),
    "embedding_size": ("model_config", "dim"),
    "keep_rate": ("model_config", "keep_rate"),
    "cl_weight": ("model_config", "cl_weight"),
    "temperature": ("model_config", "temperature"),
    "cl_temperature": ("model_config", "temperature"),
    "eps": ("model_config", "eps"),
    "dropout": ("model_config", "dropout"),
    "kd_weight": ("plugin_config", "kd_weight"),
    "kd_temperature": ("plugin_config", "kd_temperature"),
    "mask_ratio": ("plugin_config", "mask_ratio"),
    "recon_weight": ("plugin_config", "recon_weight"),
    "re_temperature": ("plugin_config", "re_temperature"),
    "num_envs": ("plugin_config", "num_envs"),
    "inv_weight": ("plugin_config", "inv_weight"),
    "ex_weight": ("plugin_config", "reg_weight"),
    "alpha": ("plugin_config", "alpha"),
    "beta": ("plugin_config", "beta"),
    "seed": ("train", "seed"),
    "patience": ("train", "patience"),
    "epoch": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"),
    "test_step": ("train", "eval_every"),
}

RLMREC_TRAIN = {"epoch": 3000, "batch_size": 4096, "lr": 1e-3, "test_step": 3, "seed": 2023, "patience": 5}
DMREC_TRAIN = {"epoch": 1000, "batch_size": 1024, "lr": 1e-3, "test_step": 3, "seed": 2024, "patience": 20}

# (model, plugin): {dataset: official values}; every dataset block of the file, plus its train section.
OFFICIAL = {
    ("gccf", "base"): {
        ds: {**RLMREC_TRAIN, "embedding_size": 32, "layer_num": 2, "reg_weight": 1e-6}
        for ds in ("amazon", "yelp", "steam")
    },
    ("lightgcn", "base"): {
        "amazon": {**RLMREC_TRAIN, "embedding_size": 32, "keep_rate": 0.8, "layer_num": 3, "reg_weight": 1e-6},
        "yelp": {**RLMREC_TRAIN, "embedding_size": 32, "keep_rate": 0.8, "layer_num": 3, "reg_weight": 1e-6},
        "steam": {**RLMREC_TRAIN, "embedding_size": 32, "keep_rate": 0.8, "layer_num": 2, "reg_weight": 1e-6},
    },
    ("simgcl", "base"): {
        "amazon": {
            **RLMREC_TRAIN,
            "layer_num": 3,
            "reg_weight": 1e-5,
            "cl_weight": 0.1,
            "temperature": 0.2,
            "eps": 0.9,
        },
        "yelp": {**RLMREC_TRAIN, "layer_num": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.2, "eps": 0.9},
        "steam": {**RLMREC_TRAIN, "layer_num": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.5, "eps": 0.2},
    },
    ("gccf", "rlmrec_con"): {
        "amazon": {**RLMREC_TRAIN, "layer_num": 2, "reg_weight": 1e-6, "kd_weight": 1e-3, "kd_temperature": 0.1},
        "yelp": {**RLMREC_TRAIN, "layer_num": 2, "reg_weight": 1e-6, "kd_weight": 1e-3, "kd_temperature": 0.2},
        "steam": {**RLMREC_TRAIN, "layer_num": 2, "reg_weight": 1e-6, "kd_weight": 1e-2, "kd_temperature": 0.5},
    },
    ("lightgcn", "rlmrec_con"): {
        "amazon": {
            **RLMREC_TRAIN,
            "keep_rate": 0.8,
            "layer_num": 3,
            "reg_weight": 1e-7,
            "kd_weight": 1e-2,
            "kd_temperature": 0.2,
        },
        "yelp": {
            **RLMREC_TRAIN,
            "keep_rate": 0.8,
            "layer_num": 3,
            "reg_weight": 1e-7,
            "kd_weight": 1e-2,
            "kd_temperature": 0.2,
        },
        "steam": {
            **RLMREC_TRAIN,
            "keep_rate": 0.8,
            "layer_num": 3,
            "reg_weight": 1e-8,
            "kd_weight": 1e-3,
            "kd_temperature": 0.1,
        },
    },
    ("simgcl", "rlmrec_con"): {
        "amazon": {
            **RLMREC_TRAIN,
            "layer_num": 3,
            "reg_weight": 1e-5,
            "cl_weight": 0.1,
            "cl_temperature": 0.2,
            "kd_weight": 1e-2,
            "kd_temperature": 0.2,
            "eps": 0.9,
        },
        "yelp": {
            **RLMREC_TRAIN,
            "layer_num": 3,
            "reg_weight": 1e-5,
            "cl_weight": 0.1,
            "cl_temperature": 0.2,
            "kd_weight": 1e-2,
            "kd_temperature": 0.1,
            "eps": 0.9,
        },
        "steam": {
            **RLMREC_TRAIN,
            "layer_num": 3,
            "reg_weight": 1e-5,
            "cl_weight": 0.1,
            "cl_temperature": 0.5,
            "kd_weight": 1e-2,
            "kd_temperature": 0.2,
            "eps": 0.2,
        },
    },
    ("gccf", "rlmrec_gen"): {
        "amazon": {
            **RLMREC_TRAIN,
            "layer_num": 2,
            "reg_weight": 1e-7,
            "mask_ratio": 0.1,
            "recon_weight": 0.01,
            "re_temperature": 0.1,
        },
        "yelp": {
            **RLMREC_TRAIN,
            "layer_num": 2,
            "reg_weight": 1e-6,
            "mask_ratio": 0.05,
            "recon_weight": 0.01,
            "re_temperature": 1.0,
        },
        "steam": {
            **RLMREC_TRAIN,
            "layer_num": 2,
            "reg_weight": 1e-6,
            "mask_ratio": 0.1,
            "recon_weight": 0.01,
            "re_temperature": 0.1,
        },
    },
    ("lightgcn", "rlmrec_gen"): {
        "amazon": {
            **RLMREC_TRAIN,
            "keep_rate": 0.8,
            "layer_num": 2,
            "reg_weight": 1e-7,
            "mask_ratio": 0.15,
            "recon_weight": 0.1,
            "re_temperature": 0.5,
        },
        "yelp": {
            **RLMREC_TRAIN,
            "keep_rate": 0.8,
            "layer_num": 2,
            "reg_weight": 1e-7,
            "mask_ratio": 0.05,
            "recon_weight": 0.01,
            "re_temperature": 0.1,
        },
        "steam": {
            **RLMREC_TRAIN,
            "keep_rate": 0.8,
            "layer_num": 2,
            "reg_weight": 1e-6,
            "mask_ratio": 0.15,
            "recon_weight": 0.1,
            "re_temperature": 0.5,
        },
    },
    ("simgcl", "rlmrec_gen"): {
        "amazon": {
            **RLMREC_TRAIN,
            "layer_num": 3,
            "reg_weight": 1e-5,
            "cl_weight": 0.1,
            "cl_temperature": 0.2,
            "mask_ratio": 0.05,
            "recon_weight": 0.1,
            "re_temperature": 0.2,
            "eps": 0.9,
        },
        "yelp": {
            **RLMREC_TRAIN,
            "layer_num": 3,
            "reg_weight": 1e-5,
            "cl_weight": 0.1,
            "cl_temperature": 0.2,
            "mask_ratio": 0.01,
            "recon_weight": 0.01,
            "re_temperature": 0.05,
            "eps": 0.9,
        },
        "steam": {
            **RLMREC_TRAIN,
            "layer_num": 3,
            "reg_weight": 1e-5,
            "cl_weight": 0.1,
            "cl_temperature": 0.5,
            "mask_ratio": 0.05,
            "recon_weight": 0.01,
            "re_temperature": 0.1,
            "eps": 0.2,
        },
    },
    # lightgcn_proex.yml: seed 2025, patience 20, keep_rate 1.0, embedding 32; amazon num_envs from its log (3).
    ("lightgcn", "proex"): {
        "amazon": {
            "epoch": 3000,
            "batch_size": 4096,
            "lr": 1e-3,
            "test_step": 3,
            "seed": 2025,
            "patience": 20,
            "keep_rate": 1.0,
            "embedding_size": 32,
            "layer_num": 3,
            "reg_weight": 1e-6,
            "num_envs": 3,
            "inv_weight": 10,
            "ex_weight": 0.4,
            "alpha": 0.1,
        },
        "yelp": {
            "epoch": 3000,
            "batch_size": 4096,
            "lr": 1e-3,
            "test_step": 3,
            "seed": 2025,
            "patience": 20,
            "keep_rate": 1.0,
            "embedding_size": 32,
            "layer_num": 3,
            "reg_weight": 1e-6,
            "num_envs": 3,
            "inv_weight": 10,
            "ex_weight": 0.4,
            "alpha": 0.1,
        },
        "steam": {
            "epoch": 3000,
            "batch_size": 4096,
            "lr": 1e-3,
            "test_step": 3,
            "seed": 2025,
            "patience": 20,
            "keep_rate": 1.0,
            "embedding_size": 32,
            "layer_num": 3,
            "reg_weight": 1e-6,
            "num_envs": 2,
            "inv_weight": 10,
            "ex_weight": 2.0,
            "alpha": 0.1,
        },
    },
    ("multvae", "base"): {
        "amazon": {**DMREC_TRAIN, "dropout": 0.3},
        "yelp": {**DMREC_TRAIN, "dropout": 0.3},
        "steam": {**DMREC_TRAIN, "dropout": 0.2},
    },
    ("multvae", "dmrec_g"): {
        "amazon": {**DMREC_TRAIN, "dropout": 0.3, "beta": 0.4},
        "yelp": {**DMREC_TRAIN, "dropout": 0.3, "beta": 0.8},
        "steam": {**DMREC_TRAIN, "dropout": 0.2, "beta": 1.0},
    },
    ("multvae", "dmrec_c"): {
        "amazon": {**DMREC_TRAIN, "dropout": 0.3, "beta": 0.2},
        "yelp": {**DMREC_TRAIN, "dropout": 0.3, "beta": 0.9},
        "steam": {**DMREC_TRAIN, "dropout": 0.2, "beta": 0.6},
    },
    ("multvae", "dmrec_m"): {
        "amazon": {**DMREC_TRAIN, "dropout": 0.3, "beta": 0.6},
        "yelp": {**DMREC_TRAIN, "dropout": 0.3, "beta": 0.4},
        "steam": {**DMREC_TRAIN, "dropout": 0.2, "beta": 0.5},
    },
}

# Settings outside the yml key vocabulary: (model, plugin, dataset) -> {section.key: official value}.
OFFICIAL_EXTRA = {
    ("lightgcn", "proex", "amazon"): {"model_config.include_ego": False},  # lightgcn_proex.py: layers 1..L
    ("lightgcn", "base", "amazon"): {"model_config.include_ego": True},  # RLMRec lightgcn.py: layers 0..L
    ("gccf", "base", "yelp"): {"model_config.self_loops": True},  # only model name 'gccf' gets A + I
    ("gccf", "rlmrec_con", "yelp"): {"model_config.self_loops": False},
    ("gccf", "rlmrec_gen", "amazon"): {"model_config.self_loops": False},
    ("multvae", "proex", "amazon"): {
        "plugin_config.inv_weight": 1.0,
        "plugin_config.align_weight": 1.0,
        "plugin_config.hidden_dim": 600,
    },  # paper A.2.3; DMRec meta-network 600
    ("lightgcn", "proex", "yelp"): {"plugin_config.align_weight": 0.0, "plugin_config.hidden_dim": 784},
    ("gccf", "proex", "amazon"): {"plugin_config.hidden_dim": 816},  # (1536 + 96) // 2
    ("gccf", "rlmrec_con", "amazon"): {"plugin_config.hidden_dim": 816},  # gccf_plus.py MLP
    ("ldiffrec", "base", "amazon"): {
        "model_config.lamda": 0.05,
        "model_config.steps": 5,
        "model_config.noise_scale": 0.5,
        "model_config.noise_min": 0.001,
        "model_config.noise_max": 0.005,
        "model_config.lr1": 5e-4,
        "model_config.lr2": 1e-4,
        "model_config.reweight": True,
    },
    ("ldiffrec", "base", "yelp"): {
        "model_config.lamda": 0.03,
        "model_config.noise_scale": 0.01,
        "model_config.noise_min": 0.005,
        "model_config.noise_max": 0.01,
        "model_config.reweight": False,
    },
    ("cvga", "base", "yelp"): {"model_config.latent_dim": 64, "model_config.dropout": 0.3, "train.batch_size": 1024},
    ("cvga", "dmrec_m", "steam"): {"plugin_config.beta": 0.5, "plugin_config.hidden_dim": 600},
    # AlphaRec: 64-d, 2 layers, no weight decay reaching Adam, lr 5e-4, eval every 5 epochs, patience 20, 500 epochs
    ("lightgcn", "alpharec", "amazon"): {
        "model_config.dim": 64,
        "model_config.layers": 2,
        "model_config.reg_weight": 0.0,
        "model_config.keep_rate": 1.0,
        "train.lr": 5e-4,
        "train.eval_every": 5,
        "train.patience": 20,
        "train.epochs": 500,
        "plugin_config.temperature": 0.15,
        "plugin_config.negatives": 256,
    },
    ("lightgcn", "alpharec", "steam"): {"plugin_config.temperature": 0.2},
    # AlphaRec's seed 101 (parse.py l.25) and validation when (e + 1) % 5 == 0 (abstract_RS.py l.140)
    ("lightgcn", "alpharec", "yelp"): {"train.seed": 101, "train.eval_offset": 1, "plugin_config.temperature": 0.15},
    # L-DiffRec: the released checkpoints' reweight (inference.py l.139-143: amazon-book reweight1, yelp reweight0)
    ("ldiffrec", "base", "steam"): {"model_config.reweight": True},
    ("ldiffrec", "proex", "yelp"): {"model_config.reweight": False},
    # KAR's HEA: 2 shared + 5 task experts, expert MLP 128 -> out
    ("lightgcn", "kar", "yelp"): {
        "plugin_config.n_shared": 2,
        "plugin_config.n_specific": 5,
        "plugin_config.expert_hidden": 128,
        "train.patience": 5,
    },
}

# Values whose None means "none": no profile bank (plug-ins without profiles), every profile of the bank, and
# the evaluation batch left to the device (it changes speed, never results).
NONE_MEANS_NONE = {"profiles", "plugin_config.profiles", "train.eval_batch_size"}

CASES = [
    (m, p, ds, {YML_KEYS[k]: v for k, v in values.items()})
    for (m, p), per_ds in OFFICIAL.items()
    for ds, values in per_ds.items()
]
CASES += [
    (m, p, ds, {tuple(k.split(".", 1)): v for k, v in values.items()}) for (m, p, ds), values in OFFICIAL_EXTRA.items()
]


def _resolved(model: str, plugin: str, dataset: str):
    profiles = None if plugin == "base" else "any-bank"
    return resolve(CellConfig(dataset=dataset, model=model, plugin=plugin, profiles=profiles), text_dim=1536)


@pytest.mark.parametrize("model,plugin,dataset,expected", CASES, ids=[f"{m}-{p}-{ds}" for m, p, ds, _ in CASES])
def test_official_value_resolves(model, plugin, dataset, expected):
    got = _resolved(model, plugin, dataset).to_dict()
    wrong = {f"{s}.{k}": (got[s][k], v) for (s, k), v in expected.items() if got[s][k] != v}
    assert not wrong, f"{model}/{plugin}/{dataset}: (resolved, official) differ: {wrong}"


@pytest.mark.parametrize("model,plugin", sorted({(m, p) for m, p, _, _ in CASES}))
def test_no_value_is_none_and_every_value_has_a_source(model, plugin):
    r = _resolved(model, plugin, "yelp")
    flat = {f"{s}.{k}": v for s in ("model_config", "plugin_config", "train") for k, v in r.to_dict()[s].items()}
    assert not {k for k, v in flat.items() if v is None} - NONE_MEANS_NONE
    assert set(flat) == set(r.sources)


def test_a_users_dataset_takes_the_amazon_rows_and_says_so():
    r = resolve(CellConfig(dataset="path/to/ratings.csv", model="gccf", plugin="rlmrec_con", profiles="x"))
    amazon = resolve(CellConfig(dataset="amazon", model="gccf", plugin="rlmrec_con", profiles="x"))
    assert r.to_dict()["plugin_config"] == amazon.to_dict()["plugin_config"]
    assert "Amazon-Book row" in r.sources["plugin_config.kd_temperature"]


def test_overrides_win_and_name_their_layer():
    from proex.experiment import with_overrides

    cell = CellConfig(dataset="steam", model="lightgcn", plugin="proex", profiles="x")
    cell = with_overrides(cell, {"model_config": {"layers": 4}}, "hparams file: h.yaml")
    cell = with_overrides(cell, {"model_config": {"layers": 5}, "train": {"lr": 0.01}}, "command line: --set")
    r = resolve(cell)
    assert r.model_cfg.layers == 5 and r.sources["model_config.layers"] == "command line: --set"
    assert r.sources["train.lr"] == "command line: --set"
    assert r.sources["model_config.reg_weight"].startswith("reference: BlueGhostYi/ProRec")
    assert r.sources["train.compile"] == "code default: TrainConfig.compile"


def test_grid_cells_record_their_layers(tmp_path):
    from proex.grid import load_grid

    (tmp_path / "hp").mkdir()
    (tmp_path / "hp" / "lightgcn-base-amazon.yaml").write_text("model_config: {layers: 4}\n")
    (tmp_path / "g.yaml").write_text(
        "name: g\naxes: {model: [lightgcn], plugin: [base], dataset: [amazon], seed: [1],\n"
        "  variant: [{name: v, train: {patience: 9}}]}\nfixed: {train: {epochs: 7}}\nhparams: hp\n"
    )
    cell = load_grid(str(tmp_path / "g.yaml")).expand()[0].config
    r = resolve(cell)
    assert (r.model_cfg.layers, r.train_cfg.epochs, r.train_cfg.patience, r.train_cfg.seed) == (4, 7, 9, 1)
    assert r.sources["model_config.layers"].startswith("hparams file:")
    assert r.sources["train.epochs"].startswith("grid fixed:")
    assert r.sources["train.patience"].startswith("grid variant 'v'")
    assert r.sources["train.seed"].startswith("grid axes.seed")


def test_proex_config_command_prints_values_and_sources(capsys):
    assert cli.main(["config", "--model", "lightgcn", "--plugin", "proex", "--dataset", "steam"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model_config"]["layers"] == 3 and cfg["train"]["patience"] == 20
    assert cfg["plugin_config"]["hidden_dim"] == 784
    assert (
        cli.main(
            [
                "config",
                "--model",
                "gccf",
                "--plugin",
                "rlmrec_con",
                "--dataset",
                "yelp",
                "--sources",
                "--set",
                "layers=3",
            ]
        )
        == 0
    )
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model_config"]["layers"] == {"value": 3, "source": "command line: --set"}
    assert cfg["plugin_config"]["kd_temperature"]["value"] == 0.2
    assert "gccf_plus.yml" in cfg["plugin_config"]["kd_temperature"]["source"]
