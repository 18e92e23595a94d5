"""Intervals and multiple-comparison control for the report (pure numpy/scipy).

* `t_interval`      — the Student-t confidence interval of a mean: mean ± t(1 - α/2, n - 1) · sd / √n. On paired
                      differences d = arm - reference over matched seeds it is the interval that goes with the
                      paired t-test (scipy.stats.ttest_rel tests mean(d) = 0 with the same t statistic); on one
                      arm's values it is the seeds' interval of the arm's mean (the reproduction column).
* `hodges_lehmann`  — for the Wilcoxon signed-rank test: the Hodges-Lehmann estimate of the shift (the median of
                      the n(n+1)/2 Walsh averages (d_i + d_j) / 2, i <= j) and its distribution-free interval
                      [W_(k), W_(M+1-k)] from the exact null distribution of the signed-rank statistic T+
                      (Hollander, Wolfe & Chicken, Nonparametric Statistical Methods, 3rd ed. 2014, section 3.2,
                      "Hodges-Lehmann estimator" and "distribution-free confidence interval"). It is the set of
                      shifts θ that the exact two-sided signed-rank test of d - θ does not reject at level α.
                      Its exact coverage is a step function of n: below n = 6 no interval reaches 95% (with n = 3
                      the widest, [min W, max W], covers 75%), so the achieved level is returned and printed.
* `holm`            — Holm's step-down adjusted p-values (Holm 1979, "A simple sequentially rejective multiple
                      test procedure"): with the m p-values sorted, p_adj(i) = max_{j <= i} min(1, (m - j + 1)
                      p(j)). They control the family-wise error rate at α over the family, with no assumption on
                      the dependence between the tests. NaN p-values (no test) are not part of the family.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

LEVEL = 0.95


def t_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of the t-interval of the mean of `values`; NaN bounds with fewer than two values or
    values without variance (the interval would be a point made of rounding noise)."""
    v = np.asarray(values, float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if len(v) < 2 or np.ptp(v) <= 1e-9 * max(float(np.abs(v).max()), 1e-12):
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def signed_rank_cdf(n: int) -> np.ndarray:
    """P(T+ <= t) for t = 0 .. n(n+1)/2 under the null (no ties): T+ is the sum of a random subset of the ranks
    1..n, each rank in or out with probability 1/2, so the counts are the coefficients of prod_r (1 + x^r)."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return np.cumsum(counts) / 2.0**n


def hodges_lehmann(d, level: float = LEVEL) -> tuple[float, float, float, float]:
    """(estimate, low, high, achieved level) of the Hodges-Lehmann shift of the paired differences `d`
    (see the module docstring); NaN with fewer than two differences."""
    d = np.asarray(d, float)
    n = len(d)
    if n < 2:
        return (float(d[0]) if n else math.nan), math.nan, math.nan, math.nan
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)  # M = n(n+1)/2 averages
    cdf = signed_rank_cdf(n)
    alpha = 1 - level
    ok = np.nonzero(cdf <= alpha / 2)[0]  # t with P(T+ <= t) <= α/2; the interval drops the k = t + 1 extremes
    k = int(ok[-1]) + 1 if len(ok) else 1  # no t: no interval reaches `level` (n < 6); take the widest one
    low, high = walsh[k - 1], walsh[len(walsh) - k]
    achieved = 1 - 2 * float(cdf[k - 1])  # P(W_(k) <= θ <= W_(M+1-k)) = 1 - 2 P(T+ <= k - 1)
    return float(np.median(walsh)), float(low), float(high), achieved


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values in the input order; NaN stays NaN and does not count in the family size."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, math.nan)
    idx = np.nonzero(~np.isnan(p))[0]
    m = len(idx)
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out
