"""Paper-style tables, paired t-tests and figures from finished runs (pure functions: no MLflow, no Ray).

Input `runs`: a DataFrame with one row per finished cell: label columns model, plugin, dataset, seed,
variant ("" when the grid has no variants) and test metrics under canonical names ("recall@20", ...).
`proex.infra.run_frames.runs_frame` builds it from MLflow; tests build it by hand.

* `match_seeds`— the comparisons use matched seeds only: within each group of arms compared with one another
                 (the label columns other than the arm), the seeds every arm finished; the runs of other seeds
                 are set aside and listed in the report, so means, Improv.% and p-values share one seed set.
* `summarize`  — mean, std and n over seeds per (dataset, model, plugin, variant).
* `compare`    — every arm against the reference arm (plug-in `base`, or a reference variant such as "full"
                 in an ablation), per dataset, model and metric: means, improvement %, and a paired test over
                 the matched seeds: the t-test (scipy.stats.ttest_rel, the paper's Table 2 p-values) or the
                 Wilcoxon signed-rank test (scipy.stats.wilcoxon). Differences that do not vary across seeds
                 have no p-value, and the note says so (a t-test would print p ≈ 1e-31 from rounding noise).
* `paper_table`— the Table-2 layout: a row per model and arm, a column per dataset and metric, and an
                 "improv." row per non-reference arm with its p-value.
* writers      — Markdown, CSV and LaTeX (booktabs), formatted deterministically (golden-file tested).
* figures      — training curves (Fig. 5), ablation bars (Fig. 6), sensitivity curves (Figs. 8-10).
"""
from __future__ import annotations

import math
import os
import re
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from .names import MODEL_NAMES as MODELS
from .names import PLUGIN_NAMES as PLUGINS
from .names import TESTS

LABELS = ["dataset", "model", "plugin", "variant"]
COMPARE_COLUMNS = ["arm", "reference", "metric", "n", "ref_mean", "mean", "improvement_pct", "test", "statistic",
                   "p_value", "note"]


def _ordered(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows in report order: datasets as first seen, models as in MODELS (Table 2), plug-ins as in PLUGINS."""
    runs = runs.copy()
    if "variant" not in runs:
        runs["variant"] = ""
    runs["variant"] = runs["variant"].fillna("")
    keys = {"dataset": list(dict.fromkeys(runs["dataset"])), "model": list(MODELS) + sorted(set(runs["model"]) - set(MODELS)),
            "plugin": list(PLUGINS), "variant": list(dict.fromkeys(runs["variant"]))}
    for col, order in keys.items():
        runs[col] = pd.Categorical(runs[col], categories=order, ordered=True)
    return runs.sort_values(LABELS + ["seed"], kind="stable")


def summarize(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Long table: dataset, model, plugin, variant, metric, n, mean, std (std 0 for n = 1)."""
    rows = []
    for key, g in _ordered(runs).groupby(LABELS, observed=True, sort=True):
        for m in metrics:
            v = g[m].dropna()
            rows.append({**dict(zip(LABELS, key)), "metric": m, "n": len(v), "mean": v.mean(),
                         "std": v.std(ddof=1) if len(v) > 1 else 0.0})
    return pd.DataFrame(rows, columns=LABELS + ["metric", "n", "mean", "std"])


def match_seeds(runs: pd.DataFrame, arm: str = "plugin") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(matched, unmatched): within each group of the label columns other than `arm`, keep the seeds that
    every arm of the group has; `unmatched` holds the other runs (the seeds missing in some arm)."""
    runs = _ordered(runs)
    group = [c for c in LABELS if c != arm]
    arms_per_group = runs.groupby(group, observed=True)[arm].transform("nunique")
    arms_per_seed = runs.groupby(group + ["seed"], observed=True)[arm].transform("nunique")
    keep = arms_per_seed == arms_per_group
    return runs[keep], runs[~keep]


def paired_test(a, b, test: str = "ttest") -> tuple[float, float, str]:
    """(statistic, p, note) of a paired test of a against b (arrays over the same seeds)."""
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; use one of {TESTS}")
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return math.nan, math.nan, "fewer than 2 matched seeds"
    if np.ptp(d) <= 1e-9 * max(float(np.abs(d).max()), 1e-12):
        return math.nan, math.nan, f"no p-value: zero variance of the differences (all {d[0]:+.4g})"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.ttest_rel(a, b) if test == "ttest" else stats.wilcoxon(a, b)
    return float(res.statistic), float(res.pvalue), ""


def compare(runs: pd.DataFrame, metrics: list[str], reference: str = "base", arm: str = "plugin",
            test: str = "ttest") -> pd.DataFrame:
    """Each value of column `arm` against `reference`, within groups of the other label columns, over the
    matched seeds (`match_seeds`).

    Columns: the group labels, arm, reference, metric, n (paired seeds), ref_mean, mean, improvement_pct,
    test, statistic, p_value (NaN with fewer than two pairs or differences without variance), note (why)."""
    group = [c for c in LABELS if c != arm]
    matched, _ = match_seeds(runs, arm)
    rows = []
    for key, g in matched.groupby(group, observed=True, sort=True):
        ref = g[g[arm] == reference]
        if ref.empty:
            continue
        for name in g[arm].cat.categories:
            other = g[g[arm] == name]
            if name == reference or other.empty:
                continue
            for m in metrics:
                pair = ref[["seed", m]].merge(other[["seed", m]], on="seed", suffixes=("_ref", "")).dropna()
                a, b = pair[m].to_numpy(float), pair[f"{m}_ref"].to_numpy(float)
                statistic, p, note = paired_test(a, b, test)
                ref_mean = b.mean() if len(b) else math.nan
                mean = a.mean() if len(a) else math.nan
                rows.append({**dict(zip(group, key)), "arm": name, "reference": reference, "metric": m,
                             "n": len(pair), "ref_mean": ref_mean, "mean": mean,
                             "improvement_pct": 100 * (mean - ref_mean) / ref_mean if ref_mean else math.nan,
                             "test": test, "statistic": statistic, "p_value": p, "note": note})
    return pd.DataFrame(rows, columns=group + COMPARE_COLUMNS)


def fmt_p(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else f"{p:.2e}"


def paper_table(summary: pd.DataFrame, comparison: pd.DataFrame, metrics: list[str], arm: str = "plugin") -> pd.DataFrame:
    """Wide Table-2 layout of strings: index (model, row) with row an arm or 'improv. <arm>', columns
    '<dataset> <metric>'. Cells: the mean over seeds; improvement rows: '+7.9% (p=1.20e-04)'."""
    rows: dict[tuple, dict] = {}
    for _, r in summary.iterrows():
        label = f"{r['plugin']} {r['variant']}".strip()
        rows.setdefault((str(r["model"]), label), {})[f"{r['dataset']} {r['metric']}"] = f"{r['mean']:.4f}"
    for _, r in comparison.iterrows():
        other = r["plugin"] if arm == "variant" else r["variant"]
        label = f"improv. {r['arm']} {other}" if arm == "plugin" else f"improv. {other} {r['arm']}"
        p = fmt_p(r["p_value"]) if not r["note"] else "n/a"
        cell = "n/a" if math.isnan(r["improvement_pct"]) else f"{r['improvement_pct']:+.1f}% (p={p})"
        rows.setdefault((str(r["model"]), " ".join(label.split())), {})[f"{r['dataset']} {r['metric']}"] = cell
    cols = [f"{d} {m}" for d in dict.fromkeys(summary["dataset"].astype(str)) for m in metrics]
    models = list(dict.fromkeys(summary["model"].astype(str)))
    order = sorted(rows, key=lambda k: (models.index(k[0]), k[1].startswith("improv. ")))  # stable: arms first
    table = pd.DataFrame.from_dict({k: rows[k] for k in order}, orient="index").reindex(columns=cols).fillna("")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["model", "row"])
    return table


def to_markdown(df: pd.DataFrame, index: bool = True) -> str:
    """A GitHub Markdown table of a DataFrame of strings/numbers (floats as .4f), deterministic."""
    df = df.reset_index() if index else df
    cells = [[_cell(v) for v in row] for row in df.itertuples(index=False)]
    head = [str(c) for c in df.columns]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(r) + " |" for r in cells]) + "\n"


def to_latex(df: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs tabular of the wide table (index columns first); %, _, & and # escaped."""
    df = df.reset_index()
    esc = lambda s: re.sub(r"([%_&#])", r"\\\1", _cell(s))  # noqa: E731
    lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{esc(caption)}}}" if caption else "",
             f"\\label{{{label}}}" if label else "", "\\begin{tabular}{" + "l" * 2 + "r" * (df.shape[1] - 2) + "}",
             "\\toprule", " & ".join(esc(c) for c in df.columns) + " \\\\", "\\midrule"]
    lines += [" & ".join(esc(v) for v in row) + " \\\\" for row in df.itertuples(index=False)]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(line for line in lines if line) + "\n"


def _cell(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def comparison_view(comparison: pd.DataFrame) -> pd.DataFrame:
    """The comparison formatted for reading (means .4f, improvement %, t .2f, p in e-notation)."""
    out = comparison.copy()
    for c in ("ref_mean", "mean"):
        out[c] = out[c].map(lambda v: f"{v:.4f}")
    out["improvement_pct"] = out["improvement_pct"].map(lambda v: "n/a" if math.isnan(v) else f"{v:+.2f}%")
    out["statistic"] = out["statistic"].map(lambda v: "n/a" if math.isnan(v) else f"{v:.2f}")
    out["p_value"] = out["p_value"].map(fmt_p)
    return out


def write_report(runs: pd.DataFrame, out_dir: str, spec, curves: pd.DataFrame | None = None,
                 title: str = "") -> tuple[dict[str, str], pd.DataFrame]:
    """Write report.md, summary.csv, comparison.csv, table.tex (+ figures named in spec.figures) to out_dir.

    spec: a proex.grid.ReportSpec (reference, reference_variant, metrics, test, figures). Every number is over
    matched seeds (`match_seeds`); the runs set aside are listed. Returns ({name: path}, the comparison
    DataFrame with raw p-values)."""
    os.makedirs(out_dir, exist_ok=True)
    metrics = [m for m in spec.metrics if m in runs.columns] if not runs.empty else []
    arm, reference = ("variant", spec.reference_variant) if spec.reference_variant else ("plugin", spec.reference)
    files = {k: os.path.join(out_dir, k) for k in ("report.md", "summary.csv", "comparison.csv", "table.tex")}
    if runs.empty:
        summary = pd.DataFrame(columns=LABELS + ["metric", "n", "mean", "std"])
        comparison = pd.DataFrame(columns=COMPARE_COLUMNS)
        table, md = pd.DataFrame(), f"# {title}\n\nNo finished runs yet.\n"
    else:
        matched, unmatched = match_seeds(runs, arm)
        summary = summarize(matched, metrics)
        comparison = compare(runs, metrics, reference, arm, spec.test)
        table = paper_table(summary, comparison, metrics, arm)
        seeds = ", ".join(map(str, sorted(set(matched["seed"]))))
        spread = summary.assign(mean=summary["mean"].map("{:.4f}".format), std=summary["std"].map("{:.4f}".format))
        name = {"ttest": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}[spec.test]
        md = (f"# {title}\n\nTest metrics, mean over the matched seeds {seeds} ({len(matched)} runs): within each "
              f"comparison, only seeds that every {arm} finished. Improvement and {name} p-values: each {arm} "
              f"against `{reference}` over the same seeds.\n\n"
              f"## Results\n\n{to_markdown(table)}\n## Paired tests ({name})\n\n"
              f"{to_markdown(comparison_view(comparison), index=False)}\n"
              f"## Mean and std over seeds\n\n{to_markdown(spread, index=False)}")
        if not unmatched.empty:
            cols = [c for c in LABELS + ["seed"] if c in unmatched]
            md += ("\n## Runs set aside (their seed is missing in another arm)\n\n"
                   f"{to_markdown(unmatched[cols].astype(str), index=False)}")
        md += first_dip_section(runs)
    with open(files["report.md"], "w") as f:
        f.write(md)
    summary.to_csv(files["summary.csv"], index=False, float_format="%.6g")
    comparison.to_csv(files["comparison.csv"], index=False, float_format="%.6g")
    with open(files["table.tex"], "w") as f:
        f.write(to_latex(table, caption=f"{title}: test metrics (mean over seeds)", label=f"tab:{title}") if not table.empty else "")
    if not runs.empty:
        figs = {"curves": lambda p: plot_curves(curves, p) if curves is not None and not curves.empty else None,
                "ablation": lambda p: plot_ablation(summary, p, metrics[:2]),
                "sensitivity": lambda p: plot_sensitivity(summary, p, metrics[0])}
        for name in spec.figures:
            path = os.path.join(out_dir, f"{name}.png")
            if figs[name](path):
                files[f"{name}.png"] = path
    return files, comparison


def first_dip_section(runs: pd.DataFrame) -> str:
    """A warning section listing the runs whose best validation was their first (column `first_dip`, set by
    proex.infra.run_frames.runs_frame; proex.train.FIRST_DIP says why and the fix), or "" when there are none."""
    flagged = runs[runs["first_dip"].fillna(False).astype(bool)] if "first_dip" in runs else runs.iloc[:0]
    if flagged.empty:
        return ""
    cols = [c for c in ("dataset", "model", "plugin", "variant", "seed", "best_epoch") if c in flagged]
    return (f"\n## Warning: {len(flagged)} run(s) stopped in their first dip\n\nTheir best validation is their "
            "first one, so their test metrics (and the tests above that use them) may reflect an early-stopping "
            "accident rather than the method. Rerun them with a warm-up (`train.min_epochs`) or more patience "
            f"(`train.patience`).\n\n{to_markdown(flagged[cols], index=False)}")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(curves: pd.DataFrame, path: str) -> str:
    """Fig. 5: validation metric vs epoch, mean over seeds, a panel per (dataset, model), a line per arm.
    curves: columns model, plugin, dataset, seed, variant, epoch, value."""
    plt = _pyplot()
    panels = list(dict.fromkeys(zip(curves["dataset"], curves["model"])))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (ds, model) in zip(axes[0], panels):
        sub = curves[(curves["dataset"] == ds) & (curves["model"] == model)]
        for (plugin, variant), g in sub.groupby(["plugin", "variant"], sort=False):
            mean = g.groupby("epoch")["value"].mean()
            ax.plot(mean.index, mean.values, marker="o", ms=3, label=f"{plugin} {variant}".strip())
        ax.set(title=f"{model} on {ds}", xlabel="epoch", ylabel="validation metric")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_ablation(summary: pd.DataFrame, path: str, metrics: list[str]) -> str:
    """Fig. 6: a bar per variant (and plug-in), a group per metric, a panel per dataset; error bars = std."""
    plt = _pyplot()
    datasets = list(dict.fromkeys(summary["dataset"].astype(str)))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        sub = summary[(summary["dataset"].astype(str) == ds) & summary["metric"].isin(metrics)]
        arms = list(dict.fromkeys(f"{p} {v}".strip() for p, v in zip(sub["plugin"].astype(str), sub["variant"].astype(str))))
        width = 0.8 / max(len(arms), 1)
        for i, arm_name in enumerate(arms):
            g = sub[[f"{p} {v}".strip() == arm_name for p, v in zip(sub["plugin"].astype(str), sub["variant"].astype(str))]]
            g = g.groupby("metric", observed=True)[["mean", "std"]].mean().reindex(metrics)
            ax.bar([j + i * width for j in range(len(metrics))], g["mean"], width, yerr=g["std"], label=arm_name)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(metrics))], metrics)
        ax.set(title=ds, ylabel="test metric")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_sensitivity(summary: pd.DataFrame, path: str, metric: str) -> str | None:
    """Figs. 8-10: for variants named 'param=value', the metric against the value, a panel per param, a line
    per (dataset, model). Returns None when no variant follows that naming."""
    sub = summary[summary["metric"] == metric].copy()
    parsed = sub["variant"].astype(str).str.extract(r"^\s*([A-Za-z_][\w.]*)\s*=\s*([-+0-9.eE]+)\s*$")
    sub["param"], sub["x"] = parsed[0], pd.to_numeric(parsed[1], errors="coerce")
    sub = sub.dropna(subset=["param", "x"])
    if sub.empty:
        return None
    plt = _pyplot()
    params = list(dict.fromkeys(sub["param"]))
    fig, axes = plt.subplots(1, len(params), figsize=(4 * len(params), 3.2), squeeze=False)
    for ax, param in zip(axes[0], params):
        for (ds, model), g in sub[sub["param"] == param].groupby(["dataset", "model"], observed=True):
            g = g.sort_values("x")
            ax.errorbar(g["x"], g["mean"], yerr=g["std"], marker="o", ms=3, capsize=2, label=f"{model} {ds}")
        ax.set(title=param, xlabel=param, ylabel=metric)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
