"""The report's figures from its frames (matplotlib, Agg backend): training curves (Fig. 5), ablation bars
(Fig. 6), sensitivity curves (Figs. 8-10). Each returns the path it wrote (or None when nothing fits)."""

from __future__ import annotations

import pandas as pd


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
        arms = list(
            dict.fromkeys(f"{p} {v}".strip() for p, v in zip(sub["plugin"].astype(str), sub["variant"].astype(str)))
        )
        width = 0.8 / max(len(arms), 1)
        for i, arm_name in enumerate(arms):
            g = sub[
                [f"{p} {v}".strip() == arm_name for p, v in zip(sub["plugin"].astype(str), sub["variant"].astype(str))]
            ]
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
