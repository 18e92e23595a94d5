"""proex.report_stats and its use in the report: t-intervals and Hodges-Lehmann intervals against scipy and a
hand computation, Holm-adjusted p-values against a hand computation (statsmodels is not a dependency), and the
paper table's significance marks on the Holm-adjusted p."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_report import GOLDEN, METRICS, fixed_runs

from proex import report
from proex.report_stats import hodges_lehmann, holm, signed_rank_cdf, t_interval

T_975_2DF = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom (printed t tables: 4.303)


def test_t_interval_matches_scipy_and_the_printed_t_quantile():
    d = np.array([0.0121, 0.0102, 0.0143])
    mean, low, high = t_interval(d)
    sem = d.std(ddof=1) / math.sqrt(3)
    assert (low, high) == pytest.approx(stats.t.interval(0.95, 2, loc=d.mean(), scale=sem), rel=1e-12)
    assert (low, high) == pytest.approx((d.mean() - T_975_2DF * sem, d.mean() + T_975_2DF * sem), rel=1e-12)
    assert math.isnan(t_interval([0.01])[1]) and math.isnan(t_interval([0.01, 0.01, 0.01])[1])


def test_the_reports_intervals_equal_a_hand_computation():
    """Every interval in the golden comparison file: the mean paired difference ± t(0.975, 2) · sd / √3."""
    golden = pd.read_csv(os.path.join(GOLDEN, "comparison.csv"))
    runs = fixed_runs()
    for _, row in golden.iterrows():
        sub = runs[(runs.dataset == row.dataset) & (runs.model == row.model)].sort_values("seed")
        d = sub[sub.plugin == "proex"][row.metric].to_numpy() - sub[sub.plugin == "base"][row.metric].to_numpy()
        half = T_975_2DF * np.sqrt(((d - d.mean()) ** 2).sum() / 2) / np.sqrt(3)
        assert row.estimate == pytest.approx(d.mean(), rel=1e-5) and row.ci_level == 0.95
        assert (row.ci_low, row.ci_high) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-5)


def _beside(walsh: np.ndarray, x: float, side: int) -> float:
    """A shift between x and its next Walsh average above (side +1) or below (-1): no difference is then zero
    or tied, so the exact test applies."""
    nxt = walsh[walsh > x] if side > 0 else walsh[walsh < x]
    if len(nxt) == 0:
        return x + side
    return (x + (nxt.min() if side > 0 else nxt.max())) / 2


def test_hodges_lehmann_interval_is_the_set_the_exact_signed_rank_test_accepts():
    rng = np.random.default_rng(3)
    for n in (6, 8, 10, 13):
        d = rng.normal(0.01, 0.01, n)
        est, low, high, level = hodges_lehmann(d)
        i, j = np.triu_indices(n)
        walsh = np.sort((d[i] + d[j]) / 2)
        assert est == pytest.approx(np.median(walsh)) and level >= 0.95
        p = lambda theta, d=d: stats.wilcoxon(d - theta, method="exact").pvalue  # noqa: E731
        assert p(_beside(walsh, low, +1)) > 0.05 and p(_beside(walsh, high, -1)) > 0.05  # just inside: accepted
        assert p(_beside(walsh, low, -1)) <= 0.05 and p(_beside(walsh, high, +1)) <= 0.05  # just outside: rejected
    # n = 10: the printed two-sided 5% critical value of T is 8, so the interval is [W_(9), W_(47)] of 55
    d = np.arange(10) + np.array([0, 0.1, 0.3, 0.2, 0.5, 0.4, 0.7, 0.1, 0.2, 0.3])
    walsh = np.sort([(d[a] + d[b]) / 2 for a in range(10) for b in range(a, 10)])
    assert hodges_lehmann(d)[1:3] == (walsh[8], walsh[46])
    assert signed_rank_cdf(10)[8] == pytest.approx(25 / 1024) and signed_rank_cdf(10)[9] == pytest.approx(33 / 1024)


def test_hodges_lehmann_with_three_seeds_says_its_achieved_level():
    """n = 3: each of the 2³ sign patterns has probability 1/8, so no interval reaches 95%; the widest one,
    from the smallest to the largest Walsh average, covers 1 - 2/8 = 75%, and the report says so."""
    # Walsh averages .01 .015 .02 .025 .03 .04: median (.02 + .025) / 2
    assert hodges_lehmann([0.01, 0.02, 0.04]) == pytest.approx((0.0225, 0.01, 0.04, 0.75))
    cmp = report.compare(fixed_runs(), METRICS, test="wilcoxon")
    assert (cmp.ci_level == 0.75).all() and report.ci_pct(cmp.iloc[0]).endswith("% at 75%")


def _hand_holm(p: list[float]) -> list[float]:
    """Holm by its definition, a loop per p-value: max over the smaller-or-equal ones of (m - rank + 1) p."""
    m, order = len(p), sorted(range(len(p)), key=lambda i: p[i])
    out = [0.0] * m
    for rank, i in enumerate(order):
        out[i] = min(1.0, max((m - r) * p[order[r]] for r in range(rank + 1)))
    return out


def test_holm_matches_a_hand_computation_and_skips_missing_p():
    # sorted .005 .01 .03 .04 -> 4(.005)=.02, 3(.01)=.03, 2(.03)=.06, max(.06, 1(.04))=.06
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, 30).tolist()
    assert holm(p).tolist() == pytest.approx(_hand_holm(p))
    got = holm([0.01, math.nan, 0.02])
    assert math.isnan(got[1]) and got[[0, 2]].tolist() == pytest.approx([0.02, 0.02])  # family of 2, not 3


def test_report_holm_column_family_size_and_marks(tmp_path):
    from proex.grid import ReportSpec

    files, cmp = report.write_report(fixed_runs(), str(tmp_path), ReportSpec(metrics=tuple(METRICS)), title="h")
    assert cmp.p_holm.tolist() == pytest.approx(_hand_holm(cmp.p_value.tolist()))
    md = open(files["report.md"]).read()
    assert "the 8 comparisons with a p-value" in md and "(Holm p < 0.05)" in md
    # raw p 4.47e-03 < 0.01 would earn '**'; the Holm p 1.24e-02 earns '*': the mark uses the Holm p
    assert "+10.0% [+7.1, +12.9]%* (p=4.47e-03, Holm 1.24e-02)" in md
    assert "+11.7% [+10.2, +13.2]%** (p=9.22e-04, Holm 7.38e-03)" in md
