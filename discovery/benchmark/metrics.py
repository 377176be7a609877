"""Benchmark arithmetic on traces: calls to a target, acceleration and enhancement factors.

A *trace* is one run's sequence of ``(calls, value)`` pairs at the end of each round: cumulative
oracle calls (the initial design included) and a value that never decreases with more calls (the
normalized hypervolume of the measured set, or the fraction of the true Pareto set found).

**Acceleration factor** (Liang et al., npj Comput. Mater. 7, 188 (2021); Rohr et al., Chem. Sci. 11,
2696 (2020)): ``AF = n_random / n_strategy``, where ``n`` is the number of oracle calls a run needs
until its value first reaches the target (90 % of the maximum hypervolume by default), read at
round ends. Runs are paired by seed (same initial design).

*Censoring.* A strategy run that never reaches the target within its budget only tells that
``n_strategy > last_calls``. Its factor is then an interval: ``n_random / pool_size ≤ AF <
n_random / last_calls`` (measuring the whole pool always reaches the target). The median over
seeds is reported as the interval between the median of the lower ends and the median of the upper
ends (the median is monotone in every value, so the true median lies inside); when no censored run
can move it, both ends are equal. A random run is never censored: random choices do not depend on
the model, so a random run that stops short is continued, model-free, by uniform draws from the rest
of the pool (see :mod:`discovery.benchmark.runner`).

**Enhancement factor** at a fixed number of calls ``b``: the mean over seeds of the strategy's value
at ``b`` divided by the mean over seeds of random's value at ``b`` (Liang et al. 2021, who compare
averaged curves).
"""

from __future__ import annotations

__all__ = [
    "AccelerationSummary",
    "acceleration_factor",
    "calls_to_reach",
    "enhancement_factor",
    "summarize_acceleration",
    "value_at",
]

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def calls_to_reach(calls: Sequence[float], values: Sequence[float], target: float) -> float:
    """Fewest calls at which ``values`` first reaches ``target`` (NaN when it never does).

    Args:
        calls: cumulative oracle calls at each round end, increasing.
        values: the trace's value at those round ends (NaN entries never count as reached).
        target: the level to reach, in the values' units.
    """
    c = np.asarray(calls, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if c.shape != v.shape:
        raise ValueError(f"calls {c.shape} and values {v.shape} differ in shape")
    hit = np.flatnonzero(np.nan_to_num(v, nan=-np.inf) >= target)
    return float(c[hit[0]]) if len(hit) else math.nan


def value_at(calls: Sequence[float], values: Sequence[float], budget: float) -> float:
    """The trace's value after ``budget`` calls: the last round end with at most that many calls
    (NaN when the first round end is already past ``budget``)."""
    c = np.asarray(calls, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    upto = np.flatnonzero(c <= budget)
    return float(v[upto[-1]]) if len(upto) else math.nan


def acceleration_factor(
    n_random: float, n_strategy: float, last_calls: float, pool_size: int
) -> tuple[float, float, bool]:
    """The acceleration factor of one seed as an interval ``(low, high, censored)``.

    Args:
        n_random: calls random needed to reach the target (never censored; see the module).
        n_strategy: calls the strategy needed; NaN when it never reached the target.
        last_calls: calls the strategy run made in all (its budget).
        pool_size: candidates in the pool (measuring all of them reaches any target ≤ 1).

    Returns:
        ``(af, af, False)`` when the strategy reached the target; ``(n_random / pool_size,
        n_random / last_calls, True)`` when it did not (the true factor is at least the first and
        below the second). NaN bounds when ``n_random`` is NaN.
    """
    if math.isnan(n_random):
        return math.nan, math.nan, math.isnan(n_strategy)
    if not math.isnan(n_strategy):
        af = n_random / n_strategy
        return af, af, False
    return n_random / pool_size, n_random / last_calls, True


@dataclass(frozen=True)
class AccelerationSummary:
    """Acceleration factors of one strategy over seeds.

    Attributes:
        median_low, median_high: bounds of the median factor (equal when censoring cannot move it).
        q25, q75: the inter-quartile envelope: the 25th percentile of the lower ends and the 75th
            percentile of the upper ends.
        n_runs: seeds with a factor (a random run to compare with).
        n_censored: of those, runs that never reached the target.
    """

    median_low: float
    median_high: float
    q25: float
    q75: float
    n_runs: int
    n_censored: int

    @property
    def median(self) -> float:
        """The median when censoring leaves it determined, else NaN."""
        return self.median_low if self.median_low == self.median_high else math.nan

    def text(self) -> str:
        """The median (and its bounds under censoring), e.g. ``6.5× (IQR 4.1–8.0×)``."""
        if self.n_runs == 0:
            return "n/a"
        if self.median_low == self.median_high:
            head = f"{self.median_low:.2f}×"
        else:
            head = f"between {self.median_low:.2f}× and {self.median_high:.2f}×"
        return f"{head} (IQR {self.q25:.2f}–{self.q75:.2f}×)"


def summarize_acceleration(
    low: Sequence[float], high: Sequence[float], censored: Sequence[bool]
) -> AccelerationSummary:
    """Median and spread of per-seed factor intervals (runs with NaN bounds are left out)."""
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    cens = np.asarray(censored, dtype=bool)
    keep = np.isfinite(lo) & np.isfinite(hi)
    lo, hi, cens = lo[keep], hi[keep], cens[keep]
    if len(lo) == 0:
        return AccelerationSummary(math.nan, math.nan, math.nan, math.nan, 0, 0)
    return AccelerationSummary(
        median_low=float(np.median(lo)),
        median_high=float(np.median(hi)),
        q25=float(np.percentile(lo, 25)),
        q75=float(np.percentile(hi, 75)),
        n_runs=len(lo),
        n_censored=int(cens.sum()),
    )


def enhancement_factor(strategy_values: Sequence[float], random_values: Sequence[float]) -> float:
    """Mean of the strategy's values over seeds divided by the mean of random's (NaN values are
    left out; NaN when random's mean is 0 or nothing is left)."""
    s = np.asarray(strategy_values, dtype=np.float64)
    r = np.asarray(random_values, dtype=np.float64)
    s, r = s[np.isfinite(s)], r[np.isfinite(r)]
    if len(s) == 0 or len(r) == 0 or r.mean() == 0:
        return math.nan
    return float(s.mean() / r.mean())
