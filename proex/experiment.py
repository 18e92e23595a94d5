"""One cell of an experiment: dataset + model + plug-in -> fit -> results (shared flow: data -> model -> plug-in).

`resolve` fills every setting of a cell and records the layer that set it, lowest priority first:
  code default       the field default of the model's / plug-in's Config or of TrainConfig
  reference          the official configuration of (model, plug-in, dataset) (`proex.reference`)
  the cell's layers  grid shared protocol < grid fixed < hparams file < grid variant < study trial < command
                     line, as recorded in `CellConfig.sources` by whoever built the cell (an unrecorded override
                     reads "cell"); the hparams file (a tuned winner for this one cell) wins over the grid-wide
                     `fixed`, as `proex.grid` explains
  derived            a width the official code computes from the profile bank (d_text), filled in by
                     `with_text_dim` once the bank is open (`build_cell`); the cell's hash leaves it out, so a
                     cell has one id, the same in the grid, the run's tags, config.json, metrics.json and the
                     checkpoint, whether or not its bank was read (the bank's own id is logged beside it)
Everything a run needs is in the resolved config, so a cell is reproducible from it alone. A cell is resolved
once (`resolve`); `run_cell` and `checkpoint.load` open its data and bank and build its system with `build_cell`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


# Settings added after cell ids were first published, hashed only when set away from their default, so every
# cell that does not use them keeps its id (and its finished runs) across the upgrade.
HASHED_WHEN_SET = {"train.eval_offset": 0}


@dataclass
class Resolved:
    """A cell with every setting filled in, and the layer behind each (`sources`, keyed "section.key")."""

    cell: CellConfig
    model_cfg: Any
    plugin_cfg: Any
    train_cfg: TrainConfig
    sources: dict[str, str] = field(default_factory=dict)
    derived: tuple[str, ...] = ()  # "section.key" of the values filled in from the bank (`with_text_dim`)

    def to_dict(self) -> dict:
        return {
            "dataset": self.cell.dataset,
            "model": self.cell.model,
            "plugin": self.cell.plugin,
            "profiles": self.cell.profiles,
            "model_config": dataclasses.asdict(self.model_cfg),
            "plugin_config": dataclasses.asdict(self.plugin_cfg) if self.plugin_cfg is not None else {},
            "train": dataclasses.asdict(self.train_cfg),
        }

    def config_hash(self, leave_out: tuple[str, ...] = ()) -> str:
        """A short hash of the resolved config with its bank-derived values left unset: the cell's one id (names
        runs, lets a relaunch skip finished cells), equal before and after the bank is read.
        leave_out: "section.key" settings not hashed (a study's searched parameters: its winner, written back
        into the cell's hparams file, must not rename the study)."""
        asked = self.to_dict()
        for key in leave_out:
            section, _, name = key.partition(".")
            asked[section].pop(name, None)
        for key in self.derived:
            section, _, name = key.partition(".")
            asked[section][name] = None
        for key, default in HASHED_WHEN_SET.items():
            section, _, name = key.partition(".")
            if asked[section].get(name, default) == default:
                asked[section].pop(name, None)
        return hashlib.sha256(json.dumps(asked, sort_keys=True, default=str).encode()).hexdigest()[:12]


def dataset_key(dataset: str) -> str:
    """The registry name used for per-dataset defaults ("amazon" for "amazon" or ".../amazon"); a dataset card
    is named by its file stem ("movielens" for "cards/movielens.yaml?min_rating=4")."""
    key = dataset.partition("?")[0].rstrip("/").split("/")[-1].split(":")[0]
    return key[: -len(".yaml")] if key.endswith(".yaml") else key[: -len(".yml")] if key.endswith(".yml") else key


def _layered(
    cls: type, ref: dict[str, tuple[Any, str]], overrides: dict, cell: CellConfig, section: str, where: str
) -> tuple[Any, dict[str, str]]:
    """cls built from code defaults < reference < the cell's overrides, and the source of every field."""
    values = {k: v for k, (v, _) in ref.items()}
    sources = {k: src for k, (_, src) in ref.items()}
    for key in overrides:
        sources[key] = cell.sources.get(f"{section}.{key}", "cell")
    obj = cfglib.build(cls, {**values, **overrides}, f"{where}.{section}")
    for f in dataclasses.fields(cls):
        sources.setdefault(f.name, f"code default: {cls.__name__}.{f.name}")
    return obj, {f"{section}.{k}": v for k, v in sources.items()}


def resolve(
    cell: CellConfig, where: str = "cell", text_dim: int | None = None, check_profiles: bool = True
) -> Resolved:
    """Every setting of the cell, with its source: the one resolution of a cell that grids, studies, the trial
    body, `proex train`, `proex config` and checkpoints share.

    text_dim: the profile bank's embedding width, when known (see `with_text_dim`); without it (a grid naming
    its cells before any bank is read) a derived width stays None until `build_cell` opens the bank.
    check_profiles: refuse a profile-aware plug-in without `profiles` (off for `proex config`)."""
    mcls = model_class(cell.model)
    pcls = plugin_class(cell.plugin)
    ref = reference.settings(cell.model, cell.plugin, dataset_key(cell.dataset))
    model_cfg, sources = _layered(mcls.Config, ref["model_config"], cell.model_config, cell, "model_config", where)
    if check_profiles and pcls.needs_profiles and not cell.profiles:
        raise cfglib.ConfigError(
            f"{where}.profiles: plug-in {cell.plugin!r} needs a profile bank; set profiles "
            "(a bank folder, 'rlmrec:<folder>' or 'synthetic-latent' for the synthetic data)"
        )
    plugin_cfg = None
    if pcls.Config is not None:
        plugin_cfg, psources = _layered(
            pcls.Config, ref["plugin_config"], cell.plugin_config, cell, "plugin_config", where
        )
        sources.update(psources)
    elif cell.plugin_config:
        raise cfglib.ConfigError(f"{where}.plugin_config: plug-in {cell.plugin!r} takes no settings")
    train_cfg, tsources = _layered(TrainConfig, ref["train"], cell.train, cell, "train", where)
    sources.update(tsources)
    missing = [k for k in ("epochs", "batch_size", "lr", "patience", "seed") if getattr(train_cfg, k) is None]
    if missing:
        raise cfglib.ConfigError(
            f"{where}.train: no reference value for {missing} ({cell.model}/{cell.plugin}); "
            "set them with --train key=value"
        )
    resolved = Resolved(cell, model_cfg, plugin_cfg, train_cfg, sources)
    return with_text_dim(resolved, text_dim) if text_dim is not None else resolved


def with_text_dim(resolved: Resolved, text_dim: int) -> Resolved:
    """The resolved cell with the widths that depend on the bank's width filled in: a profile MLP's unset
    `hidden_dim` becomes the official (d_text + d_side) // 2 (RLMRec `*_plus.py`, ProRec `lightgcn_proex.py`).
    Its `config_hash` is unchanged (derived values are not part of the cell's id)."""
    if getattr(resolved.plugin_cfg, "hidden_dim", 0) is not None:
        return resolved
    side = model_class(resolved.cell.model).side_width(resolved.model_cfg)
    plugin_cfg = dataclasses.replace(resolved.plugin_cfg, hidden_dim=mapping_width(text_dim, side))
    sources = {
        **resolved.sources,
        "plugin_config.hidden_dim": f"derived: (d_text {text_dim} + d_side {side}) // 2, "
        "the profile MLP of RLMRec *_plus.py and ProRec lightgcn_proex.py",
    }
    return dataclasses.replace(
        resolved, plugin_cfg=plugin_cfg, sources=sources, derived=resolved.derived + ("plugin_config.hidden_dim",)
    )


def build_system(resolved: Resolved, data: TrainData, bank=None):
    """Model + plug-in on data.device (seed first: initial weights depend on it). `bank`: a ProfileBank for
    profile-aware plug-ins."""
    model = model_class(resolved.cell.model)(resolved.model_cfg, data)
    return plugin_class(resolved.cell.plugin)(model, resolved.plugin_cfg, bank).to(data.device)


@dataclass
class BuiltCell:
    """A resolved cell made concrete: its data on the device, its bank, its widths derived, its system."""

    resolved: Resolved  # with the bank-derived widths filled in
    data: TrainData
    bank: Any  # ProfileBank, or None for a plug-in without profiles
    system: Any  # the plug-in wrapping its model, on data.device


def build_cell(resolved: Resolved, inter: Interactions, device, profiles: str | None = None) -> BuiltCell:
    """Open the cell's profile bank (`profiles`, default the cell's own spec: pass the runnable one when the
    spec holds placeholders), fill in the widths it determines, and build the system on `device`. The one
    sequence `run_cell` and `checkpoint.load` share."""
    import torch

    data = TrainData(inter, torch.device(device))
    bank = None
    if plugin_class(resolved.cell.plugin).needs_profiles:
        from .profiles.load import load_profiles

        bank = load_profiles(profiles or resolved.cell.profiles, inter)
        resolved = with_text_dim(resolved, bank.dim)
    return BuiltCell(resolved, data, bank, build_system(resolved, data, bank))


@dataclass
class CellResult:
    """What one trained cell gives back: its config and hash, the best epoch's metrics, the curve, timings."""

    config: dict  # the resolved config that ran (`Resolved.to_dict`, derived widths filled in)
    config_sources: dict  # "section.key" -> the layer that set it
    config_hash: str  # the cell's id (`Resolved.config_hash`)
    dataset_name: str
    profile_bank: str | None  # the bank's content id, None without profiles
    device: str
    wall_seconds: float
    best_epoch: int
    val: dict  # metric name ('recall@20') -> validation value at the best epoch
    test: dict  # metric name -> test value at the best epoch
    epochs_run: int
    history: list = field(default_factory=list)  # every validation: epoch, metrics, losses
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    first_dip: bool = False  # the best validation was the first of several (`proex.train.FIRST_DIP`)
    first_dip_warning: str = ""  # that warning, with the epochs filled in, when first_dip

    def to_dict(self) -> dict:
        """The layout of metrics.json and result.json ("first_dip": the warning text, "" when not flagged)."""
        out = dataclasses.asdict(self)
        out["first_dip"] = out.pop("first_dip_warning")
        return out


def run_cell(
    cell: CellConfig | Resolved,
    interactions: Interactions | None = None,
    callback: Callable[[ValidationReport], None] | None = None,
    state_path: str | None = None,
    device: str | None = None,
    profiles: str | None = None,
) -> tuple[CellResult, Any]:
    """Train and evaluate one cell (a CellConfig is resolved here; a Resolved one is used as it is). Returns
    (CellResult, trained system).

    device: where to train, overriding the config's `train.device` without changing the config (and its hash);
    the trial body passes the device Ray assigned. profiles: the bank spec to open (placeholders filled in).
    """
    from .data.registry import load_dataset

    resolved = cell if isinstance(cell, Resolved) else resolve(cell)
    cell = resolved.cell
    tcfg = resolved.train_cfg
    device = resolve_device(device or tcfg.device)
    seed_everything(tcfg.seed)
    inter = interactions if interactions is not None else load_dataset(cell.dataset)
    built = build_cell(resolved, inter, device, profiles)
    resolved, data, bank, system = built.resolved, built.data, built.bank, built.system
    log.info(
        "%s + %s on %s (%d users, %d items, %d train) on %s, seed %d",
        cell.model,
        cell.plugin,
        inter.name,
        data.n_users,
        data.n_items,
        data.n_edges,
        device,
        tcfg.seed,
    )
    t0 = time.perf_counter()
    fit: FitResult = Trainer(tcfg, callback, state_path).fit(system, data)
    result = CellResult(
        resolved.to_dict(),
        resolved.sources,
        resolved.config_hash(),
        inter.name,
        bank.bank_id if bank is not None else None,
        str(device),
        time.perf_counter() - t0,
        fit.best_epoch,
        dict(fit.val),
        dict(fit.test),
        fit.epochs_run,
        fit.history,
        fit.train_seconds,
        fit.eval_seconds,
        bool(fit.first_dip),
        fit.first_dip,
    )
    return result, system
