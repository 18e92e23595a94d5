"""A study file's `study` section as typed data: the searched space, the trial budget, the pruner and the arms.

`validate_study` checks it when the grid file loads (`proex.grid.load_grid`), so a bad space or pruner fails
before Ray starts, naming the file, the field and the fix. The Optuna side lives in `proex.infra.studies` and
`proex.infra.pruning`; this module imports no Optuna.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .config import ConfigError, build
from .experiment import SECTIONS
from .plugins import PLUGINS


@dataclass
class ParamSpec:
    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False  # sample on a log scale
    step: float | None = None
    choices: list | None = None  # for "categorical"


@dataclass
class PrunerSpec:
    """Which Optuna pruner stops a study's hopeless trials early. Steps are training epochs: every validation
    (after epochs 0, eval_every, ...) reports the selection metric at its epoch.
    none; median (optuna MedianPruner: stop a trial whose value is below the median of earlier trials at the same
    step); successive_halving (SuccessiveHalvingPruner); hyperband (HyperbandPruner)."""

    type: str = "median"  # none | median | successive_halving | hyperband
    n_startup_trials: int = 4  # median: no pruning until this many trials finished
    n_warmup_steps: int = 3  # median: no pruning before this epoch (the first validation never prunes)
    interval_steps: int = 1  # median: prune-check every this many steps
    min_resource: Any = "auto"  # successive_halving / hyperband: epochs before the first rung ("auto" or int)
    reduction_factor: int = 3  # successive_halving / hyperband: 1 / the share of trials promoted per rung
    min_early_stopping_rate: int = 0  # successive_halving
    max_resource: Any = "auto"  # hyperband: the most epochs a trial trains ("auto" or int)


PRUNER_KEYS = {
    "none": set(),
    "median": {"n_startup_trials", "n_warmup_steps", "interval_steps"},
    "successive_halving": {"min_resource", "reduction_factor", "min_early_stopping_rate"},
    "hyperband": {"min_resource", "max_resource", "reduction_factor"},
}


@dataclass
class StudySpec:
    space: dict = field(default_factory=dict)  # "model_config.layers" -> ParamSpec mapping
    n_trials: int = 20  # budget: finished (COMPLETE or PRUNED) trials per study; a rerun continues up to it
    pruner: Any = None  # PrunerSpec mapping; None = the PrunerSpec defaults (median)
    arms: list | None = (
        None  # plug-ins of a comparison tuned alike (same budget, space, sampler seed); None = axes.plugin
    )
    arm_space: dict = field(default_factory=dict)  # arm -> extra parameters only that arm has (plugin_config.*)
    concurrency: int = 1  # trials in flight per study
    storage: str | None = None  # Optuna storage URL or journal file; None = sqlite:///mlruns/optuna.db
    sampler_seed: int = 0  # TPE seed
    heartbeat_s: float = 10.0  # the driver marks its running trials alive this often
    grace_s: float = 60.0  # a RUNNING trial silent this long belonged to a dead driver: failed and retried
    max_failures: int = 3  # failed trials tolerated per study before the study stops


def validate_study(s: StudySpec, where: str) -> None:
    if s.n_trials < 1 or s.concurrency < 1:
        raise ConfigError(f"{where}: n_trials and concurrency must be >= 1")
    if s.heartbeat_s <= 0 or s.grace_s <= 2 * s.heartbeat_s:
        raise ConfigError(f"{where}: grace_s must exceed 2 x heartbeat_s (a live driver beats every heartbeat_s)")
    if not s.space:
        raise ConfigError(
            f"{where}.space: declare at least one parameter, e.g. 'train.lr: {{low: 1e-4, high: 1e-2, log: true}}'"
        )
    s.pruner = _validate_pruner(s.pruner, f"{where}.pruner")
    if s.arms is not None:
        if not isinstance(s.arms, list) or not s.arms or len(set(s.arms)) != len(s.arms):
            raise ConfigError(f"{where}.arms: give a list of distinct plug-ins, e.g. [base, proex]")
        for i, arm in enumerate(s.arms):
            if arm not in PLUGINS:
                raise ConfigError(f"{where}.arms[{i}]: unknown plug-in {arm!r}; known: {', '.join(PLUGINS)}")
    for arm, extra in s.arm_space.items():
        if arm not in (s.arms or []):
            raise ConfigError(f"{where}.arm_space.{arm}: not one of study.arms {s.arms}; add it to arms or remove it")
        if not isinstance(extra, dict) or set(extra) & set(s.space):
            raise ConfigError(f"{where}.arm_space.{arm}: a mapping of parameters not already in study.space")
        s.arm_space[arm] = _validate_space(dict(extra), f"{where}.arm_space.{arm}")
    s.space = _validate_space(s.space, f"{where}.space")


def _validate_pruner(raw: Any, where: str) -> PrunerSpec:
    if isinstance(raw, PrunerSpec):
        return raw
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{where}: a mapping such as {{type: median, n_startup_trials: 4}}, got {raw!r}")
    p = build(PrunerSpec, raw, where)
    if p.type not in PRUNER_KEYS:
        raise ConfigError(f"{where}.type: {p.type!r}; use one of {', '.join(PRUNER_KEYS)}")
    foreign = sorted(set(raw or {}) - PRUNER_KEYS[p.type] - {"type"})
    if foreign:
        raise ConfigError(
            f"{where}: {foreign} do not apply to the {p.type} pruner; its settings are "
            f"{sorted(PRUNER_KEYS[p.type]) or 'none'}"
        )
    for name in ("min_resource", "max_resource"):
        v = getattr(p, name)
        if v != "auto" and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"{where}.{name}: 'auto' or a whole number of epochs >= 1, got {v!r}")
    if p.n_startup_trials < 0 or p.n_warmup_steps < 0 or p.interval_steps < 1 or p.reduction_factor < 2:
        raise ConfigError(f"{where}: n_startup_trials, n_warmup_steps >= 0, interval_steps >= 1, reduction_factor >= 2")
    return p


def _validate_space(space: dict, where: str) -> dict:
    for key, value in list(space.items()):
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name or key in ("train.seed", "train.select"):
            raise ConfigError(
                f"{where}.{key}: keys are model_config.<field>, plugin_config.<field> or "
                "train.<field> (not seed or select)"
            )
        p = build(ParamSpec, value, f"{where}.{key}")
        if p.type == "categorical":
            if not p.choices:
                raise ConfigError(f"{where}.{key}: a categorical parameter needs choices")
        elif p.type in ("int", "float"):
            if p.low is None or p.high is None or p.low > p.high:
                raise ConfigError(f"{where}.{key}: give low <= high")
        else:
            raise ConfigError(f"{where}.{key}.type: {p.type!r}; use float, int or categorical")
        space[key] = p
    return space
