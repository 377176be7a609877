"""Rules shared by the pool and the continuous proposers: validated objectives and constraints,
measured outcomes, the baseline prefilter, the reference point and the ensemble's marginals."""

from __future__ import annotations

__all__ = [
    "BASELINE_LIMIT",
    "MAX_CHOLESKY",
    "Problem",
    "baseline_rows",
    "check_baseline",
    "check_strategy",
    "column_moments",
    "make_problem",
    "measured_front",
    "measured_outcomes",
    "resolve_ref_point",
    "simplex_weights",
    "with_exact",
]

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from discovery.export import reference_point
from discovery.propose.marginal import layered_order
from discovery.propose.spec import (
    EXACT_OUTCOMES,
    STRATEGIES,
    Objective,
    OutcomeConstraint,
    OutcomeSet,
    ProposalError,
)

if TYPE_CHECKING:
    import torch

    from discovery.surrogate.ensemble import DeepEnsemble

#: At most this many measured rows enter the exact acquisition as ``X_baseline``.
BASELINE_LIMIT = 256
#: Largest covariance (points × targets) sampled by Cholesky rather than Lanczos.
MAX_CHOLESKY = 20000


# --------------------------------------------------------------------------- the problem
@dataclass(frozen=True)
class Problem:
    """Validated objectives and constraints over one model's outcomes."""

    outcomes: OutcomeSet
    objectives: tuple[Objective, ...]
    constraints: tuple[OutcomeConstraint, ...]

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def maximize(self) -> list[bool]:
        return [o.maximize for o in self.objectives]

    @property
    def sign(self) -> np.ndarray:
        return np.where(self.maximize, 1.0, -1.0)

    def objective_moments(self, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maximize-oriented objective means and stds (n, k) from column moments."""
        pairs = [self.outcomes.moments(mean, std, n) for n in self.names]
        m = np.stack([p[0] for p in pairs], axis=1) * self.sign
        s = np.stack([p[1] for p in pairs], axis=1)
        return m, s

    def constraint_moments(
        self, mean: np.ndarray, std: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Outcome means and stds (n, r), one column per constraint."""
        n = mean.shape[0]
        if not self.constraints:
            return np.zeros((n, 0)), np.zeros((n, 0))
        pairs = [self.outcomes.moments(mean, std, c.name) for c in self.constraints]
        return np.stack([p[0] for p in pairs], axis=1), np.stack([p[1] for p in pairs], axis=1)

    def violation(self, values: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
        """Total bound violation of rows of constraint values (n, r), each divided by ``scale``
        (n, r) where given; NaN counts as no violation."""
        total = np.zeros(values.shape[0])
        for j, c in enumerate(self.constraints):
            v = values[:, j]
            over = np.zeros_like(v)
            if c.upper is not None:
                over = np.maximum(over, v - c.upper)
            if c.lower is not None:
                over = np.maximum(over, c.lower - v)
            over = np.nan_to_num(over, nan=0.0)
            if scale is not None:
                over = over / np.where(scale[:, j] > 0, scale[:, j], 1.0)
            total += over
        return total


def make_problem(
    ensemble: DeepEnsemble,
    objectives: Sequence[Objective],
    constraints: Sequence[OutcomeConstraint],
) -> Problem:
    outcomes = OutcomeSet(ensemble.target_names)
    objectives = tuple(objectives)
    constraints = tuple(constraints)
    if not objectives:
        raise ProposalError("objectives: at least one objective is needed")
    names = [o.name for o in objectives]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ProposalError(f"objectives: {duplicated} listed more than once")
    outcomes.check(names, "objectives")
    outcomes.check([c.name for c in constraints], "constraints")
    return Problem(outcomes, objectives, constraints)


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ProposalError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")


def check_baseline(
    ensemble: DeepEnsemble,
    baseline_features: np.ndarray,
    baseline_exact: np.ndarray,
    baseline_values: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray]:
    d, e = len(ensemble.feature_names), len(EXACT_OUTCOMES)
    features = np.asarray(baseline_features, dtype=np.float32).reshape(-1, d)
    exact = np.asarray(baseline_exact, dtype=np.float64).reshape(-1, e)
    if not len(features) == len(exact) == len(baseline_values):
        raise ProposalError(
            f"baseline: {len(features)} feature rows, {len(exact)} exact rows and "
            f"{len(baseline_values)} value rows; they must describe the same measured points"
        )
    return features, exact


# ------------------------------------------------------------------------- measured data
def measured_outcomes(problem: Problem, values: pd.DataFrame, exact: np.ndarray) -> dict[str, Any]:
    """Measured objectives (maximize-oriented), completeness and feasibility of baseline rows."""
    frame = values.reset_index(drop=True)
    y = np.stack(
        [problem.outcomes.measured(frame, exact, n) for n in problem.names], axis=1
    ).reshape(len(exact), len(problem.names))
    raw = y.copy()
    y = y * problem.sign
    if problem.constraints:
        c = np.stack(
            [problem.outcomes.measured(frame, exact, k.name) for k in problem.constraints], axis=1
        )
        feasible = problem.violation(c) <= 0
    else:
        feasible = np.ones(len(exact), dtype=bool)
    complete = ~np.isnan(y).any(axis=1)
    return {"raw": raw, "oriented": y, "complete": complete, "feasible": feasible}


def baseline_rows(measured: dict[str, Any], limit: int = BASELINE_LIMIT) -> np.ndarray:
    """At most ``limit`` baseline rows for ``X_baseline``, best first.

    Rule: rows with every objective measured and every measured constraint satisfied, by
    non-dominated layer of the measured objectives (crowding distance within a layer); then the
    complete but infeasible rows, the same way; then rows missing an objective, in row order.
    """
    y, complete, feasible = measured["oriented"], measured["complete"], measured["feasible"]
    chosen: list[np.ndarray] = []
    left = limit
    for group in (complete & feasible, complete & ~feasible):
        rows = np.flatnonzero(group)
        if left <= 0 or len(rows) == 0:
            continue
        order, _ = layered_order(y[rows], min(left, len(rows)))
        chosen.append(rows[order])
        left -= len(order)
    if left > 0:
        chosen.append(np.flatnonzero(~complete)[:left])
    return np.concatenate(chosen).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


def resolve_ref_point(
    ref_point: Sequence[float] | None,
    problem: Problem,
    measured: dict[str, Any],
    fallback: np.ndarray,
) -> tuple[float, ...]:
    """The reference point in objective units.

    Explicit values are checked and returned. Otherwise :func:`discovery.export.reference_point`
    (worst minus 10 % of the range, per objective) over the measured values that satisfy the
    outcome constraints (all measured values when fewer than two do); an objective with
    no measured value takes its column of ``fallback`` (posterior means of the scored
    candidates, objective units) instead.
    """
    k = len(problem.objectives)
    if ref_point is not None:
        point = tuple(float(v) for v in ref_point)
        if len(point) != k:
            raise ProposalError(
                f"ref_point: {len(point)} value(s) for {k} objective(s) ({', '.join(problem.names)})"
            )
        if not np.isfinite(point).all():
            raise ProposalError(f"ref_point: {point} has a non-finite value")
        return point
    raw = measured["raw"].copy()
    if int(measured["feasible"].sum()) >= 2:  # the front that counts is the feasible one
        raw = raw[measured["feasible"]]
    for j in range(k):
        if not np.isfinite(raw[:, j]).any():
            raw = np.vstack([raw, np.full((len(fallback), k), np.nan)])
            raw[-len(fallback) :, j] = fallback[:, j]
    return reference_point(raw, problem.maximize, names=problem.names)


def measured_front(measured: dict[str, Any]) -> np.ndarray:
    """Measured, complete, feasible objective rows (maximize-oriented)."""
    keep = measured["complete"] & measured["feasible"]
    return np.asarray(measured["oriented"][keep])


def column_moments(
    ensemble: DeepEnsemble, features: np.ndarray, exact: np.ndarray, chunk_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Marginal means and stds (n, T + e) of the model columns, float64 (exact std 0)."""
    pred = ensemble.predict(features, chunk_rows=chunk_rows)
    return with_exact(pred.mean, pred.std, exact)


def with_exact(
    mean: np.ndarray, std: np.ndarray, exact: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The model's (n, T) means and stds followed by the (n, e) exact columns (std 0), float64."""
    exact = np.asarray(exact, dtype=np.float64)
    return (
        np.concatenate([mean.astype(np.float64), exact], axis=1),
        np.concatenate([std.astype(np.float64), np.zeros_like(exact)], axis=1),
    )


def simplex_weights(k: int, n: int, seed: int) -> torch.Tensor:
    """n Chebyshev weight vectors uniform on the k-simplex, from ``seed``."""
    import torch
    from botorch.utils.sampling import sample_simplex

    return sample_simplex(k, n=n, seed=seed, dtype=torch.float64)
