"""One cell of an experiment: dataset + model + plug-in -> fit -> results (shared/DESIGN.md).

Config resolution, lowest to highest priority: the model's dataclass defaults, the model's per-dataset
defaults from the reference configs, then the cell's overrides. The training loop takes the model family's
defaults (batch size, patience, seed, epochs) unless the cell sets them. Everything a run needs is in
`CellConfig`, so a cell is reproducible from its resolved config alone.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import config as cfglib
from .data.interactions import Interactions
from .data.tensors import TrainData
from .models import model_class
from .plugins import plugin_class
from .runtime import resolve_device, seed_everything
from .train import FitResult, TrainConfig, Trainer, ValidationReport, fill_train_defaults

log = logging.getLogger("proex.experiment")


@dataclass
class CellConfig:
    dataset: str = "synthetic"  # registry name, path, or "synthetic[:key=value,...]"
    model: str = "lightgcn"  # one of proex.models.MODELS
    plugin: str = "base"  # one of proex.plugins.PLUGINS
    profiles: str | None = None  # profile bank for profile-aware plug-ins (see proex.profiles.load)
    model_config: dict = field(default_factory=dict)  # overrides of the model's Config
    plugin_config: dict = field(default_factory=dict)  # overrides of the plug-in's Config
    train: dict = field(default_factory=dict)  # overrides of TrainConfig


@dataclass
class Resolved:
    """A cell with every default filled in."""

    cell: CellConfig
    model_cfg: Any
    plugin_cfg: Any
    train_cfg: TrainConfig

    def to_dict(self) -> dict:
        return {
            "dataset": self.cell.dataset, "model": self.cell.model, "plugin": self.cell.plugin,
            "profiles": self.cell.profiles,
            "model_config": dataclasses.asdict(self.model_cfg),
            "plugin_config": dataclasses.asdict(self.plugin_cfg) if self.plugin_cfg is not None else {},
            "train": dataclasses.asdict(self.train_cfg),
        }

    def config_hash(self) -> str:
        """A short hash of the resolved config (names runs, lets a relaunch skip finished cells)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]


def dataset_key(dataset: str) -> str:
    """The registry name used for per-dataset defaults ("amazon" for "amazon" or ".../amazon"); a dataset card
    is named by its file stem ("movielens" for "cards/movielens.yaml?min_rating=4")."""
    key = dataset.partition("?")[0].rstrip("/").split("/")[-1].split(":")[0]
    return key[: -len(".yaml")] if key.endswith(".yaml") else key[: -len(".yml")] if key.endswith(".yml") else key


def resolve(cell: CellConfig, where: str = "cell") -> Resolved:
    mcls = model_class(cell.model)
    pcls = plugin_class(cell.plugin)
    ds = dataset_key(cell.dataset)
    defaults = {**mcls.dataset_defaults.get(ds, {}), **getattr(pcls, "model_defaults", {}).get(cell.model, {})}
    model_cfg = cfglib.build(mcls.Config, {**defaults, **cell.model_config}, f"{where}.model_config")
    plugin_cfg = None
    if getattr(pcls, "needs_profiles", False) and not cell.profiles:
        raise cfglib.ConfigError(f"{where}.profiles: plug-in {cell.plugin!r} needs a profile bank; set profiles "
                                 "(a bank folder, 'rlmrec:<folder>' or 'synthetic-latent' for the synthetic data)")
    if getattr(pcls, "Config", None) is not None:
        pdefaults = getattr(pcls, "dataset_defaults", {}).get(ds, {})
        plugin_cfg = cfglib.build(pcls.Config, {**pdefaults, **cell.plugin_config}, f"{where}.plugin_config")
    elif cell.plugin_config:
        raise cfglib.ConfigError(f"{where}.plugin_config: plug-in {cell.plugin!r} takes no settings")
    train_cfg = fill_train_defaults(cfglib.build(TrainConfig, cell.train, f"{where}.train"), mcls, pcls)
    return Resolved(cell, model_cfg, plugin_cfg, train_cfg)


def build_system(resolved: Resolved, data: TrainData, bank=None):
    """Model + plug-in on data.device (seed first: initial weights depend on it). `bank`: a ProfileBank for
    profile-aware plug-ins."""
    model = model_class(resolved.cell.model)(resolved.model_cfg, data)
    pcls = plugin_class(resolved.cell.plugin)
    if getattr(pcls, "needs_profiles", False):
        system = pcls(model, resolved.plugin_cfg, bank)
    elif resolved.plugin_cfg is not None:
        system = pcls(model, resolved.plugin_cfg)
    else:
        system = pcls(model)
    return system.to(data.device)


def run_cell(cell: CellConfig, interactions: Interactions | None = None,
             callback: Callable[[ValidationReport], None] | None = None,
             state_path: str | None = None) -> tuple[dict, Any]:
    """Train and evaluate one cell. Returns (result dict, trained system).

    result: {"config": resolved config, "config_hash", "best_epoch", "val", "test", "history", timings}.
    """
    from .data.registry import load_dataset

    resolved = resolve(cell)
    tcfg = resolved.train_cfg
    device = resolve_device(tcfg.device)
    seed_everything(tcfg.seed)
    inter = interactions if interactions is not None else load_dataset(cell.dataset)
    data = TrainData(inter, device)
    bank = None
    if getattr(plugin_class(cell.plugin), "needs_profiles", False):
        from .profiles.load import load_profiles

        bank = load_profiles(cell.profiles, inter)
    system = build_system(resolved, data, bank)
    log.info("%s + %s on %s (%d users, %d items, %d train) on %s, seed %d", cell.model, cell.plugin, inter.name,
             data.n_users, data.n_items, data.n_edges, device, tcfg.seed)
    t0 = time.perf_counter()
    fit: FitResult = Trainer(tcfg, callback, state_path).fit(system, data)
    result = {
        "config": resolved.to_dict(), "config_hash": resolved.config_hash(), "dataset_name": inter.name,
        "profile_bank": bank.bank_id if bank is not None else None,
        "device": str(device), "wall_seconds": time.perf_counter() - t0, **fit.to_dict(),
    }
    return result, system
