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
Departures from an official file are stated in the row's source.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

PAPER_DATASETS = ("amazon", "yelp", "steam")
PAIRWISE = ("gccf", "lightgcn", "simgcl")
GENERATIVE = ("multvae", "ldiffrec", "cvga")
ALL = "*"

RLMREC = "HKUDS/RLMRec encoder/config/modelconf/"
PROREC = "BlueGhostYi/ProRec encoder/config/modelconf/"
PROREC_LOG = "BlueGhostYi/ProRec encoder/save/log/lightgcn_proex/"
DIFFREC = "YiyanXu/DiffRec L-DiffRec/inference.py"
IDGREC = "BlueGhostYi/ID-GRec configure/CVGA.txt"
ALPHAREC = "LehengTHU/AlphaRec parse.py and models/General/AlphaRec.py"
KAR_CODE = "YunjiaXi/Open-World-Knowledge-Augmented-Recommendation RS/layers.py (HEA)"
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
        return all(v == ALL or key == v or (isinstance(v, tuple) and key in v)
                   for key, v in ((model, self.model), (plugin, self.plugin), (dataset, self.dataset)))


def _per_dataset(model, plugin, source: str, section: str, table: dict[str, dict]) -> list[Row]:
    """One row per paper dataset from {dataset: values} (a yml's dataset blocks)."""
    return [Row(model, plugin, ds, f"{source} ({ds} block)", **{section: values}) for ds, values in table.items()]


def _blocks(model, plugin, source: str, model_table: dict[str, dict], plugin_table: dict[str, dict]) -> list[Row]:
    """One row per paper dataset carrying both the model's and the plug-in's values of a yml's dataset block."""
    return [Row(model, plugin, ds, f"{source} ({ds} block)", model_config=model_table.get(ds, {}),
                plugin_config=plugin_table.get(ds, {})) for ds in PAPER_DATASETS]


ROWS: list[Row] = [
    # ---- training protocols of the two families -------------------------------------------------------------
    Row(PAIRWISE, ALL, ALL, RLMREC + "{gccf,lightgcn,simgcl}.yml (train, optimizer)",
        train={"epochs": 3000, "batch_size": 4096, "lr": 1e-3, "eval_every": 3, "patience": 5, "seed": 2023}),
    Row(GENERATIVE, ALL, ALL, PROREC + "mult_vae_{godm,cpdm,mddm}.yml (train, optimizer)",
        train={"epochs": 1000, "batch_size": 1024, "lr": 1e-3, "eval_every": 3, "patience": 20, "seed": 2024}),

    # ---- base models -----------------------------------------------------------------------------------------
    *_per_dataset("gccf", ALL, RLMREC + "gccf.yml", "model_config", {
        ds: {"dim": 32, "layers": 2, "reg_weight": 1e-6, "self_loops": True} for ds in PAPER_DATASETS}),
    *_per_dataset("lightgcn", ALL, RLMREC + "lightgcn.yml", "model_config", {
        "amazon": {"dim": 32, "layers": 3, "reg_weight": 1e-6, "keep_rate": 0.8, "include_ego": True},
        "yelp": {"dim": 32, "layers": 3, "reg_weight": 1e-6, "keep_rate": 0.8, "include_ego": True},
        "steam": {"dim": 32, "layers": 2, "reg_weight": 1e-6, "keep_rate": 0.8, "include_ego": True}}),
    *_per_dataset("simgcl", ALL, RLMREC + "simgcl.yml", "model_config", {
        "amazon": {"dim": 32, "layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.2, "eps": 0.9},
        "yelp": {"dim": 32, "layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.2, "eps": 0.9},
        "steam": {"dim": 32, "layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.5, "eps": 0.2}}),
    *_per_dataset("multvae", ALL, PROREC + "mult_vae_godm.yml (DMRec's Mult-VAE: no input norm, no KL anneal)",
                  "model_config", {
        "amazon": {"hidden_dim": 600, "latent_dim": 200, "dropout": 0.3},
        "yelp": {"hidden_dim": 600, "latent_dim": 200, "dropout": 0.3},
        "steam": {"hidden_dim": 600, "latent_dim": 200, "dropout": 0.2}}),
    *_per_dataset("ldiffrec", ALL, DIFFREC + " (clean setting; n_cate 1 per the ProEx paper A.2.3)", "model_config", {
        "amazon": {"lamda": 0.05, "steps": 5, "noise_scale": 0.5, "noise_min": 0.001, "noise_max": 0.005,
                   "lr1": 5e-4, "lr2": 1e-4, "reweight": True},
        "yelp": {"lamda": 0.03, "steps": 5, "noise_scale": 0.01, "noise_min": 0.005, "noise_max": 0.01,
                 "lr1": 5e-4, "lr2": 1e-4, "reweight": True}}),
    Row("ldiffrec", ALL, "steam", DIFFREC + " has no Steam setting: its Amazon-Book one",
        model_config={"lamda": 0.05, "steps": 5, "noise_scale": 0.5, "noise_min": 0.001, "noise_max": 0.005,
                      "lr1": 5e-4, "lr2": 1e-4, "reweight": True}),
    *_per_dataset("cvga", ALL, IDGREC + " (embedding_size, dropout)", "model_config", {
        ds: {"latent_dim": 64, "dropout": 0.3} for ds in PAPER_DATASETS}),

    # ---- ProEx (official code on LightGCN only; the other bases follow it and the paper) ----------------------
    *_blocks("lightgcn", "proex", PROREC + "lightgcn_proex.yml", {
        ds: {"layers": 3, "reg_weight": 1e-6, "keep_rate": 1.0, "include_ego": False} for ds in PAPER_DATASETS}, {
        "amazon": {"num_envs": 4, "reg_weight": 0.4, "alpha": 0.1, "inv_weight": 10.0},
        "yelp": {"num_envs": 3, "reg_weight": 0.4, "alpha": 0.1, "inv_weight": 10.0},
        "steam": {"num_envs": 2, "reg_weight": 2.0, "alpha": 0.1, "inv_weight": 10.0}}),
    Row("lightgcn", "proex", "amazon", PROREC_LOG + "amazon_*.log: the logged run behind the reported numbers "
        "used num_envs 3, not the yml's 4", plugin_config={"num_envs": 3}),
    *_blocks(("gccf", "simgcl") + GENERATIVE, "proex", PROREC + "lightgcn_proex.yml, applied to this base "
             "[no official code for it]", {}, {
        "amazon": {"num_envs": 3, "reg_weight": 0.4, "alpha": 0.1},
        "yelp": {"num_envs": 3, "reg_weight": 0.4, "alpha": 0.1},
        "steam": {"num_envs": 2, "reg_weight": 2.0, "alpha": 0.1}}),
    Row(PAIRWISE, "proex", ALL, PROREC + "lightgcn_proex.yml (seed 2025, patience 20; Ω's τ 0.2 and no "
        "alignment term in lightgcn_proex.py)", plugin_config={"reg_temperature": 0.2, "align_weight": 0.0},
        train={"patience": 20, "seed": 2025}),
    Row(("gccf", "simgcl"), "proex", ALL, PROREC + "lightgcn_proex.yml (λ3 = inv_weight 10) [no official code "
        "for this base]", plugin_config={"inv_weight": 10.0}),
    Row(GENERATIVE, "proex", ALL, PAPER + ": λ3 = 1.0, λ1 from [0, 1], Ω's τ 0.2; DMRec's meta-network width 600 "
        "(" + PROREC + "mult_vae_mddm.yml family) [no official code]",
        plugin_config={"inv_weight": 1.0, "align_weight": 1.0, "hidden_dim": 600, "reg_temperature": 0.2}),

    # ---- RLMRec-Con (*_plus) and RLMRec-Gen (*_gene) ---------------------------------------------------------
    *_blocks("gccf", "rlmrec_con", RLMREC + "gccf_plus.yml (no self-loops: only model 'gccf' gets them)", {
        ds: {"layers": 2, "reg_weight": 1e-6, "self_loops": False} for ds in PAPER_DATASETS}, {
        "amazon": {"kd_weight": 1e-3, "kd_temperature": 0.1},
        "yelp": {"kd_weight": 1e-3, "kd_temperature": 0.2},
        "steam": {"kd_weight": 1e-2, "kd_temperature": 0.5}}),
    *_blocks("lightgcn", "rlmrec_con", RLMREC + "lightgcn_plus.yml", {
        "amazon": {"layers": 3, "reg_weight": 1e-7, "keep_rate": 0.8, "include_ego": True},
        "yelp": {"layers": 3, "reg_weight": 1e-7, "keep_rate": 0.8, "include_ego": True},
        "steam": {"layers": 3, "reg_weight": 1e-8, "keep_rate": 0.8, "include_ego": True}}, {
        "amazon": {"kd_weight": 1e-2, "kd_temperature": 0.2},
        "yelp": {"kd_weight": 1e-2, "kd_temperature": 0.2},
        "steam": {"kd_weight": 1e-3, "kd_temperature": 0.1}}),
    *_blocks("simgcl", "rlmrec_con", RLMREC + "simgcl_plus.yml (cl_temperature is SimGCL's temperature)", {
        "amazon": {"layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.2, "eps": 0.9},
        "yelp": {"layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.2, "eps": 0.9},
        "steam": {"layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.5, "eps": 0.2}}, {
        "amazon": {"kd_weight": 1e-2, "kd_temperature": 0.2},
        "yelp": {"kd_weight": 1e-2, "kd_temperature": 0.1},
        "steam": {"kd_weight": 1e-2, "kd_temperature": 0.2}}),
    *_blocks("gccf", "rlmrec_gen", RLMREC + "gccf_gene.yml (no self-loops: only model 'gccf' gets them)", {
        "amazon": {"layers": 2, "reg_weight": 1e-7, "self_loops": False},
        "yelp": {"layers": 2, "reg_weight": 1e-6, "self_loops": False},
        "steam": {"layers": 2, "reg_weight": 1e-6, "self_loops": False}}, {
        "amazon": {"mask_ratio": 0.10, "recon_weight": 0.01, "re_temperature": 0.1},
        "yelp": {"mask_ratio": 0.05, "recon_weight": 0.01, "re_temperature": 1.0},
        "steam": {"mask_ratio": 0.10, "recon_weight": 0.01, "re_temperature": 0.1}}),
    *_blocks("lightgcn", "rlmrec_gen", RLMREC + "lightgcn_gene.yml", {
        "amazon": {"layers": 2, "reg_weight": 1e-7, "keep_rate": 0.8, "include_ego": True},
        "yelp": {"layers": 2, "reg_weight": 1e-7, "keep_rate": 0.8, "include_ego": True},
        "steam": {"layers": 2, "reg_weight": 1e-6, "keep_rate": 0.8, "include_ego": True}}, {
        "amazon": {"mask_ratio": 0.15, "recon_weight": 0.1, "re_temperature": 0.5},
        "yelp": {"mask_ratio": 0.05, "recon_weight": 0.01, "re_temperature": 0.1},
        "steam": {"mask_ratio": 0.15, "recon_weight": 0.1, "re_temperature": 0.5}}),
    *_blocks("simgcl", "rlmrec_gen", RLMREC + "simgcl_gene.yml (cl_temperature is SimGCL's temperature)", {
        "amazon": {"layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.2, "eps": 0.9},
        "yelp": {"layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.2, "eps": 0.9},
        "steam": {"layers": 3, "reg_weight": 1e-5, "cl_weight": 0.1, "temperature": 0.5, "eps": 0.2}}, {
        "amazon": {"mask_ratio": 0.05, "recon_weight": 0.1, "re_temperature": 0.2},
        "yelp": {"mask_ratio": 0.01, "recon_weight": 0.01, "re_temperature": 0.05},
        "steam": {"mask_ratio": 0.05, "recon_weight": 0.01, "re_temperature": 0.1}}),

    # ---- DMRec-G/C/M on the generative bases (beta per variant and dataset) -----------------------------------
    *_per_dataset(GENERATIVE, "dmrec_g", PROREC + "mult_vae_godm.yml", "plugin_config", {
        "amazon": {"beta": 0.4, "hidden_dim": 600}, "yelp": {"beta": 0.8, "hidden_dim": 600},
        "steam": {"beta": 1.0, "hidden_dim": 600}}),
    *_per_dataset(GENERATIVE, "dmrec_c", PROREC + "mult_vae_cpdm.yml", "plugin_config", {
        "amazon": {"beta": 0.2, "hidden_dim": 600}, "yelp": {"beta": 0.9, "hidden_dim": 600},
        "steam": {"beta": 0.6, "hidden_dim": 600}}),
    *_per_dataset(GENERATIVE, "dmrec_m", PROREC + "mult_vae_mddm.yml", "plugin_config", {
        "amazon": {"beta": 0.6, "hidden_dim": 600}, "yelp": {"beta": 0.4, "hidden_dim": 600},
        "steam": {"beta": 0.5, "hidden_dim": 600}}),

    # ---- other LLM-enhanced baselines ------------------------------------------------------------------------
    Row("lightgcn", "alpharec", ALL, ALPHAREC + " (64-d, 2 layers averaged from layer 0, no edge dropout, no "
        "weight decay reaching the optimiser; lr 5e-4, 500 epochs, 20 evaluations of patience every 5 epochs)",
        model_config={"dim": 64, "layers": 2, "include_ego": True, "keep_rate": 1.0, "reg_weight": 0.0},
        plugin_config={"hidden_mult": 2.0, "negatives": 256},
        train={"lr": 5e-4, "epochs": 500, "eval_every": 5, "patience": 20, "batch_size": 4096}),
    Row("lightgcn", "alpharec", ("amazon", "yelp"), ALPHAREC + " (τ 0.15 for books and other non-game data)",
        plugin_config={"temperature": 0.15}),
    Row("lightgcn", "alpharec", "steam", ALPHAREC + " (τ 0.2 for games)", plugin_config={"temperature": 0.2}),
    Row(PAIRWISE, "kar", ALL, KAR_CODE + " (2 shared and 5 specific experts, expert MLP 128 -> out) "
        "[no official top-K code: on the base's own settings]",
        plugin_config={"n_shared": 2, "n_specific": 5, "expert_hidden": 128}),
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
        source = f"reference: {row.source}"
        if generic and row.dataset != ALL:
            source += f" [Amazon-Book row: the default for dataset {dataset!r}, outside the paper]"
        for section in out:
            for name, value in getattr(row, section).items():
                out[section][name] = (value, source)
    return out
