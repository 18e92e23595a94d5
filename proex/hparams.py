"""Per-cell hyperparameter files (`<grid folder>/<hparams>/<model>-<plugin>-<dataset>.yaml`): the tuned winners
`ray_jobs/tune.py` writes back and grids read as a layer above `fixed` (`proex.grid`), with their provenance.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import ConfigError, build, read_yaml_mapping
from .experiment import dataset_key


@dataclass
class HParams:
    """A per-cell hyperparameter file (`grids/hparams/<model>-<plugin>-<dataset>.yaml`)."""

    model_config: dict = field(default_factory=dict)
    plugin_config: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)  # provenance: study, trial, value, date, or a citation


def hparams_path(grid_path: str, folder: str | None, model: str, plugin: str, dataset: str) -> Path | None:
    """Where the hyperparameter file of (model, plugin, dataset) lives: in `folder` (a grid's `hparams`), relative
    to the grid file at `grid_path`; None when the grid has no `hparams` folder."""
    if not folder:
        return None
    root = Path(grid_path).parent if grid_path else Path(".")
    return root / folder / f"{model}-{plugin}-{dataset_key(dataset)}.yaml"


def load_hparams(path: Path) -> HParams:
    hp = build(
        HParams, read_yaml_mapping(path, "hyperparameter file", "model_config, plugin_config, train, source"), str(path)
    )
    for name in ("seed", "select"):
        if name in hp.train:
            raise ConfigError(f"{path}: train.{name}: a hyperparameter file cannot set {name}")
    return hp


def save_hparams(path: Path, hp: HParams) -> None:
    """Write a hyperparameter file atomically (sections that are empty are left out)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in dataclasses.asdict(hp).items() if v}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(body, sort_keys=True))
    os.replace(tmp, path)


def hparams_layer(path: Path, hp: HParams) -> str:
    """The source text of an hparams file's values: the file and how it was tuned (study and trial budget)."""
    src = hp.source or {}
    if src.get("study"):
        trials = src.get("complete_trials", src.get("n_trials"))
        return f"hparams file: {path} (study {src['study']}, {trials if trials is not None else '?'} trials)"
    return f"hparams file: {path} (not from a study: {src or 'no source recorded'})"
