"""The statistics of the sampling checks, each defined once.

A Monte Carlo check draws N outputs from a candidate and compares their histogram with the exact
law (from enumeration). Test: Pearson's chi-square goodness of fit over the outcomes, with outcomes
whose expected count is below 5 pooled into one cell; an observed outcome of zero exact probability
fails at once. Power: the smallest total-variation distance the test detects with the stated power
at its (corrected) level, `min_detectable_tv`. Multiple tests: Holm's step-down correction keeps the
family-wise false-alarm rate at the declared alpha.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass

from scipy import optimize, stats

MIN_EXPECTED = 5.0


@dataclass
class GofResult:
    n: int
    cells: int  # cells of the test after pooling
    chi2: float
    p_value: float
    tv: float  # total variation between the empirical and exact laws (over all outcomes)
    impossible: int  # samples of outcomes with exact probability 0

    def as_json(self):
        return asdict(self)


def goodness_of_fit(samples: list, exact: dict) -> GofResult:
    """Chi-square goodness of fit of `samples` (hashable outcomes) to `exact` {outcome: probability}."""
    n = len(samples)
    counts = Counter(samples)
    impossible = sum(c for k, c in counts.items() if exact.get(k, 0.0) <= 0)
    tv = 0.5 * sum(abs(counts.get(k, 0) / n - exact.get(k, 0.0)) for k in set(exact) | set(counts))
    big = [k for k, p in exact.items() if p > 0 and n * p >= MIN_EXPECTED]
    small = [k for k, p in exact.items() if p > 0 and n * p < MIN_EXPECTED]
    observed = [counts.get(k, 0) for k in big]
    expected = [n * exact[k] for k in big]
    if small:
        observed.append(sum(counts.get(k, 0) for k in small))
        expected.append(n * sum(exact[k] for k in small))
    if len(observed) < 2:
        return GofResult(n, len(observed), 0.0, 1.0 if not impossible else 0.0, tv, impossible)
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True) if e > 0)
    p_value = float(stats.chi2.sf(chi2, len(observed) - 1))
    if impossible:
        p_value = 0.0
    return GofResult(n, len(observed), chi2, p_value, tv, impossible)


def min_detectable_tv(n: int, cells: int, alpha: float, power: float = 0.8) -> float:
    """Smallest TV distance that the chi-square test with `cells` cells detects with probability
    >= `power` at level `alpha` from n samples. A deviation d has Cohen's w = sqrt(sum d^2 / p) >= 2 TV
    (Cauchy-Schwarz), and the test's noncentrality is n w^2, so every deviation with
    TV >= w_crit / 2 is detected, where w_crit solves P(ncx2(df, n w^2) > crit) = power."""
    df = max(cells - 1, 1)
    crit = stats.chi2.isf(alpha, df)

    def shortfall(lam):
        return stats.ncx2.sf(crit, df, lam) - power

    lam = optimize.brentq(shortfall, 1e-9, 1e6)
    return math.sqrt(lam / n) / 2


def holm(p_values: list[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise level alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    m = len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] <= alpha / (m - rank):
            rejected[i] = True
        else:
            break
    return rejected


def binomial_upper_tail(count: int, trials: int, rate: float) -> float:
    """P(X >= count) for X ~ Binomial(trials, rate): how surprising `count` false alarms are if the
    true false-alarm rate were `rate`."""
    return float(stats.binom.sf(count - 1, trials, rate))


def clopper_pearson(count: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    a = (1 - confidence) / 2
    low = 0.0 if count == 0 else float(stats.beta.ppf(a, count, trials - count + 1))
    high = 1.0 if count == trials else float(stats.beta.ppf(1 - a, count + 1, trials - count))
    return low, high
