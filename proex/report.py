"""Paper-style tables, paired tests with intervals, and figures from finished runs (pure: no MLflow, no Ray).

Input `runs`: a DataFrame with one row per finished cell: label columns model, plugin, dataset, seed,
variant ("" when the grid has no variants), test metrics under canonical names ("recall@20", ...) and, when the
runs recorded them, `protocol` and `sources` (`proex.report_provenance`). `proex.infra.run_frames.runs_frame`
builds it from MLflow, `proex.report_runs.train_outputs_frame` from `proex train` folders; tests by hand.

* `match_seeds`— the comparisons use matched seeds only: within each group of arms compared with one another
                 (the label columns other than the arm), the seeds every arm finished; the runs of other seeds
                 are set aside and listed in the report, so means, Improv.% and p-values share one seed set.
* `summarize`  — mean, std, n and the seeds' 95% t-interval of the mean per (dataset, model, plugin, variant),
                 with the paper's published value beside it where the paper has one (`proex.paper_values`).
* `compare`    — every arm against the reference arm (plug-in `base`, or a reference variant such as "full"
                 in an ablation), per dataset, model and metric: means, improvement %, and a paired test over
                 the matched seeds: the t-test (scipy.stats.ttest_rel, the paper's Table 2 p-values) with the
                 t-interval of the mean difference, or the Wilcoxon signed-rank test (scipy.stats.wilcoxon) with
                 the Hodges-Lehmann estimate and its distribution-free interval (`proex.report_stats`); Holm-
                 adjusted p-values over the family of every row with a p-value; the arms' protocol and tuning
                 differences (`proex.report_provenance.row_notes`). Differences that do not vary across seeds
                 have no p-value, and the note says so (a t-test would print p ≈ 1e-31 from rounding noise).
* `paper_table`— the Table-2 layout: a row per model and arm, a column per dataset and metric, and an
                 "improv." row per non-reference arm with its interval, Holm marks and p-values.
* writers      — Markdown, CSV and LaTeX (booktabs), formatted deterministically (golden-file tested).
* figures      — `proex.report_figures`: training curves, ablation bars, sensitivity curves.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from . import report_provenance as provenance
from .names import MODEL_NAMES as MODELS
from .names import PLUGIN_NAMES as PLUGINS
from .names import TESTS
from .paper_values import paper_value
from .report_figures import plot_ablation, plot_curves, plot_sensitivity  # noqa: F401 (callers use report.plot_*)
from .report_format import fmt_p, to_latex, to_markdown
from .report_stats import LEVEL, hodges_lehmann, holm, t_interval

LABELS = ["dataset", "model", "plugin", "variant"]
COMPARE_COLUMNS = [
    "arm",
    "reference",
    "metric",
    "n",
    "ref_mean",
    "mean",
    "improvement_pct",
    "estimate",
    "ci_low",
    "ci_high",
    "ci_level",
    "test",
    "statistic",
    "p_value",
    "p_holm",
    "note",
    "protocol",
    "tuning",
]
SUMMARY_COLUMNS = LABELS + [
    "metric",
    "n",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "paper",
    "paper_diff_pct",
    "paper_in_ci",
    "paper_source",
]
MARKS = ((0.01, "**"), (0.05, "*"))  # on Holm-adjusted p-values


def _ordered(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows in report order: datasets as first seen, models as in MODELS (Table 2), plug-ins as in PLUGINS."""
    runs = runs.copy()
    if "variant" not in runs:
        runs["variant"] = ""
    runs["variant"] = runs["variant"].fillna("")
    keys = {
        "dataset": list(dict.fromkeys(runs["dataset"])),
        "model": list(MODELS) + sorted(set(runs["model"]) - set(MODELS)),
        "plugin": list(PLUGINS),
        "variant": list(dict.fromkeys(runs["variant"])),
    }
    for col, order in keys.items():
        runs[col] = pd.Categorical(runs[col], categories=order, ordered=True)
    return runs.sort_values(LABELS + ["seed"], kind="stable")


def summarize(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Long table: dataset, model, plugin, variant, metric, n, mean, std (0 for n = 1), the seeds' 95%
    t-interval of the mean (ci_low, ci_high) and, for the paper's cells (variant ""), the paper's value, the
    mean's difference from it in % (paper_diff_pct) and whether it lies inside the interval (paper_in_ci)."""
    rows = []
    for key, g in _ordered(runs).groupby(LABELS, observed=True, sort=True):
        labels = dict(zip(LABELS, key))
        for m in metrics:
            v = g[m].dropna()
            mean, low, high = t_interval(v)
            paper = None if labels["variant"] else paper_value(labels["model"], labels["plugin"], labels["dataset"], m)
            value, source = paper or (math.nan, "")
            inside = "n/a" if paper is None or math.isnan(low) else "yes" if low <= value <= high else "no"
            rows.append(
                {
                    **labels,
                    "metric": m,
                    "n": len(v),
                    "mean": mean,
                    "std": v.std(ddof=1) if len(v) > 1 else 0.0,
                    "ci_low": low,
                    "ci_high": high,
                    "paper": value,
                    "paper_diff_pct": 100 * (mean - value) / value if paper else math.nan,
                    "paper_in_ci": inside if paper else "",
                    "paper_source": source,
                }
            )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


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


def paired_interval(a, b, test: str = "ttest") -> tuple[float, float, float, float]:
    """(estimate, low, high, level) of the paired difference a - b: the mean with its 95% t-interval (ttest),
    or the Hodges-Lehmann estimate with its distribution-free interval and its exact level (wilcoxon)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if test == "wilcoxon":
        return hodges_lehmann(d, LEVEL)
    mean, low, high = t_interval(d, LEVEL)
    return mean, low, high, math.nan if math.isnan(low) else LEVEL


def compare(
    runs: pd.DataFrame, metrics: list[str], reference: str = "base", arm: str = "plugin", test: str = "ttest"
) -> pd.DataFrame:
    """Each value of column `arm` against `reference`, within groups of the other label columns, over the
    matched seeds (`match_seeds`).

    Columns: the group labels, arm, reference, metric, n (paired seeds), ref_mean, mean, improvement_pct,
    estimate, ci_low, ci_high, ci_level (`paired_interval`, in the metric's units), test, statistic, p_value
    (NaN with fewer than two pairs or differences without variance), p_holm (Holm over every row with a
    p-value: the report's family), note (why no p), protocol and tuning (`provenance.row_notes`, '' if equal)."""
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
            protocol, tuning = provenance.row_notes(ref, other, reference, name)
            for m in metrics:
                pair = ref[["seed", m]].merge(other[["seed", m]], on="seed", suffixes=("_ref", "")).dropna()
                a, b = pair[m].to_numpy(float), pair[f"{m}_ref"].to_numpy(float)
                statistic, p, note = paired_test(a, b, test)
                estimate, low, high, level = paired_interval(a, b, test) if not note else (math.nan,) * 4
                ref_mean = b.mean() if len(b) else math.nan
                mean = a.mean() if len(a) else math.nan
                rows.append(
                    {
                        **dict(zip(group, key)),
                        "arm": name,
                        "reference": reference,
                        "metric": m,
                        "n": len(pair),
                        "ref_mean": ref_mean,
                        "mean": mean,
                        "improvement_pct": 100 * (mean - ref_mean) / ref_mean if ref_mean else math.nan,
                        "estimate": estimate,
                        "ci_low": low,
                        "ci_high": high,
                        "ci_level": level,
                        "test": test,
                        "statistic": statistic,
                        "p_value": p,
                        "p_holm": math.nan,
                        "note": note,
                        "protocol": protocol,
                        "tuning": tuning,
                    }
                )
    out = pd.DataFrame(rows, columns=group + COMPARE_COLUMNS)
    out["p_holm"] = holm(out["p_value"].to_numpy(float))
    return out


def mark(p_holm: float) -> str:
    """'**' (Holm-adjusted p < 0.01), '*' (< 0.05) or ''."""
    return next((m for cut, m in MARKS if not math.isnan(p_holm) and p_holm < cut), "")


def ci_pct(r, digits: int = 1) -> str:
    """The interval of the paired difference in % of the reference mean, '[+5.1, +10.7]%' (its level when it
    is not 95%: a Hodges-Lehmann interval over fewer than 6 seeds), or 'n/a'."""
    if math.isnan(r["ci_low"]) or not r["ref_mean"]:
        return "n/a"
    lo, hi = (100 * r[c] / r["ref_mean"] for c in ("ci_low", "ci_high"))
    level = "" if abs(r["ci_level"] - LEVEL) < 1e-12 else f" at {100 * r['ci_level']:.0f}%"
    return f"[{lo:+.{digits}f}, {hi:+.{digits}f}]%{level}"


def paper_table(
    summary: pd.DataFrame, comparison: pd.DataFrame, metrics: list[str], arm: str = "plugin"
) -> pd.DataFrame:
    """Wide Table-2 layout of strings: index (model, row) with row an arm or 'improv. <arm>', columns
    '<dataset> <metric>'. Cells: the mean over seeds; improvement rows: Improv.%, the 95% interval of the
    difference in % of the reference mean, the Holm mark (`mark`), the raw and Holm-adjusted p and a '†' when
    the row's arms differ in protocol or tuning: '+7.9% [+5.1, +10.7]%* (p=1.20e-04, Holm 2.40e-03) †'."""
    rows: dict[tuple, dict] = {}
    for _, r in summary.iterrows():
        label = f"{r['plugin']} {r['variant']}".strip()
        rows.setdefault((str(r["model"]), label), {})[f"{r['dataset']} {r['metric']}"] = f"{r['mean']:.4f}"
    for _, r in comparison.iterrows():
        other = r["plugin"] if arm == "variant" else r["variant"]
        label = f"improv. {r['arm']} {other}" if arm == "plugin" else f"improv. {other} {r['arm']}"
        p, holm_p = (fmt_p(r["p_value"]), fmt_p(r["p_holm"])) if not r["note"] else ("n/a", "n/a")
        dagger = " †" if r["protocol"] or r["tuning"] else ""
        cell = (
            "n/a"
            if math.isnan(r["improvement_pct"])
            else f"{r['improvement_pct']:+.1f}% {ci_pct(r)}{mark(r['p_holm'])} (p={p}, Holm {holm_p}){dagger}"
        )
        rows.setdefault((str(r["model"]), " ".join(label.split())), {})[f"{r['dataset']} {r['metric']}"] = cell
    cols = [f"{d} {m}" for d in dict.fromkeys(summary["dataset"].astype(str)) for m in metrics]
    models = list(dict.fromkeys(summary["model"].astype(str)))
    order = sorted(rows, key=lambda k: (models.index(k[0]), k[1].startswith("improv. ")))  # stable: arms first
    table = pd.DataFrame.from_dict({k: rows[k] for k in order}, orient="index").reindex(columns=cols).fillna("")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["model", "row"])
    return table


def comparison_view(comparison: pd.DataFrame) -> pd.DataFrame:
    """The comparison formatted for reading (means .4f, improvement % with its interval, t .2f, p and Holm p
    in e-notation, the protocol and tuning notes); the raw estimate and bounds stay in comparison.csv."""
    out = comparison.copy()
    out["ci_95"] = [ci_pct(r, 2) for _, r in out.iterrows()]
    for c in ("ref_mean", "mean"):
        out[c] = out[c].map(lambda v: f"{v:.4f}")
    out["improvement_pct"] = out["improvement_pct"].map(lambda v: "n/a" if math.isnan(v) else f"{v:+.2f}%")
    out["statistic"] = out["statistic"].map(lambda v: "n/a" if math.isnan(v) else f"{v:.2f}")
    out["p_value"], out["p_holm"] = out["p_value"].map(fmt_p), out["p_holm"].map(fmt_p)
    keep = [c for c in out.columns if c not in ("estimate", "ci_low", "ci_high", "ci_level", "ci_95")]
    return out[keep[: keep.index("improvement_pct") + 1] + ["ci_95"] + keep[keep.index("improvement_pct") + 1 :]]


def comparison_lines(comparison: pd.DataFrame) -> list[str]:
    """One line per comparison row, for the console: 'synthetic lightgcn proex vs base recall@20: +3.1%,
    95% CI [-1.2, +7.4]% (p=1.2e-01, Holm 4.8e-01); protocol differs: patience 5 (base) vs 20 (proex)'."""
    lines = []
    for _, r in comparison.iterrows():
        labels = " ".join(str(r[c]) for c in ("dataset", "model", "plugin", "variant") if c in r and str(r[c]))
        imp = "n/a" if math.isnan(r["improvement_pct"]) else f"{r['improvement_pct']:+.1f}%"
        notes = [str(x) for x in (r["note"], r["protocol"], r["tuning"]) if isinstance(x, str) and x]
        lines.append(
            f"{labels}: {r['arm']} vs {r['reference']} {r['metric']}: {imp}, 95% CI {ci_pct(r)} "
            f"(p={fmt_p(r['p_value'])}, Holm {fmt_p(r['p_holm'])})" + "".join(f"; {n}" for n in notes)
        )
    return lines


def write_report(
    runs: pd.DataFrame, out_dir: str, spec, curves: pd.DataFrame | None = None, title: str = ""
) -> tuple[dict[str, str], pd.DataFrame]:
    """Write report.md, summary.csv, comparison.csv, table.tex (+ figures named in spec.figures) to out_dir.

    spec: a proex.grid.ReportSpec (reference, reference_variant, metrics, test, figures). Every number is over
    matched seeds (`match_seeds`); the runs set aside are listed. Returns ({name: path}, the comparison
    DataFrame with raw and Holm-adjusted p-values)."""
    os.makedirs(out_dir, exist_ok=True)
    metrics = [m for m in spec.metrics if m in runs.columns] if not runs.empty else []
    arm, reference = ("variant", spec.reference_variant) if spec.reference_variant else ("plugin", spec.reference)
    files = {k: os.path.join(out_dir, k) for k in ("report.md", "summary.csv", "comparison.csv", "table.tex")}
    if runs.empty:
        summary = pd.DataFrame(columns=SUMMARY_COLUMNS)
        comparison = pd.DataFrame(columns=COMPARE_COLUMNS)
        table, md = pd.DataFrame(), f"# {title}\n\nNo finished runs yet.\n"
    else:
        matched, unmatched = match_seeds(runs, arm)
        summary = summarize(matched, metrics)
        comparison = compare(runs, metrics, reference, arm, spec.test)
        table = paper_table(summary, comparison, metrics, arm)
        seeds = ", ".join(map(str, sorted(set(matched["seed"]))))
        spread = summary[LABELS + ["metric", "n", "mean", "std"]].assign(
            mean=summary["mean"].map("{:.4f}".format), std=summary["std"].map("{:.4f}".format)
        )
        name = {"ttest": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}[spec.test]
        interval = {
            "ttest": "the t-interval of the mean paired difference",
            "wilcoxon": "the Hodges-Lehmann distribution-free interval of the paired shift",
        }[spec.test]
        family = int(comparison["p_value"].notna().sum())
        md = (
            f"# {title}\n\nTest metrics, mean over the matched seeds {seeds} ({len(matched)} runs): within each "
            f"comparison, only seeds that every {arm} finished. Improvement and {name} p-values: each {arm} "
            f"against `{reference}` over the same seeds; beside each Improv.% the 95% confidence interval "
            f"({interval}, in % of the `{reference}` mean). Holm-adjusted p-values control the family-wise "
            f"error over the report's family: the {family} comparisons with a p-value (every {arm} against "
            f"`{reference}`, per dataset, model and metric); the marks ** (Holm p < 0.01) and * (Holm p < 0.05) "
            f"use them.\n\n## Results\n\n{to_markdown(table)}{_row_footnotes(comparison, arm)}\n"
            f"## Paired tests ({name})\n\n{to_markdown(comparison_view(comparison), index=False)}\n"
            f"{provenance.protocol_section(matched, arm, [c for c in LABELS if c != arm])}"
            f"{_reproduction_section(summary)}"
            f"## Mean and std over seeds\n\n{to_markdown(spread, index=False)}"
        )
        if not unmatched.empty:
            cols = [c for c in LABELS + ["seed"] if c in unmatched]
            md += (
                "\n## Runs set aside (their seed is missing in another arm)\n\n"
                f"{to_markdown(unmatched[cols].astype(str), index=False)}"
            )
        md += first_dip_section(runs)
    with open(files["report.md"], "w") as f:
        f.write(md)
    summary.to_csv(files["summary.csv"], index=False, float_format="%.6g")
    comparison.to_csv(files["comparison.csv"], index=False, float_format="%.6g")
    with open(files["table.tex"], "w") as f:
        f.write(
            to_latex(table, caption=f"{title}: test metrics (mean over seeds)", label=f"tab:{title}")
            if not table.empty
            else ""
        )
    if not runs.empty:
        figs = {
            "curves": lambda p: plot_curves(curves, p) if curves is not None and not curves.empty else None,
            "ablation": lambda p: plot_ablation(summary, p, metrics[:2]),
            "sensitivity": lambda p: plot_sensitivity(summary, p, metrics[0]),
        }
        for name in spec.figures:
            path = os.path.join(out_dir, f"{name}.png")
            if figs[name](path):
                files[f"{name}.png"] = path
    return files, comparison


def _row_footnotes(comparison: pd.DataFrame, arm: str) -> str:
    """The '†' notes under the Results table: each arm whose protocol or tuning differs from the reference's."""
    group = [c for c in LABELS if c != arm]
    noted = comparison[(comparison["protocol"] != "") | (comparison["tuning"] != "")]
    notes = noted.drop_duplicates(group + ["arm"])
    lines = [
        f"- † {' '.join(str(r[c]) for c in group if str(r[c]))}, {r['arm']} vs {r['reference']}: "
        + "; ".join(x for x in (r["protocol"], r["tuning"]) if x)
        for _, r in notes.iterrows()
    ]
    return "\n" + "\n".join(lines) + "\n" if lines else ""


def _reproduction_section(summary: pd.DataFrame) -> str:
    """'Reproduction of the paper's values': each cell the paper printed, beside the seeds' mean and 95%
    t-interval: the difference in % and whether the paper's value lies inside the interval."""
    rows = summary[summary["paper_source"] != ""]
    if rows.empty:
        return ""
    view = pd.DataFrame(
        {
            **{c: rows[c].astype(str) for c in LABELS + ["metric"]},
            "n": rows["n"],
            "mean": rows["mean"].map("{:.4f}".format),
            "95% CI": [
                f"[{lo:.4f}, {hi:.4f}]" if not math.isnan(lo) else "n/a"
                for lo, hi in zip(rows["ci_low"], rows["ci_high"])
            ],
            "paper": rows["paper"].map("{:.4f}".format),
            "diff": rows["paper_diff_pct"].map(lambda v: f"{round(v, 2) + 0.0:+.2f}%"),
            "paper inside CI": rows["paper_in_ci"],
            "source": rows["paper_source"],
        }
    )
    inside = int((rows["paper_in_ci"] == "yes").sum())
    return (
        f"## Reproduction of the paper's values\n\n{inside} of {len(rows)} cells reproduce: the paper's "
        "published mean lies inside the seeds' 95% t-interval of our mean.\n\n"
        f"{to_markdown(view, index=False)}\n"
    )


def first_dip_section(runs: pd.DataFrame) -> str:
    """A warning section listing the runs whose best validation was their first (column `first_dip`, set by
    proex.infra.run_frames.runs_frame; proex.train.FIRST_DIP says why and the fix), or "" when there are none."""
    flagged = runs[runs["first_dip"].fillna(False).astype(bool)] if "first_dip" in runs else runs.iloc[:0]
    if flagged.empty:
        return ""
    cols = [c for c in ("dataset", "model", "plugin", "variant", "seed", "best_epoch") if c in flagged]
    return (
        f"\n## Warning: {len(flagged)} run(s) stopped in their first dip\n\nTheir best validation is their "
        "first one, so their test metrics (and the tests above that use them) may reflect an early-stopping "
        "accident rather than the method. Rerun them with a warm-up (`train.min_epochs`) or more patience "
        f"(`train.patience`).\n\n{to_markdown(flagged[cols], index=False)}"
    )
