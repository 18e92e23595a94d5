"""Grid files: the experiment matrix as typed YAML, expanded to an ordered list of cells with stable ids.

A grid file declares axes (model, plugin, dataset, seed; optionally profiles and named variants), settings
shared by every cell (`fixed`), a folder of per-cell hyperparameter files (the tuned winners that
`ray_jobs/tune.py` writes back; missing files mean the reference defaults), the resources of one trial, the
validation metric that selects the best epoch (never a test metric), the training protocol of each comparison
(`protocol`: official per-arm protocols or one shared protocol, `proex.comparisons`), and optionally a `study`
section for Optuna (`proex.study_spec`; hparams files: `proex.hparams`).
`load_grid(path)` rejects unknown keys and bad values with errors naming the file and the field;
`GridSpec.expand()` returns `GridCell`s whose id is the hash of the resolved config, so a relaunch finds the
cells it already ran. A cell's settings, lowest priority first: the reference configuration
(`proex.reference`, via `proex.experiment.resolve`) < the grid's shared protocol (when its comparison uses one)
< `fixed` < its hparams file `<model>-<plugin>-<dataset>.yaml` < its variant; each override records its layer.
The hparams file wins over `fixed` because it is the more specific: a study's tuned winner for exactly this
(model, plug-in, dataset), where `fixed` is a default for every cell of the grid; a variant is the deliberate
change the grid measures, so it wins over both. To force a value over tuned files, use a variant.

`profiles` may name `{dataset}` and `{data_dir}` (the registry's data folder on the node that runs the cell);
ids are computed before substitution, so they do not depend on where the data lives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .comparisons import ProtocolSpec, apply_layer, borrowed_values, difference_lines, parse_protocol, shared_layer
from .config import ConfigError, build, read_yaml_mapping
from .experiment import SECTIONS, CellConfig, Resolved, dataset_key, resolve, with_overrides
from .hparams import hparams_layer, hparams_path, load_hparams
from .models import MODELS
from .names import PairedTest
from .plugins import PLUGINS, check_pair
from .study_spec import StudySpec, validate_study


@dataclass
class Axes:
    model: list = field(default_factory=list)  # names in proex.models.MODELS
    plugin: list = field(default_factory=lambda: ["base"])  # names in proex.plugins.PLUGINS
    dataset: list = field(default_factory=lambda: ["synthetic"])  # registry names or paths
    seed: list = field(default_factory=lambda: [0])  # training seeds; the paired tests match on them
    profiles: list | None = None  # optional axis over profile banks (e.g. text embedders, paper Table 5)
    variant: list | None = None  # optional axis of named overrides: [{name, model_config, plugin_config, train}]


@dataclass
class Variant:
    name: str = ""  # label in reports; "key=value" names become sensitivity curves (Figs. 8-10)
    model_config: dict = field(default_factory=dict)
    plugin_config: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    profiles: str | None = None  # replaces the cell's profiles (e.g. a bank without CoT profiles)


@dataclass
class Fixed:
    profiles: Any = None  # str, or {dataset: str}; may use {dataset} and {data_dir}; unused by `base`
    model_config: dict = field(default_factory=dict)
    plugin_config: dict = field(default_factory=dict)  # applied to plug-ins that take settings
    train: dict = field(default_factory=dict)  # TrainConfig overrides (not seed or select: see axes, select)


@dataclass
class Resources:
    cpu: float = 1.0  # CPUs per trial
    gpu: float = 0.0  # GPUs per trial; a fraction (0.25) lets small models share a GPU


@dataclass
class ReportSpec:
    reference: str = "base"  # plug-in every other plug-in is compared with (paired test over matched seeds)
    reference_variant: str | None = None  # variant the others are compared with (ablation: "full")
    metrics: tuple[str, ...] = ("recall@20", "ndcg@20", "recall@10", "ndcg@10")  # test metrics tabulated
    figures: tuple[str, ...] = ()  # any of "curves" (Fig. 5), "ablation" (Fig. 6), "sensitivity" (Figs. 8-10)
    test: PairedTest = "ttest"  # paired test: the paper's t-test | Wilcoxon signed-rank (no normality assumption)


@dataclass
class GridSpec:
    name: str = ""  # names the MLflow experiment and parent run
    description: str = ""
    axes: Axes = field(default_factory=Axes)
    fixed: Fixed = field(default_factory=Fixed)
    hparams: str | None = None  # folder of per-cell hyperparameter files, relative to the grid file
    resources: Resources = field(default_factory=Resources)
    select: str = "val/recall@20"  # validation metric selecting the best epoch
    # official | shared | {shared: {patience: 20, ...}}; absent = shared outside the paper's datasets (comparisons.py)
    protocol: Any = None
    max_failures: int = 2  # retries of a failed trial (Ray Tune FailureConfig)
    max_concurrent: int | None = None  # cap on concurrent trials; None = as many as resources allow
    report: ReportSpec = field(default_factory=ReportSpec)
    study: StudySpec | None = None
    path: str = ""  # the file it came from (set by load_grid)

    def expand(self) -> list[GridCell]:
        return expand(self)


@dataclass(frozen=True)
class GridCell:
    """One cell of a grid, resolved once when the grid expands; the trial body runs `resolved` as it is."""

    cell_id: str  # resolved.config_hash(): the run's key and config_hash tag, config.json's and the checkpoint's
    resolved: Resolved  # every setting and its source; profiles may still hold {dataset} / {data_dir}
    seed: int
    variants: tuple[str, ...]  # variant labels ("" without a variant axis); several when variants coincide

    @property
    def config(self) -> CellConfig:
        """The cell as the grid's layers set it (model, plugin, dataset, profiles, overrides and their sources)."""
        return self.resolved.cell

    @property
    def labels(self) -> dict:
        """model, plugin, dataset, seed, variant: the columns reports group by (MLflow tags too)."""
        c = self.config
        return {
            "model": c.model,
            "plugin": c.plugin,
            "dataset": dataset_key(c.dataset),
            "seed": self.seed,
            "variant": self.variants[0],
            "profiles": c.profiles or "",
        }

    def run_name(self, seed: bool = True) -> str:
        """'lightgcn-proex-synthetic-s0' (+ '-<variant>'): the name of the cell's MLflow run; without the seed,
        the cell's part of its study's name."""
        c, variant = self.config, self.variants[0]
        return "-".join(
            [c.model, c.plugin, dataset_key(c.dataset)] + [f"s{self.seed}"] * seed + [variant] * bool(variant)
        )

    def runnable(self, data_dir: str | None = None) -> CellConfig:
        """The cell with `{dataset}` / `{data_dir}` filled in for the node that runs it."""
        c = self.config
        if not c.profiles:
            return c
        from .data.registry import default_data_dir

        spec = c.profiles.replace("{dataset}", dataset_key(c.dataset))
        spec = spec.replace("{data_dir}", str(data_dir or default_data_dir()))
        return dataclasses.replace(c, profiles=spec)


def load_grid(path: str | os.PathLike) -> GridSpec:
    """Read and validate a grid file. Raises ConfigError naming the file and the field."""
    path = str(path)
    raw = read_yaml_mapping(path, "grid file", "name, axes, fixed, ...")
    sub = {"axes": Axes, "fixed": Fixed, "resources": Resources, "report": ReportSpec, "study": StudySpec}
    nested = {k: raw.pop(k) for k in list(raw) if k in sub}
    spec = build(GridSpec, raw, path)
    for key, value in nested.items():
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{path}: {key}: expected a mapping, got {value!r}")
        setattr(spec, key, build(sub[key], value, f"{path}: {key}") if value is not None else None)
    spec.path = path
    _validate(spec)
    return spec


def _validate(g: GridSpec) -> None:
    where = g.path or "grid"
    if not g.name or not re.fullmatch(r"[A-Za-z0-9_.-]+", g.name):
        raise ConfigError(f"{where}: name: give a name of letters, digits, '.', '_' or '-' (it names MLflow runs)")
    a = g.axes
    for axis, known in (("model", MODELS), ("plugin", PLUGINS), ("dataset", None), ("seed", None)):
        values = getattr(a, axis)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: axes.{axis}: give a non-empty list")
        for i, v in enumerate(values):
            if known is not None and v not in known:
                raise ConfigError(f"{where}: axes.{axis}[{i}]: unknown {axis} {v!r}; known: {', '.join(known)}")
            if axis == "seed" and (not isinstance(v, int) or isinstance(v, bool)):
                raise ConfigError(f"{where}: axes.seed[{i}]: seeds are integers, got {v!r}")
    if a.profiles is not None and g.fixed.profiles is not None:
        raise ConfigError(f"{where}: profiles is both an axis and a fixed setting; keep one")
    for name in ("seed", "select"):
        if name in g.fixed.train:
            raise ConfigError(f"{where}: fixed.train.{name}: set it with {'axes.seed' if name == 'seed' else 'select'}")
    g.select = parse_select(g.select, f"{where}: select")
    if not isinstance(g.protocol, ProtocolSpec):
        g.protocol = parse_protocol(g.protocol, f"{where}: protocol")
    r = g.resources
    if r.cpu <= 0 or r.gpu < 0 or (r.gpu > 1 and r.gpu != int(r.gpu)):
        raise ConfigError(f"{where}: resources: cpu > 0 and gpu a fraction <= 1 or a whole number, got {r}")
    if g.max_failures < 0:
        raise ConfigError(f"{where}: max_failures: must be >= 0")
    for m in g.report.metrics:
        if not re.fullmatch(r"(recall|ndcg)@\d+", m):
            raise ConfigError(f"{where}: report.metrics: {m!r} is not recall@K or ndcg@K")
    bad = set(g.report.figures) - {"curves", "ablation", "sensitivity"}
    if bad:
        raise ConfigError(f"{where}: report.figures: unknown {sorted(bad)}; use curves, ablation, sensitivity")
    if g.study is not None:
        validate_study(g.study, f"{where}: study")


def parse_select(value: str, where: str) -> str:
    """'val/recall@20', 'val_recall_at_20' or 'recall@20' -> 'recall@20'. A test metric is an error."""
    v = str(value).strip()
    if v.lower().startswith("test"):
        raise ConfigError(
            f"{where}: {value!r} is a test metric; the best epoch is selected on validation only "
            "(use e.g. val/recall@20); test metrics are reported, never used to choose."
        )
    v = re.sub(r"^(val|valid|validation)[/_]", "", v)
    m = re.fullmatch(r"(recall|ndcg)(?:@|_at_)(\d+)", v)
    if not m:
        raise ConfigError(f"{where}: {value!r}: use val/recall@K or val/ndcg@K")
    return f"{m.group(1)}@{m.group(2)}"


def _profiles_for(grid: GridSpec, spec: Any, dataset: str, where: str) -> str | None:
    if isinstance(spec, dict):
        key = dataset_key(dataset)
        if key not in spec:
            raise ConfigError(f"{where}: no profiles given for dataset {key!r} (have {sorted(spec)})")
        return spec[key]
    return spec


def _protocol(grid: GridSpec) -> ProtocolSpec:
    return grid.protocol if isinstance(grid.protocol, ProtocolSpec) else parse_protocol(grid.protocol, "protocol")


def expand(grid: GridSpec) -> list[GridCell]:
    """Ordered cells: dataset, model, variant, seed, plugin (so base/ProEx pairs finish together)."""
    where = grid.path or grid.name
    a = grid.axes
    variants = [build(Variant, v, f"{where}: axes.variant[{i}]") for i, v in enumerate(a.variant or [{}])]
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: axes.variant: names must be unique, got {names}")
    cells: dict[str, GridCell] = {}
    for dataset in a.dataset:
        for model in a.model:
            for prof_axis in a.profiles or [grid.fixed.profiles]:
                for var in variants:
                    for seed in a.seed:
                        for plugin in a.plugin:
                            gc = _cell(grid, dataset, model, plugin, seed, prof_axis, var, where)
                            if gc.cell_id in cells:
                                old = cells[gc.cell_id]
                                cells[gc.cell_id] = dataclasses.replace(old, variants=old.variants + gc.variants)
                            else:
                                cells[gc.cell_id] = gc
    return list(cells.values())


def _cell(grid, dataset, model, plugin, seed, prof_spec, var: Variant, where: str) -> GridCell:
    pcls = PLUGINS[plugin]
    label = f"{where}: cell {model}/{plugin}/{dataset}/seed {seed}" + (f"/{var.name}" if var.name else "")
    try:
        check_pair(model, plugin)
    except ValueError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    parts = [(grid.fixed, f"grid fixed: {where}")]
    hp_path = hparams_path(grid.path, grid.hparams, model, plugin, dataset)
    if hp_path is not None and hp_path.exists():
        hp = load_hparams(hp_path)
        parts.append((hp, hparams_layer(hp_path, hp)))
    parts.append((var, f"grid variant {var.name!r}: {where}"))
    profiles = None
    if pcls.needs_profiles:
        profiles = var.profiles or _profiles_for(grid, prof_spec, dataset, f"{where}: profiles")
    cell = CellConfig(dataset=dataset, model=model, plugin=plugin, profiles=profiles)
    spec = _protocol(grid)
    if spec.mode_for(dataset_key(dataset)) == "shared":
        arms = [p for p in grid.axes.plugin if p == plugin or PLUGINS[p].refusal(MODELS[model]) is None]
        cell = apply_layer(
            cell,
            shared_layer(model, arms, dataset, grid.report.reference, spec.stated, f"grid protocol: shared ({where})"),
        )
    for part, layer in parts:
        values = {s: dict(getattr(part, s) or {}) for s in SECTIONS}
        if pcls.Config is None:
            values["plugin_config"] = {}
        cell = with_overrides(cell, values, layer)
    cell = with_overrides(cell, {"train": {"seed": seed}}, f"grid axes.seed: {where}")
    cell = with_overrides(cell, {"train": {"select": grid.select}}, f"grid select: {where}")
    try:
        resolved = resolve(cell, where=label)
    except ValueError as exc:
        raise ConfigError(str(exc) if str(exc).startswith(where) else f"{label}: {exc}") from None
    if int(grid.select.split("@")[1]) not in resolved.train_cfg.ks:
        raise ConfigError(f"{label}: select {grid.select} needs K in train.ks {resolved.train_cfg.ks}")
    return GridCell(resolved.config_hash(), resolved, seed, (var.name,))


def apply_params(cell: CellConfig, params: dict[str, Any], layer: str = "study trial") -> CellConfig:
    """The cell with study parameters ("model_config.layers": 2, ...) applied on top of its settings."""
    sections: dict[str, dict] = {s: {} for s in SECTIONS}
    for key, value in params.items():
        section, _, name = key.partition(".")
        sections[section][name] = value
    return with_overrides(cell, sections, layer)


def grid_digest(cells: list[GridCell]) -> str:
    """A short hash of the cell ids: names the Ray Tune experiment, so an edited grid starts a new one."""
    return hashlib.sha256(",".join(c.cell_id for c in cells).encode()).hexdigest()[:8]


def start_lines(grid: GridSpec, cells: list[GridCell]) -> list[str]:
    """What a grid prints when it starts: the protocol of each comparison group whose arms differ, and the cells
    whose settings are borrowed or extrapolated (once per model/plug-in/dataset, with the keys and sources)."""
    spec = _protocol(grid)
    groups: dict[str, dict[str, dict]] = {}
    modes: dict[str, str] = {}
    borrowed: dict[str, dict[str, list[str]]] = {}
    for gc in cells:
        ds = dataset_key(gc.config.dataset)
        group = (
            f"{gc.config.model}/{ds}"
            + (f"/{gc.variants[0]}" if gc.variants[0] else "")
            + (f" [{gc.config.profiles}]" if grid.axes.profiles else "")
        )
        arm = gc.config.plugin
        if arm in groups.get(group, {}):
            continue  # one seed per arm: the seed is not part of the protocol
        resolved = gc.resolved
        groups.setdefault(group, {})[arm] = dataclasses.asdict(resolved.train_cfg)
        modes[group] = spec.mode_for(ds)
        combo = f"{gc.config.model}/{arm}/{ds}"
        if combo not in borrowed:
            keys_of: dict[str, list[str]] = {}
            for key, source in borrowed_values(resolved.sources).items():
                keys_of.setdefault(source, []).append(key)
            borrowed[combo] = keys_of
    lines = difference_lines(groups, modes)
    by_source: dict[str, list[str]] = {}
    for combo, sources in borrowed.items():
        for source, keys in sources.items():
            by_source.setdefault(source, []).append(f"{combo} ({', '.join(keys)})")
    if by_source:
        n = sum(1 for b in borrowed.values() if b)
        lines.append(
            f"borrowed or extrapolated settings in {n} of {len(borrowed)} model/plug-in/dataset "
            "combinations (proex config --sources shows each value's source):"
        )
        for source, combos in by_source.items():
            lines.append(f"  {source}: {'; '.join(combos)}")
    return lines
