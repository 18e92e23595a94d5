"""proex.report: golden files (fixed runs in, exact Markdown/CSV out), t-tests against scipy, figures."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from proex import report
from proex.grid import ReportSpec

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
METRICS = ["recall@20", "ndcg@20"]


def fixed_runs() -> pd.DataFrame:
    """2 datasets x 2 models x 3 seeds x {base, proex}, with hand-chosen metrics; rows deliberately shuffled
    (yelp first, lightgcn before gccf) to check the report's own ordering."""
    rows = []
    base = {
        ("amazon", "gccf"): (0.1343, 0.0807),
        ("amazon", "lightgcn"): (0.1411, 0.0856),
        ("yelp", "gccf"): (0.1084, 0.0680),
        ("yelp", "lightgcn"): (0.1157, 0.0733),
    }
    lift = {"gccf": (0.0100, 0.0066), "lightgcn": (0.0122, 0.0084)}
    noise = {2023: (0.0011, 0.0004), 2024: (-0.0007, -0.0002), 2025: (-0.0004, -0.0002)}
    for dataset in ("yelp", "amazon"):
        for model in ("lightgcn", "gccf"):
            for seed in (2025, 2023, 2024):
                r, n = base[(dataset, model)]
                er, en = noise[seed]
                rows.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "plugin": "base",
                        "seed": seed,
                        "variant": "",
                        "recall@20": r + er,
                        "ndcg@20": n + en,
                    }
                )
                lr, ln = lift[model]
                xr, xn = {2023: (0.0010, 0.0002), 2024: (-0.0005, 0.0006), 2025: (0.0020, -0.0003)}[
                    seed
                ]  # unequal lifts
                rows.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "plugin": "proex",
                        "seed": seed,
                        "variant": "",
                        "recall@20": r + er + lr + xr,
                        "ndcg@20": n + en + ln + xn,
                    }
                )
    return pd.DataFrame(rows)


def _golden(name: str, text: str) -> None:
    path = os.path.join(GOLDEN, name)
    if os.environ.get("PROEX_UPDATE_GOLDEN"):
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        assert text == f.read(), f"{name} differs from the golden file (PROEX_UPDATE_GOLDEN=1 rewrites it)"


def test_report_matches_golden_files(tmp_path):
    files, _ = report.write_report(fixed_runs(), str(tmp_path), ReportSpec(metrics=tuple(METRICS)), title="golden")
    _golden("report.md", open(files["report.md"]).read())
    _golden("comparison.csv", open(files["comparison.csv"]).read())
    _golden("summary.csv", open(files["summary.csv"]).read())
    _golden("table.tex", open(files["table.tex"]).read())


def test_paired_t_test_matches_scipy_and_hand_means():
    runs = fixed_runs()
    cmp = report.compare(runs, METRICS)
    assert len(cmp) == 2 * 2 * 2  # datasets x models x metrics, proex vs base
    row = cmp[(cmp.dataset == "amazon") & (cmp.model == "lightgcn") & (cmp.metric == "recall@20")].iloc[0]
    sub = runs[(runs.dataset == "amazon") & (runs.model == "lightgcn")].sort_values("seed")
    a = sub[sub.plugin == "proex"]["recall@20"].to_numpy()
    b = sub[sub.plugin == "base"]["recall@20"].to_numpy()
    t, p = stats.ttest_rel(a, b)
    assert row.n == 3 and row.p_value == pytest.approx(p) and row.statistic == pytest.approx(t)
    assert row["ref_mean"] == pytest.approx(b.mean()) and row["mean"] == pytest.approx(a.mean())
    assert row.improvement_pct == pytest.approx(100 * (a.mean() - b.mean()) / b.mean())
    # report order: datasets as first seen (yelp), models as in Table 2 (gccf before lightgcn)
    assert list(cmp.dataset.astype(str).unique()) == ["yelp", "amazon"]
    assert list(cmp.model.astype(str).unique()) == ["gccf", "lightgcn"]


def _hand_t_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Paired t-test for 3 pairs by hand: t = mean(d) / (sd(d) / sqrt(3)); with 2 degrees of freedom the
    Student-t CDF is 1/2 + t / (2 sqrt(2 + t²)), so the two-sided p is 1 - |t| / sqrt(2 + t²)."""
    d = a - b
    t = d.mean() / (np.sqrt(((d - d.mean()) ** 2).sum() / 2) / np.sqrt(3))
    return t, 1 - abs(t) / np.sqrt(2 + t * t)


def test_golden_numbers_equal_a_hand_computation():
    """Every mean, Improv.% and p-value in the golden comparison file, recomputed here with numpy alone."""
    golden = pd.read_csv(os.path.join(GOLDEN, "comparison.csv"))
    runs = fixed_runs()
    assert len(golden) == 8
    for _, row in golden.iterrows():
        sub = runs[(runs.dataset == row.dataset) & (runs.model == row.model)].sort_values("seed")
        a = sub[sub.plugin == "proex"][row.metric].to_numpy()
        b = sub[sub.plugin == "base"][row.metric].to_numpy()
        t, p = _hand_t_test(a, b)
        assert row.ref_mean == pytest.approx(b.mean(), rel=1e-5) and row["mean"] == pytest.approx(a.mean(), rel=1e-5)
        assert row.improvement_pct == pytest.approx(100 * (a.mean() - b.mean()) / b.mean(), rel=1e-5)
        assert row.statistic == pytest.approx(t, rel=1e-5) and row.p_value == pytest.approx(p, rel=1e-4)


def test_a_missing_seed_is_set_aside_for_means_improvement_and_p_alike(tmp_path):
    runs = fixed_runs()
    runs = runs[~((runs.plugin == "proex") & (runs.seed == 2024) & (runs.model == "gccf"))]  # one failed run
    files, cmp = report.write_report(runs, str(tmp_path), ReportSpec(metrics=tuple(METRICS)), title="missing")
    row = cmp[(cmp.dataset == "amazon") & (cmp.model == "gccf") & (cmp.metric == "recall@20")].iloc[0]
    sub = runs[(runs.dataset == "amazon") & (runs.model == "gccf") & (runs.seed != 2024)].sort_values("seed")
    a, b = sub[sub.plugin == "proex"]["recall@20"].to_numpy(), sub[sub.plugin == "base"]["recall@20"].to_numpy()
    assert row.n == 2 and row.ref_mean == pytest.approx(b.mean()) and row["mean"] == pytest.approx(a.mean())
    summary = pd.read_csv(files["summary.csv"])
    base = summary[
        (summary.dataset == "amazon")
        & (summary.model == "gccf")
        & (summary.plugin == "base")
        & (summary.metric == "recall@20")
    ].iloc[0]
    assert base.n == 2 and base["mean"] == pytest.approx(b.mean(), rel=1e-5)  # the table's mean: the same seeds
    md = open(files["report.md"]).read()
    assert f"{b.mean():.4f}" in md and "Runs set aside" in md
    assert "| amazon | gccf | base |  | 2024 |" in md and "| yelp | gccf | base |  | 2024 |" in md


def test_a_constant_difference_has_no_p_value_and_says_why(tmp_path):
    runs = fixed_runs()
    base = runs[runs.plugin == "base"]
    runs = pd.concat([base, base.assign(plugin="proex", **{m: base[m] + 0.01 for m in METRICS})])
    files, cmp = report.write_report(runs, str(tmp_path), ReportSpec(metrics=tuple(METRICS)), title="constant")
    assert cmp.p_value.map(math.isnan).all() and cmp.statistic.map(math.isnan).all()
    assert cmp.note.str.startswith("no p-value: zero variance of the differences").all()
    md = open(files["report.md"]).read()
    assert "e-3" not in md.split("## Paired tests")[1].split("## Mean")[0].replace("1.00e-02", "")
    assert "(p=n/a, Holm n/a)" in md and "zero variance of the differences (all +0.01)" in md


def test_wilcoxon_option_matches_the_exact_signed_rank_p():
    cmp = report.compare(fixed_runs(), METRICS, test="wilcoxon")
    # 3 pairs, all differences of one sign: the exact two-sided p is 2 · (1/2)³ = 0.25
    lift = cmp[(cmp.model == "gccf") & (cmp.metric == "recall@20")]
    assert (lift.test == "wilcoxon").all() and lift.p_value.tolist() == pytest.approx([0.25, 0.25])
    with pytest.raises(ValueError, match="unknown test"):
        report.compare(fixed_runs(), METRICS, test="sign")


def test_unpaired_seeds_are_dropped_and_single_pairs_have_no_p_value():
    runs = fixed_runs()
    runs = runs[~((runs.plugin == "proex") & (runs.seed != 2023))]  # proex ran one seed only
    cmp = report.compare(runs, METRICS)
    assert (cmp.n == 1).all() and cmp.p_value.map(math.isnan).all()
    assert (cmp.note == "fewer than 2 matched seeds").all()
    assert "n/a" in report.comparison_view(cmp).p_value.tolist()


@pytest.fixture
def figures(monkeypatch) -> dict:
    """The matplotlib Figure behind each PNG the report writes, by file name, captured as it is saved."""
    from matplotlib.figure import Figure

    seen, save = {}, Figure.savefig

    def capture(fig, path, *args, **kwargs):
        seen[os.path.basename(str(path))] = fig
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    return seen


def _png_shape(path: str) -> tuple[int, int]:
    """(height, width) in pixels of a PNG read back from disk."""
    import matplotlib.image

    return matplotlib.image.imread(path).shape[:2]


def test_variant_reference_compares_within_plugin(tmp_path, figures):
    runs = fixed_runs().assign(variant="full")
    off = runs[runs.plugin == "proex"].assign(variant="w/o inv")
    off[METRICS] = off[METRICS] - 0.005
    runs = pd.concat([runs[runs.plugin == "proex"], off])
    cmp = report.compare(runs, METRICS, reference="full", arm="variant")
    assert set(cmp.arm) == {"w/o inv"} and (cmp.improvement_pct < 0).all()
    files, _ = report.write_report(
        runs,
        str(tmp_path),
        ReportSpec(reference_variant="full", metrics=tuple(METRICS), figures=("ablation",)),
        title="ablation",
    )
    assert "improv. proex w/o inv" in open(files["report.md"]).read()
    fig = figures["ablation.png"]
    assert _png_shape(files["ablation.png"]) == (int(3.2 * 120), 2 * 5 * 120)  # a panel per dataset
    for ax, ds in zip(fig.axes, ("yelp", "amazon")):
        assert ax.get_title() == ds and [t.get_text() for t in ax.get_legend().get_texts()] == [
            "proex full",
            "proex w/o inv",
        ]
        heights = [round(b.get_height(), 6) for b in ax.patches]  # a bar per (arm, metric), arms in order
        mine = runs[runs.dataset == ds]
        want = [round(mine[mine.variant == v][m].mean(), 6) for v in ("full", "w/o inv") for m in METRICS]
        assert heights == want


def test_sensitivity_and_curve_figures(tmp_path, figures):
    runs = fixed_runs()
    runs = runs[runs.plugin == "proex"]
    runs = pd.concat(
        [runs.assign(variant=f"num_envs={e}", **{"recall@20": runs["recall@20"] + e / 1000}) for e in (2, 3, 4)]
    )
    curves = pd.DataFrame(
        [
            {
                "model": "gccf",
                "plugin": p,
                "dataset": "amazon",
                "seed": s,
                "variant": "",
                "epoch": e,
                "value": 0.01 * e + (p == "proex") * 0.02,
            }
            for p in ("base", "proex")
            for s in (1, 2)
            for e in (0, 3, 6)
        ]
    )
    files, _ = report.write_report(
        runs, str(tmp_path), ReportSpec(metrics=tuple(METRICS), figures=("sensitivity", "curves")), curves=curves
    )
    assert _png_shape(files["sensitivity.png"]) == _png_shape(files["curves.png"]) == (int(3.2 * 120), 4 * 120)
    (curve_ax,) = figures["curves.png"].axes  # one panel: (amazon, gccf)
    assert curve_ax.get_title() == "gccf on amazon"
    lines = {ln.get_label(): (list(ln.get_xdata()), [round(y, 6) for y in ln.get_ydata()]) for ln in curve_ax.lines}
    assert lines == {"base": ([0, 3, 6], [0.0, 0.03, 0.06]), "proex": ([0, 3, 6], [0.02, 0.05, 0.08])}
    (sens_ax,) = figures["sensitivity.png"].axes  # one panel: num_envs
    assert sens_ax.get_title() == "num_envs" and len(sens_ax.containers) == 4  # a line per (dataset, model)
    for container in sens_ax.containers:
        model, ds = container.get_label().split()
        line = container.lines[0]
        mine = runs[(runs.model == model) & (runs.dataset == ds)]
        want = [mine[mine.variant == f"num_envs={e}"]["recall@20"].mean() for e in (2, 3, 4)]
        assert list(line.get_xdata()) == [2, 3, 4] and np.allclose(line.get_ydata(), want)
    assert (
        report.plot_sensitivity(
            report.summarize(runs.assign(variant="plain"), METRICS), str(tmp_path / "none.png"), "recall@20"
        )
        is None
    )


def test_empty_runs_write_a_placeholder(tmp_path):
    files, cmp = report.write_report(pd.DataFrame(), str(tmp_path), ReportSpec(), title="empty")
    assert "No finished runs" in open(files["report.md"]).read() and cmp.empty
