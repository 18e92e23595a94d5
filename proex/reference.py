"""The reference configurations: one table of every official setting, (model x plug-in x dataset) -> settings.

Each row names where its numbers come from (a public repository and file). `settings(model, plugin, dataset)`
applies the matching rows in table order, so a later, more specific row overrides an earlier one: the training
protocol of a model family, then each base model, then each plug-in on that base. `proex.experiment.resolve`
is the only reader; it layers a cell's own overrides (hparams file, grid, study trial, command line) on top
and records which layer set every value.

Datasets: `amazon`, `yelp`, `steam` are the paper's (RLMRec splits). Every official configuration file names
`amazon` as its default dataset, so a dataset outside the paper (a user's table, the synthetic data) takes the
Amazon-Book rows, and its sources say so.

A row keys a value by section: `model` (the base model's Config), `plugin` (the plug-in's Config) and `train`
(`proex.train.TrainConfig`). Values missing from every row keep the Config's own field default ("code default").
Departures from an official file are stated in the row's source. A value an official file does not give for
this (model, plug-in, dataset), copied from another model, plug-in or dataset or extrapolated, has a source that
starts with "borrowed from ..." or "extrapolated: ..." (`proex.protocol.is_borrowed`): `proex config --sources`
shows it and a grid lists such cells when it starts. Where the paper and the official code disagree, the
choice and its reason are in docs/reference.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .protocol import is_borrowed

PAPER_DATASETS = ("amazon", "yelp", "steam")
PAIRWISE = ("gccf", "lightgcn", "simgcl")
GENERATIVE = ("multvae", "ldiffrec", "cvga")
ALL = "*"

RLMREC = "HKUDS/RLMRec encoder/config/modelconf/"
PROREC = "BlueGhostYi/ProRec encoder/config/modelconf/"
PROREC_LOG = "BlueGhostYi/ProRec encoder/save/log/lightgcn_proex/"
DIFFREC = "YiyanXu/DiffRec L-DiffRec/inference.py"
IDGREC = "BlueGhostYi/ID-GRec configure/CVGA.txt"
ALPHAREC = "LehengTHU/AlphaRec parse.py, README.md run commands and models/General/AlphaRec.py"
KAR_CODE = "YunjiaXi/Open-World-Knowledge-Augmented-Recommendation"
PAPER = "ProEx paper (KDD'26) A.2.3"


@dataclass(frozen=True)
class Row:
    """Settings for the cells matching (model, plugin, dataset); each key is a name, a tuple of names or '*'."""

    model: str | tuple[str, ...]
    plugin: str | tuple[str, ...]
    dataset: str | tuple[str, ...]
    source: str
    model_config: Mapping[str, Any] = field(default_factory=dict)
    plugin_config: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, model: str, plugin: str, dataset: str) -> bool:
        return all(
            v == ALL or key == v or (isinstance(v, tuple) and key in v)
            for key, v in ((model, self.model), (plugin, self.plugin), (dataset, self.dataset))
        )


def _per_dataset(model, plugin, source: str, section: str, table: dict[str, dict]) -> list[Row]:
    """One row per paper dataset from {dataset: values} (a yml's dataset blocks)."""
    return [Row(model, plugin, ds, f"{source} ({ds} block)", **{section: values}) for ds, values in table.items()]


def _dmrec(plugin: str, source: str, table: dict[str, dict]) -> list[Row]:
    """DMRec's per-dataset values: official on Mult-VAE (the only base its code has), borrowed on the others."""
    return [
        *_per_dataset("multvae", plugin, source, "plugin_config", table),
        *_per_dataset(
            ("ldiffrec", "cvga"),
            plugin,
            "borrowed from DMRec on Mult-VAE (its code has no other generative base): " + source,
            "plugin_config",
            table,
        ),
    ]


def _blocks(model, plugin, source: str, model_table: dict[str, dict], plugin_table: dict[str, dict]) -> list[Row]:
    """One row per paper dataset carrying both the model's and the plug-in's values of a yml's dataset block."""
    return [
        Row(
            model,
            plugin,
            ds,
            f"{source} ({ds} block)",
            model_config=model_table.get(ds, {}),
            plugin_config=plugin_table.get(ds, {}),
        )
        for ds in PAPER_DATASETS
    ]


MULTVAE_TRAIN = {"epochs": 1000, "batch_size": 1024, "lr": 1e-3, "eval_every": 3, "patience": 20, "seed": 2024}

ROWS: list[Row] = [
    # ---- training protocols of the two families -------------------------------------------------------------
    Row(
        PAIRWISE,
        ALL,
        ALL,
        RLMREC + "{gccf,lightgcn,simgcl}.yml (train, optimizer)",
        train={"epochs": 3000, "batch_size": 4096, "lr": 1e-3, "eval_every": 3, "patience": 5, "seed": 2023},
    ),
    Row("multvae", ALL, ALL, PROREC + "mult_vae_{godm,cpdm,mddm}.yml (train, optimizer)", train=MULTVAE_TRAIN),
    Row(
        ("ldiffrec", "cvga"),
        ALL,
        ALL,
        "borrowed from DMRec's Mult-VAE training protocol ("
        + PROREC
        + "mult_vae_{godm,cpdm,mddm}.yml train, optimizer; paper A.2.3: one protocol for the generative bases); "
        "L-DiffRec's own: 1000 epochs, batch 400, validation every 5 epochs, stop 20 epochs after the best "
        "(YiyanXu/DiffRec L-DiffRec/main.py l.248, l.301); ID-GRec's own CVGA protocol: patience 10 validations "
        "every 10 epochs, batch 1024 (BlueGhostYi/ID-GRec configure/CVGA.txt)",
        train=MULTVAE_TRAIN,
    ),
    # ---- base models -----------------------------------------------------------------------------------------
    *_per_dataset(
        "gccf",
        ALL,
        RLMREC + "gccf.yml",
        "model_config",
        {ds: {"dim": 32, "layers": 2, "reg_weight": 1e-6, "self_loops": True} for ds in PAPER_DATASETS},
    ),
    *_per_dataset(
        "lightgcn",
        ALL,
        RLMREC + "lightgcn.yml",
        "model_config",
        {
            "amazon": {"dim": 32, "layers": 3, "reg_weight": 1e-6, "keep_rate": 0.8, "include_ego": True},
            "yelp": {"dim": 32, "layers": 3, "reg_weight": 1e-6, "keep_rate": 0.8, "include_ego": True},
            "steam": {"dim": 32, "layers": 2, "reg_weight": 1e-6, "keep_rate": 0.8, "include_ego": True},
        },
    ),
    *_per_dataset(
        "simgcl",
        ALL,
        RLMREC + "simgcl.yml",
        "model_config",
        {
            "amazon": {"dim": 32, "layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.2, "eps": 0.9},
            "yelp": {"dim": 32, "layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.2, "eps": 0.9},
            "steam": {"dim": 32, "layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.5, "eps": 0.2},
        },
    ),
    *_per_dataset(
        "multvae",
        ALL,
        PROREC + "mult_vae_godm.yml (DMRec's Mult-VAE: no input norm, no KL anneal)",
        "model_config",
        {
            "amazon": {"hidden_dim": 600, "latent_dim": 200, "dropout": 0.3},
            "yelp": {"hidden_dim": 600, "latent_dim": 200, "dropout": 0.3},
            "steam": {"hidden_dim": 600, "latent_dim": 200, "dropout": 0.2},
        },
    ),
    *_per_dataset(
        "ldiffrec",
        ALL,
        DIFFREC + " (clean setting; n_cate 1 per the ProEx paper A.2.3)",
        "model_config",
        {
            "amazon": {
                "lamda": 0.05,
                "steps": 5,
                "noise_scale": 0.5,
                "noise_min": 0.001,
                "noise_max": 0.005,
                "lr1": 5e-4,
                "lr2": 1e-4,
                "reweight": True,
            },
            "yelp": {
                "lamda": 0.03,
                "steps": 5,
                "noise_scale": 0.01,
                "noise_min": 0.005,
                "noise_max": 0.01,
                "lr1": 5e-4,
                "lr2": 1e-4,
                "reweight": False,
            },
        },
    ),
    Row(
        "ldiffrec",
        ALL,
        "yelp",
        DIFFREC + " l.142-143: the released yelp_clean checkpoint was trained with "
        "reweight0 (amazon-book_clean: reweight1). The public trainer cannot run it (models/gaussian_diffusion.py "
        "l.142-155 leave `loss` unset without reweight, and main.py's type=bool reads '--reweight=0' as True), "
        "so proex runs the unit-weight branch that code intends: the released model's setting, not the "
        "public trainer's",
        model_config={"reweight": False},
    ),
    Row(
        "ldiffrec",
        ALL,
        "steam",
        "borrowed from L-DiffRec's Amazon-Book setting: " + DIFFREC + " has no Steam one",
        model_config={
            "lamda": 0.05,
            "steps": 5,
            "noise_scale": 0.5,
            "noise_min": 0.001,
            "noise_max": 0.005,
            "lr1": 5e-4,
            "lr2": 1e-4,
            "reweight": True,
        },
    ),
    *_per_dataset(
        "cvga",
        ALL,
        IDGREC + " (embedding_size, dropout)",
        "model_config",
        {ds: {"latent_dim": 64, "dropout": 0.3} for ds in PAPER_DATASETS},
    ),
    # ---- ProEx (official code on LightGCN only; the other bases follow it and the paper) ----------------------
    *_blocks(
        "lightgcn",
        "proex",
        PROREC + "lightgcn_proex.yml",
        {ds: {"layers": 3, "reg_weight": 1e-6, "keep_rate": 1.0, "include_ego": False} for ds in PAPER_DATASETS},
        {
            "amazon": {"num_envs": 4, "reg_weight": 0.4, "alpha": 0.1, "inv_weight": 10.0},
            "yelp": {"num_envs": 3, "reg_weight": 0.4, "alpha": 0.1, "inv_weight": 10.0},
            "steam": {"num_envs": 2, "reg_weight": 2.0, "alpha": 0.1, "inv_weight": 10.0},
        },
    ),
    Row(
        "lightgcn",
        "proex",
        "amazon",
        PROREC_LOG + "amazon_*.log: the logged run behind the reported numbers used num_envs 3, not the yml's 4",
        plugin_config={"num_envs": 3},
    ),
    *_blocks(
        ("gccf", "simgcl") + GENERATIVE,
        "proex",
        "borrowed from ProEx on LightGCN (no official ProEx code for this base): " + PROREC + "lightgcn_proex.yml",
        {},
        {
            "amazon": {"num_envs": 3, "reg_weight": 0.4, "alpha": 0.1},
            "yelp": {"num_envs": 3, "reg_weight": 0.4, "alpha": 0.1},
            "steam": {"num_envs": 2, "reg_weight": 2.0, "alpha": 0.1},
        },
    ),
    Row(
        "lightgcn",
        "proex",
        ALL,
        PROREC + "lightgcn_proex.yml (seed 2025, patience 20; Ω's τ 0.2 and no alignment term in lightgcn_proex.py)",
        plugin_config={"reg_temperature": 0.2, "align_weight": 0.0},
        train={"patience": 20, "seed": 2025},
    ),
    Row(
        ("gccf", "simgcl"),
        "proex",
        ALL,
        "borrowed from ProEx on LightGCN (no official ProEx code for this base): "
        + PROREC
        + "lightgcn_proex.yml (seed 2025, patience 20, λ3 = inv_weight 10; Ω's τ 0.2 and no alignment "
        "term in lightgcn_proex.py)",
        plugin_config={"reg_temperature": 0.2, "align_weight": 0.0, "inv_weight": 10.0},
        train={"patience": 20, "seed": 2025},
    ),
    Row(
        GENERATIVE,
        "proex",
        ALL,
        PAPER + ": λ3 = 1.0, λ1 from [0, 1], Ω's τ 0.2 [no official code]",
        plugin_config={"inv_weight": 1.0, "align_weight": 1.0, "reg_temperature": 0.2},
    ),
    Row(
        GENERATIVE,
        "proex",
        ALL,
        "borrowed from DMRec's meta-network width 600 (" + PROREC + "mult_vae_mddm.yml "
        "family): ProEx gives none for its generative bases",
        plugin_config={"hidden_dim": 600},
    ),
    # ---- RLMRec-Con (*_plus) and RLMRec-Gen (*_gene) ---------------------------------------------------------
    *_blocks(
        "gccf",
        "rlmrec_con",
        RLMREC + "gccf_plus.yml (no self-loops: only model 'gccf' gets them)",
        {ds: {"layers": 2, "reg_weight": 1e-6, "self_loops": False} for ds in PAPER_DATASETS},
        {
            "amazon": {"kd_weight": 1e-3, "kd_temperature": 0.1},
            "yelp": {"kd_weight": 1e-3, "kd_temperature": 0.2},
            "steam": {"kd_weight": 1e-2, "kd_temperature": 0.5},
        },
    ),
    *_blocks(
        "lightgcn",
        "rlmrec_con",
        RLMREC + "lightgcn_plus.yml",
        {
            "amazon": {"layers": 3, "reg_weight": 1e-7, "keep_rate": 0.8, "include_ego": True},
            "yelp": {"layers": 3, "reg_weight": 1e-7, "keep_rate": 0.8, "include_ego": True},
            "steam": {"layers": 3, "reg_weight": 1e-8, "keep_rate": 0.8, "include_ego": True},
        },
        {
            "amazon": {"kd_weight": 1e-2, "kd_temperature": 0.2},
            "yelp": {"kd_weight": 1e-2, "kd_temperature": 0.2},
            "steam": {"kd_weight": 1e-3, "kd_temperature": 0.1},
        },
    ),
    *_blocks(
        "simgcl",
        "rlmrec_con",
        RLMREC + "simgcl_plus.yml (cl_temperature is SimGCL's temperature)",
        {
            "amazon": {"layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.2, "eps": 0.9},
            "yelp": {"layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.2, "eps": 0.9},
            "steam": {"layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.5, "eps": 0.2},
        },
        {
            "amazon": {"kd_weight": 1e-2, "kd_temperature": 0.2},
            "yelp": {"kd_weight": 1e-2, "kd_temperature": 0.1},
            "steam": {"kd_weight": 1e-2, "kd_temperature": 0.2},
        },
    ),
    *_blocks(
        "gccf",
        "rlmrec_gen",
        RLMREC + "gccf_gene.yml (no self-loops: only model 'gccf' gets them)",
        {
            "amazon": {"layers": 2, "reg_weight": 1e-7, "self_loops": False},
            "yelp": {"layers": 2, "reg_weight": 1e-6, "self_loops": False},
            "steam": {"layers": 2, "reg_weight": 1e-6, "self_loops": False},
        },
        {
            "amazon": {"mask_ratio": 0.10, "recon_weight": 0.01, "re_temperature": 0.1},
            "yelp": {"mask_ratio": 0.05, "recon_weight": 0.01, "re_temperature": 1.0},
            "steam": {"mask_ratio": 0.10, "recon_weight": 0.01, "re_temperature": 0.1},
        },
    ),
    *_blocks(
        "lightgcn",
        "rlmrec_gen",
        RLMREC + "lightgcn_gene.yml",
        {
            "amazon": {"layers": 2, "reg_weight": 1e-7, "keep_rate": 0.8, "include_ego": True},
            "yelp": {"layers": 2, "reg_weight": 1e-7, "keep_rate": 0.8, "include_ego": True},
            "steam": {"layers": 2, "reg_weight": 1e-6, "keep_rate": 0.8, "include_ego": True},
        },
        {
            "amazon": {"mask_ratio": 0.15, "recon_weight": 0.1, "re_temperature": 0.5},
            "yelp": {"mask_ratio": 0.05, "recon_weight": 0.01, "re_temperature": 0.1},
            "steam": {"mask_ratio": 0.15, "recon_weight": 0.1, "re_temperature": 0.5},
        },
    ),
    *_blocks(
        "simgcl",
        "rlmrec_gen",
        RLMREC + "simgcl_gene.yml (cl_temperature is SimGCL's temperature)",
        {
            "amazon": {"layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.2, "eps": 0.9},
            "yelp": {"layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.2, "eps": 0.9},
            "steam": {"layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.5, "eps": 0.2},
        },
        {
            "amazon": {"mask_ratio": 0.05, "recon_weight": 0.1, "re_temperature": 0.2},
            "yelp": {"mask_ratio": 0.01, "recon_weight": 0.01, "re_temperature": 0.05},
            "steam": {"mask_ratio": 0.05, "recon_weight": 0.01, "re_temperature": 0.1},
        },
    ),
    # ---- DMRec-G/C/M on the generative bases (beta per variant and dataset) -----------------------------------
    *_dmrec(
        "dmrec_g",
        PROREC + "mult_vae_godm.yml",
        {
            "amazon": {"beta": 0.4, "hidden_dim": 600},
            "yelp": {"beta": 0.8, "hidden_dim": 600},
            "steam": {"beta": 1.0, "hidden_dim": 600},
        },
    ),
    *_dmrec(
        "dmrec_c",
        PROREC + "mult_vae_cpdm.yml",
        {
            "amazon": {"beta": 0.2, "hidden_dim": 600},
            "yelp": {"beta": 0.9, "hidden_dim": 600},
            "steam": {"beta": 0.6, "hidden_dim": 600},
        },
    ),
    *_dmrec(
        "dmrec_m",
        PROREC + "mult_vae_mddm.yml",
        {
            "amazon": {"beta": 0.6, "hidden_dim": 600},
            "yelp": {"beta": 0.4, "hidden_dim": 600},
            "steam": {"beta": 0.5, "hidden_dim": 600},
        },
    ),
    # ---- other LLM-enhanced baselines ------------------------------------------------------------------------
    Row(
        "lightgcn",
        "alpharec",
        ALL,
        ALPHAREC + " (64-d, 2 layers averaged from layer 0, no edge dropout, no "
        "weight decay reaching the optimiser; lr 5e-4, 500 epochs, seed 101 (parse.py l.25), 20 evaluations of "
        "patience (README run commands: --patience 20) after epochs e with (e + 1) % 5 == 0 "
        "(models/General/base/abstract_RS.py l.140))",
        model_config={"dim": 64, "layers": 2, "include_ego": True, "keep_rate": 1.0, "reg_weight": 0.0},
        plugin_config={"hidden_mult": 2.0, "negatives": 256},
        train={
            "lr": 5e-4,
            "epochs": 500,
            "eval_every": 5,
            "eval_offset": 1,
            "patience": 20,
            "batch_size": 4096,
            "seed": 101,
        },
    ),
    Row(
        "lightgcn",
        "alpharec",
        "amazon",
        ALPHAREC + " (README: τ 0.15 on amazon_book_2014)",
        plugin_config={"temperature": 0.15},
    ),
    Row(
        "lightgcn",
        "alpharec",
        "yelp",
        "extrapolated: AlphaRec has no Yelp setting; τ 0.15, its value for every "
        "non-game dataset (LehengTHU/AlphaRec README: amazon_book_2014, amazon_movie)",
        plugin_config={"temperature": 0.15},
    ),
    Row(
        "lightgcn",
        "alpharec",
        "steam",
        "borrowed from AlphaRec's Amazon-Games setting (no Steam one): τ 0.2 (LehengTHU/AlphaRec README: amazon_game)",
        plugin_config={"temperature": 0.2},
    ),
    Row(
        PAIRWISE,
        "kar",
        ALL,
        KAR_CODE + " RS/run_ctr.py l.29-30 (export_num 2 shared, specific_export_num 5; "
        "RS/main_ctr.py l.197 defaults it to 6) and RS/main_ctr.py convert_arch '128,32' (expert MLP 128 -> out), "
        "the HEA of RS/layers.py [no official top-K code: on the base's own settings]",
        plugin_config={"n_shared": 2, "n_specific": 5, "expert_hidden": 128},
    ),
]


def settings(model: str, plugin: str, dataset: str) -> dict[str, dict[str, tuple[Any, str]]]:
    """{section: {key: (value, source)}} of the rows matching the cell, later rows winning.

    dataset: the registry key ("amazon", a user's table name, "synthetic"); one outside the paper's three
    takes the Amazon-Book rows."""
    generic = dataset not in PAPER_DATASETS
    key = "amazon" if generic else dataset
    out: dict[str, dict[str, tuple[Any, str]]] = {"model_config": {}, "plugin_config": {}, "train": {}}
    for row in ROWS:
        if not row.matches(model, plugin, key):
            continue
        source = row.source if is_borrowed(row.source) else f"reference: {row.source}"
        if generic and row.dataset != ALL:
            source = (
                f"borrowed from the Amazon-Book row (the default for dataset {dataset!r}, outside the paper): {source}"
            )
        for section in out:
            for name, value in getattr(row, section).items():
                out[section][name] = (value, source)
    return out
