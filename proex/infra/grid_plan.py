"""A grid's plan before launch (`ray_jobs/grid.py GRID --dry-run`): every cell with its labels, its state in the
tracking store, the resources it asks, the settings borrowed or tuned, an estimate of the wall time left on the
resources at hand, and the profile banks that are missing. Reads MLflow, trains nothing, starts no Ray.

A cell's state comes from its MLflow run, with the trial body's own test of finished (`tracker.is_finished`,
the done tag): finished | running | interrupted (a stopped grid, tag interrupted=true) | failed | pending (no run
yet, or a run neither finished nor failed). A cell's cost is measured where it can be: the mean wall seconds per
epoch times the mean epochs of the finished runs of the same (model, plug-in, dataset) (the trial body logs
`wall_seconds` and `epochs_run`); else a probe trains one cell of that group for one epoch (`probe_epoch`) and
multiplies by the resolved maximum of epochs (an upper bound: early stopping ends sooner); else it is unknown.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field

from ..experiment import dataset_key, with_overrides
from ..grid import GridCell, GridSpec
from ..plugins import plugin_class
from ..protocol import is_borrowed
from .tracker import Tracker, is_finished

STATES = ("finished", "running", "interrupted", "failed", "pending")
TUNED_PREFIX = "hparams file"  # the layer name proex.grid gives a cell's hparams-file settings


def run_state(run) -> str:
    """The state of a cell from its MLflow run (None: no run yet)."""
    if run is None:
        return "pending"
    if is_finished(run):
        return "finished"
    if run.data.tags.get("interrupted") == "true":
        return "interrupted"
    return {"RUNNING": "running", "FAILED": "failed", "KILLED": "failed"}.get(run.info.status, "pending")


def cell_runs(tracker: Tracker, found: list | None = None) -> dict[str, object]:
    """cell id -> its run (the oldest, as `Tracker.run_for` picks), read in one search (or from `found`, the
    result of `tracker.find(kind="cell")`: at 360 cells one search of a tracking server takes seconds)."""
    runs: dict[str, object] = {}
    for run in tracker.find(kind="cell") if found is None else found:
        runs.setdefault(run.data.tags.get("key"), run)
    return runs


def group_of(gc: GridCell) -> tuple[str, str, str]:
    return gc.config.model, gc.config.plugin, dataset_key(gc.config.dataset)


@dataclass
class Cost:
    epoch_s: float  # wall seconds per epoch
    epochs: float  # epochs a cell is expected to run
    how: str  # "measured on N runs" | "probe: ..." | why it is unknown

    @property
    def cell_s(self) -> float:
        return self.epoch_s * self.epochs


def measured_costs(cells: list[GridCell], runs: dict) -> dict[tuple, Cost]:
    """(model, plugin, dataset) -> cost measured on the finished runs of that group."""
    seen: dict[tuple, list] = {}
    for gc in cells:
        run = runs.get(gc.cell_id)
        m = run.data.metrics if run is not None and is_finished(run) else {}
        if m.get("wall_seconds") and m.get("epochs_run"):
            seen.setdefault(group_of(gc), []).append((m["wall_seconds"] / m["epochs_run"], m["epochs_run"]))
    return {
        g: Cost(statistics.mean(e for e, _ in v), statistics.mean(n for _, n in v), f"measured on {len(v)} runs")
        for g, v in seen.items()
    }


def probe_epoch(gc: GridCell) -> Cost:
    """Train the cell for one epoch (one validation, one test pass) in this process and time it; the cost of a
    cell is that times its resolved maximum of epochs. The probe's run is not tracked."""
    from ..data.registry import load_dataset
    from ..experiment import run_cell

    cell = gc.runnable()
    epochs = gc.resolved.train_cfg.epochs
    probe = with_overrides(cell, {"train": {"epochs": 1, "eval_every": 1, "eval_offset": 0}}, "plan probe")
    t0 = time.perf_counter()
    inter = load_dataset(cell.dataset)
    result, _ = run_cell(probe, inter)
    setup = time.perf_counter() - t0 - result.wall_seconds
    return Cost(
        result.train_seconds + result.eval_seconds,
        epochs,
        f"probe: 1 epoch took {result.train_seconds + result.eval_seconds:.2f} s (+{setup:.1f} s setup) "
        f"x {epochs} max epochs, an upper bound",
    )


def slots(grid: GridSpec, cpus: float, gpus: float) -> int:
    """Trials that run at once on `cpus` CPUs and `gpus` GPUs."""
    n = int(cpus // grid.resources.cpu)
    if grid.resources.gpu > 0:
        n = min(n, int(gpus // grid.resources.gpu))
    if grid.max_concurrent:
        n = min(n, grid.max_concurrent)
    return max(n, 0)


def settings_of(gc: GridCell) -> tuple[list[str], list[str]]:
    """(borrowed, tuned): the settings whose source says borrowed/extrapolated, and those from an hparams file."""
    sources = gc.resolved.sources
    return (
        sorted(k for k, s in sources.items() if is_borrowed(s)),
        sorted(k for k, s in sources.items() if str(s).startswith(TUNED_PREFIX)),
    )


def bank_missing(spec: str | None) -> bool:
    """Whether a profiles setting names a bank folder that is not there (generated banks never are missing)."""
    if not spec or spec.split(":")[0] in ("synthetic-latent", "random"):
        return False
    path = spec.partition(":")[2] if spec.startswith("rlmrec:") else spec
    return not os.path.exists(path if spec.startswith("rlmrec:") else os.path.join(path, "manifest.json"))


def bank_estimate(dataset: str) -> str:
    """What `proex profiles estimate --dataset D` says generating the dataset's profiles would cost (the
    default job: the paper's chat model), or why it cannot say."""
    from ..data.registry import load_dataset
    from ..profiles.pipeline import ProfileJobConfig, estimate

    try:
        with tempfile.TemporaryDirectory() as out:
            est = estimate(ProfileJobConfig(out_dir=out), load_dataset(dataset))
        return f"{est.get('calls')} calls, about ${est.get('cost_usd', float('nan')):.2f} with the default model"
    except Exception as exc:  # no text in the dataset, unknown price ...: say so, the plan goes on
        return f"not estimated ({type(exc).__name__}: {str(exc)[:200]})"


@dataclass
class PlanRow:
    cell: GridCell
    state: str
    borrowed: list = field(default_factory=list)
    tuned: list = field(default_factory=list)


@dataclass
class Plan:
    grid: GridSpec
    rows: list[PlanRow]
    costs: dict  # group -> Cost (measured, probed); groups missing have no estimate
    cpus: float
    gpus: float
    missing_banks: dict = field(default_factory=dict)  # bank spec -> (dataset, n cells, estimate text)

    def counts(self) -> dict[str, int]:
        return {s: sum(r.state == s for r in self.rows) for s in STATES}

    def eta_s(self) -> tuple[float, int]:
        """(wall seconds for the cells left on the resources at hand, cells left without an estimate)."""
        left = [r for r in self.rows if r.state != "finished"]
        known = [self.costs[group_of(r.cell)].cell_s for r in left if group_of(r.cell) in self.costs]
        known = [k for k in known if not math.isnan(k)]  # a failed probe's cost is NaN
        n = slots(self.grid, self.cpus, self.gpus)
        return (sum(known) / n if n else float("inf")), len(left) - len(known)


def make_plan(
    grid: GridSpec,
    cells: list[GridCell],
    tracker: Tracker,
    cpus: float | None = None,
    gpus: float | None = None,
    probe_budget_s: float = 60.0,
    estimate_banks: bool = True,
) -> Plan:
    """The plan of `cells` (a grid or a slice of it). Groups without finished runs are probed while the probes
    have spent less than `probe_budget_s` (0: no probe)."""
    runs = cell_runs(tracker)
    rows = [PlanRow(gc, run_state(runs.get(gc.cell_id)), *settings_of(gc)) for gc in cells]
    costs = measured_costs(cells, runs)
    spent = 0.0
    for row in rows:
        g = group_of(row.cell)
        if row.state == "finished" or g in costs or spent >= probe_budget_s:
            continue
        t0 = time.perf_counter()
        try:
            costs[g] = probe_epoch(row.cell)
        except Exception as exc:  # a missing bank, a dataset not on this machine: no estimate for the group
            costs[g] = Cost(float("nan"), 0, f"probe failed: {type(exc).__name__}: {str(exc)[:160]}")
        spent += time.perf_counter() - t0
    missing: dict[str, list] = {}
    for gc in cells:
        spec = gc.runnable().profiles if plugin_class(gc.config.plugin).needs_profiles else None
        if bank_missing(spec):
            missing.setdefault(spec, [dataset_key(gc.config.dataset), 0, gc.config.dataset])[1] += 1
    banks = {spec: (d, n, bank_estimate(ds) if estimate_banks else "") for spec, (d, n, ds) in missing.items()}
    if cpus is None:
        cpus = os.cpu_count() or 1
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    return Plan(grid, rows, costs, cpus, gpus, banks)


def _hms(s: float) -> str:
    if math.isnan(s) or math.isinf(s):
        return "unknown"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m{int(s % 60):02d}s"


def format_plan(plan: Plan) -> str:
    """The plan as text: one line per cell, then the costs, the ETA and the missing banks."""
    r = plan.grid.resources
    lines = [
        f"grid {plan.grid.name}: {len(plan.rows)} cells, each asking cpu={r.cpu:g} gpu={r.gpu:g}; "
        + ", ".join(f"{n} {s}" for s, n in plan.counts().items())
    ]
    width = max((len(label_line(row.cell)) for row in plan.rows), default=0)
    for row in plan.rows:
        notes = ([f"borrowed: {', '.join(row.borrowed)}"] if row.borrowed else []) + (
            [f"tuned: {', '.join(row.tuned)}"] if row.tuned else []
        )
        lines.append(
            f"  {row.state:<11} {label_line(row.cell):<{width}}  {row.cell.cell_id}"
            + (f"  [{'; '.join(notes)}]" if notes else "")
        )
    lines.append("cost per cell, by (model, plug-in, dataset):")
    groups = sorted({group_of(row.cell) for row in plan.rows})
    for g in groups:
        c = plan.costs.get(g)
        lines.append(
            f"  {'/'.join(g)}: "
            + (
                f"{_hms(c.cell_s)} ({c.epoch_s:.2f} s/epoch x {c.epochs:.0f} epochs; {c.how})"
                if c and c.epochs
                else (c.how if c else "unknown: no finished run, not probed (probe budget spent or 0)")
            )
        )
    eta, unknown = plan.eta_s()
    n = slots(plan.grid, plan.cpus, plan.gpus)
    lines.append(
        f"ETA: {_hms(eta)} of training for the {sum(x.state != 'finished' for x in plan.rows)} cells left, "
        f"{n} at a time on {plan.cpus:g} CPUs and {plan.gpus:g} GPUs"
        + (f" ({unknown} cells without an estimate are not counted)" if unknown else "")
    )
    for spec, (dataset, count, est) in plan.missing_banks.items():
        lines.append(
            f"missing profile bank {spec} ({count} cells on {dataset}): generate it with "
            f"`proex profiles generate --dataset {dataset} --out DIR`; `proex profiles estimate` says: {est}"
        )
    return "\n".join(lines)


def label_line(gc: GridCell) -> str:
    """'lightgcn/proex/amazon/s0' (+ '/variant')."""
    return "/".join(
        [gc.config.model, gc.config.plugin, dataset_key(gc.config.dataset), f"s{gc.seed}"]
        + [v for v in gc.variants[:1] if v]
    )
