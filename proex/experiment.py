"""One cell of an experiment: dataset + model + plug-in -> fit -> results (shared flow: data -> model -> plug-in).

`resolve` fills every setting of a cell and records the layer that set it, lowest priority first:
  code default       the field default of the model's / plug-in's Config or of TrainConfig
  reference          the official configuration of (model, plug-in, dataset) (`proex.reference`)
  derived            a width the official code computes from the profile bank (d_text), when the bank is known
  the cell's layers  grid shared protocol < grid fixed < hparams file < grid variant < study trial < command
                     line, as recorded in `CellConfig.sources` by whoever built the cell (an unrecorded override
                     reads "cell"); the hparams file (a tuned winner for this one cell) wins over the grid-wide
                     `fixed`, as `proex.grid` explains
Everything a run needs is in the resolved config, so a cell is reproducible from it alone.
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
from . import reference
from .data.interactions import Interactions
from .data.tensors import TrainData
from .models import model_class
from .plugins import plugin_class
from .plugins.profile_maps import mapping_width
from .runtime import resolve_device, seed_everything
from .train import FitResult, TrainConfig, Trainer, ValidationReport

log = logging.getLogger("proex.experiment")

SECTIONS = ("model_config", "plugin_config", "train")


@dataclass
class CellConfig:
    dataset: str = "synthetic"  # registry name, path, or "synthetic[:key=value,...]"
    model: str = "lightgcn"  # one of proex.models.MODELS
    plugin: str = "base"  # one of proex.plugins.PLUGINS
    profiles: str | None = None  # profile bank for profile-aware plug-ins (see proex.profiles.load); None = no bank
    model_config: dict = field(default_factory=dict)  # overrides of the model's Config
    plugin_config: dict = field(default_factory=dict)  # overrides of the plug-in's Config
    train: dict = field(default_factory=dict)  # overrides of TrainConfig
    sources: dict = field(default_factory=dict)  # "section.key" -> the layer that set that override


def with_overrides(cell: CellConfig, overrides: dict[str, dict], layer: str) -> CellConfig:
    """The cell with {section: {key: value}} applied on top, each key's source recorded as `layer`."""
    sections = {s: {**getattr(cell, s), **overrides.get(s, {})} for s in SECTIONS}
    sources = {**cell.sources, **{f"{s}.{k}": layer for s in SECTIONS for k in overrides.get(s, {})}}
    return dataclasses.replace(cell, **sections, sources=sources)


@dataclass
class Resolved:
    """A cell with every setting filled in, and the layer behind each (`sources`, keyed "section.key")."""

    cell: CellConfig
    model_cfg: Any
    plugin_cfg: Any
    train_cfg: TrainConfig
    sources: dict[str, str] = field(default_factory=dict)

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


def _layered(cls: type, ref: dict[str, tuple[Any, str]], overrides: dict, cell: CellConfig, section: str,
             where: str) -> tuple[Any, dict[str, str]]:
    """cls built from code defaults < reference < the cell's overrides, and the source of every field."""
    values = {k: v for k, (v, _) in ref.items()}
    sources = {k: src for k, (_, src) in ref.items()}
    for key in overrides:
        sources[key] = cell.sources.get(f"{section}.{key}", "cell")
    obj = cfglib.build(cls, {**values, **overrides}, f"{where}.{section}")
    for f in dataclasses.fields(cls):
        sources.setdefault(f.name, f"code default: {cls.__name__}.{f.name}")
    return obj, {f"{section}.{k}": v for k, v in sources.items()}


def resolve(cell: CellConfig, where: str = "cell", text_dim: int | None = None,
            check_profiles: bool = True) -> Resolved:
    """Every setting of the cell, with its source.

    text_dim: the profile bank's embedding width. With it, a profile MLP's unset `hidden_dim` becomes the
    official (d_text + d_side) // 2 (RLMRec `*_plus.py`, ProRec `lightgcn_proex.py`); without it (a grid
    naming its cells before any bank is read) that one width stays None until the run loads its bank.
    check_profiles: refuse a profile-aware plug-in without `profiles` (off for `proex config`)."""
    mcls = model_class(cell.model)
    pcls = plugin_class(cell.plugin)
    ref = reference.settings(cell.model, cell.plugin, dataset_key(cell.dataset))
    model_cfg, sources = _layered(mcls.Config, ref["model_config"], cell.model_config, cell, "model_config", where)
    if check_profiles and pcls.needs_profiles and not cell.profiles:
        raise cfglib.ConfigError(f"{where}.profiles: plug-in {cell.plugin!r} needs a profile bank; set profiles "
                                 "(a bank folder, 'rlmrec:<folder>' or 'synthetic-latent' for the synthetic data)")
    plugin_cfg = None
    if pcls.Config is not None:
        plugin_cfg, psources = _layered(pcls.Config, ref["plugin_config"], cell.plugin_config, cell,
                                        "plugin_config", where)
        sources.update(psources)
        if getattr(plugin_cfg, "hidden_dim", 0) is None and text_dim is not None:
            side = mcls.side_width(model_cfg)
            plugin_cfg = dataclasses.replace(plugin_cfg, hidden_dim=mapping_width(text_dim, side))
            sources["plugin_config.hidden_dim"] = (f"derived: (d_text {text_dim} + d_side {side}) // 2, the profile "
                                                   "MLP of RLMRec *_plus.py and ProRec lightgcn_proex.py")
    elif cell.plugin_config:
        raise cfglib.ConfigError(f"{where}.plugin_config: plug-in {cell.plugin!r} takes no settings")
    train_cfg, tsources = _layered(TrainConfig, ref["train"], cell.train, cell, "train", where)
    sources.update(tsources)
    missing = [k for k in ("epochs", "batch_size", "lr", "patience", "seed") if getattr(train_cfg, k) is None]
    if missing:
        raise cfglib.ConfigError(f"{where}.train: no reference value for {missing} ({cell.model}/{cell.plugin}); "
                                 "set them with --train key=value")
    return Resolved(cell, model_cfg, plugin_cfg, train_cfg, sources)


def build_system(resolved: Resolved, data: TrainData, bank=None):
    """Model + plug-in on data.device (seed first: initial weights depend on it). `bank`: a ProfileBank for
    profile-aware plug-ins."""
    model = model_class(resolved.cell.model)(resolved.model_cfg, data)
    return plugin_class(resolved.cell.plugin)(model, resolved.plugin_cfg, bank).to(data.device)


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
    if plugin_class(cell.plugin).needs_profiles:
        from .profiles.load import load_profiles

        bank = load_profiles(cell.profiles, inter)
        resolved = resolve(cell, text_dim=bank.dim)  # the widths derived from the bank, in the logged config
    system = build_system(resolved, data, bank)
    log.info("%s + %s on %s (%d users, %d items, %d train) on %s, seed %d", cell.model, cell.plugin, inter.name,
             data.n_users, data.n_items, data.n_edges, device, tcfg.seed)
    t0 = time.perf_counter()
    fit: FitResult = Trainer(tcfg, callback, state_path).fit(system, data)
    result = {
        "config": resolved.to_dict(), "config_sources": resolved.sources, "config_hash": resolved.config_hash(),
        "dataset_name": inter.name,
        "profile_bank": bank.bank_id if bank is not None else None,
        "device": str(device), "wall_seconds": time.perf_counter() - t0, **fit.to_dict(),
    }
    return result, system
