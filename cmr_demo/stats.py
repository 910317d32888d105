"""The statistics every comparison in the project uses: one spread convention, one interval, one paired test.

Why one module: the bundle's leaderboard, the studies and the docs used to mix the population and the sample
standard deviation (the same three runs read +-0.004 and +-0.005). Here a spread is always the sample standard
deviation (ddof 1) with n stated, an interval is Student's t over the seeds, and two objectives are compared
paired over the same test queries and seeds.
"""
from __future__ import annotations

import functools
import math

import numpy as np

LEVEL = 0.95  # intervals
ALPHA = 0.05  # tests: a difference is claimed only below this p-value


def _incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz), on the side
    of x where it converges fast. Here rather than scipy's: the app computes intervals at start-up, and importing
    scipy.stats alone took 1.6 s of it. Checked against scipy in tests/test_metrics.py."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _incomplete_beta(1.0 - x, b, a)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * fraction / a


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` (any positive real) degrees of freedom."""
    tail = 0.5 * _incomplete_beta(df / (df + t * t), df / 2.0, 0.5)
    return tail if t >= 0 else 1.0 - tail


@functools.lru_cache(maxsize=1024)  # intervals over seeds ask for the same few degrees of freedom again and again
def _t_quantile(p: float, df: float) -> float:
    """The `p` quantile of Student's t (0 < p < 1), by bisection on `t_sf` (exact to 1e-12; a few hundred
    microseconds)."""
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -_t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_sf(high, df) > 1.0 - p:
        low, high = high, high * 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if t_sf(mid, df) > 1.0 - p else (low, mid)
        if high - low < 1e-12 * max(1.0, high):
            break
    return 0.5 * (low + high)


def summary(values) -> dict:
    """Seed values -> {'n', 'mean', 'std' (sample, ddof 1; 0 for one value), 'ci_low', 'ci_high'}: a 95 % Student-t
    interval of the mean over seeds (the single value itself when n is 1: nothing says how it would vary)."""
    v = np.asarray(list(values), dtype=np.float64)
    n, mean = len(v), float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    half = _t_quantile(0.5 + LEVEL / 2, n - 1) * std / math.sqrt(n) if n > 1 else 0.0
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def paired_test(a, b) -> dict:
    """Is `a` better than `b`? `a`, `b`: [S, Q] AP of the same Q test queries under S seeds each (a row of one seed,
    e.g. a frozen backbone's, is compared with every seed of the other). Returns {'difference' (mean of a - b),
    'se', 'df', 'p' (two-sided)}.

    The design is crossed (every seed answers every query), so the difference's variance has a seed part and a
    query part: var over seeds of the per-seed mean difference / S, plus var over queries of the seed-averaged
    difference / Q; the t statistic is referred to Satterthwaite's degrees of freedom for that sum. With one seed
    on both sides only the query part is known, and the test is the paired t-test over queries."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    d = a - b  # [S, Q]; a one-seed side broadcasts over the other's seeds
    s, q = d.shape
    diff = float(d.mean())
    seed_part = float(d.mean(1).var(ddof=1)) / s if s > 1 else 0.0
    query_part = float(d.mean(0).var(ddof=1)) / q if q > 1 else 0.0
    se = math.sqrt(seed_part + query_part)
    if se == 0.0:
        return {"difference": diff, "se": 0.0, "df": float("nan"), "p": 1.0 if diff == 0 else 0.0}
    denominator = (seed_part ** 2 / (s - 1) if s > 1 else 0.0) + (query_part ** 2 / (q - 1) if q > 1 else 0.0)
    df = (seed_part + query_part) ** 2 / denominator
    return {"difference": diff, "se": se, "df": df, "p": min(1.0, 2.0 * t_sf(abs(diff) / se, df))}


def within_spread(per_seed_difference) -> bool:
    """A per-query difference between two objectives is within the seed spread when the seeds do not agree on its
    sign (one seed ranks them the other way, or ties them)."""
    d = np.asarray(per_seed_difference, np.float64)
    return not (np.all(d > 0) or np.all(d < 0))
