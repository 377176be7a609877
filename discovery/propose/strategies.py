"""Choosing the next batch from a discrete candidate table: :func:`propose_pool`.

Strategies: "qlognehvi" (default), "qnparego", "greedy" (posterior mean) and "random". The rules
(shortlist, baseline prefilter, reference point, greedy ordering) are described in
``docs/proposals.md`` and in the docstrings below.
"""

from __future__ import annotations

__all__ = ["propose_pool"]

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from discovery.propose._rules import (
    MAX_CHOLESKY,
    Problem,
    baseline_rows,
    check_baseline,
    check_strategy,
    column_moments,
    make_problem,
    measured_front,
    measured_outcomes,
    resolve_ref_point,
    simplex_weights,
    with_exact,
)
from discovery.propose.marginal import (
    expected_hvi,
    feasibility_probability,
    layered_order,
    nondominated_cells,
)
from discovery.propose.spec import (
    EXACT_OUTCOMES,
    Objective,
    OutcomeConstraint,
    Proposal,
    ProposalError,
)

if TYPE_CHECKING:
    import torch

    from discovery.compute import Scorer
    from discovery.surrogate.ensemble import DeepEnsemble

#: Standard deviations of slack that make a candidate hopeless for a constraint.
_HOPELESS_SIGMAS = 3.0


# ------------------------------------------------------------------------------- helpers
def _hopeless(problem: Problem, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Rows whose mean is more than 3 σ outside some constraint's bounds."""
    cm, cs = problem.constraint_moments(mean, std)
    bad = np.zeros(mean.shape[0], dtype=bool)
    for j, c in enumerate(problem.constraints):
        if c.upper is not None:
            bad |= cm[:, j] - _HOPELESS_SIGMAS * cs[:, j] > c.upper
        if c.lower is not None:
            bad |= cm[:, j] + _HOPELESS_SIGMAS * cs[:, j] < c.lower
    return bad


def _shortlist(
    problem: Problem,
    mean: np.ndarray,
    std: np.ndarray,
    front: np.ndarray,
    ref_oriented: np.ndarray,
    size: int,
    minimum: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into the scored rows) of the shortlist, best first, and their scores.

    Score: closed-form expected hypervolume improvement of the marginal Gaussians over the
    measured feasible front (expected improvement for one objective) times the marginal
    probability of feasibility. Ties (e.g. improvement 0 for candidates that cannot pass the
    front) go to the larger sum of range-normalized optimistic values ``mean + 2 std``. Rows
    more than 3 σ outside a constraint are dropped, unless fewer than ``minimum`` rows remain.
    """
    om, os_ = problem.objective_moments(mean, std)
    lower, upper = nondominated_cells(front, ref_oriented)
    score = expected_hvi(om, os_, lower, upper)
    if problem.constraints:
        cm, cs = problem.constraint_moments(mean, std)
        score = score * feasibility_probability(
            cm, cs, [c.lower for c in problem.constraints], [c.upper for c in problem.constraints]
        )
    optimistic = om + 2.0 * os_
    span = np.ptp(optimistic, axis=0)
    tie = ((optimistic - optimistic.min(axis=0)) / np.where(span > 0, span, 1.0)).sum(axis=1)
    hopeless = _hopeless(problem, mean, std)
    order = np.lexsort((np.arange(len(score)), -tie, -score, hopeless))
    keep = max(size, minimum)
    n_ok = int((~hopeless).sum())
    take = min(len(order), max(min(keep, n_ok), minimum))
    order = order[:take]
    return order, score[order]


def _greedy_order(
    problem: Problem, mean: np.ndarray, std: np.ndarray, q: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the greedy batch and their acquisition values.

    Feasibility is judged on the posterior means. One objective: the q feasible rows with the
    best mean (value: the maximize-oriented mean). Several: the rows of the first non-dominated
    layers of the means, a layer's rows by decreasing crowding distance (value: minus the layer
    number). Too few feasible rows: the rest by least total violation, in predicted stds
    (value NaN).
    """
    om, _ = problem.objective_moments(mean, std)
    cm, cs = problem.constraint_moments(mean, std)
    violation = problem.violation(cm, cs)
    feasible = np.flatnonzero(violation <= 0)
    if om.shape[1] == 1:
        order = feasible[np.lexsort((feasible, -om[feasible, 0]))][:q]
        value = om[order, 0]
    else:
        picked, layers = layered_order(om[feasible], min(q, len(feasible)))
        order = feasible[picked]
        value = 0.0 - layers.astype(np.float64)
    if len(order) < q:
        rest = np.flatnonzero(violation > 0)
        rest = rest[np.lexsort((rest, violation[rest]))][: q - len(order)]
        order = np.concatenate([order, rest])
        value = np.concatenate([value, np.full(len(rest), np.nan)])
    return order.astype(np.int64), value.astype(np.float64)


# ----------------------------------------------------------------------------- pool mode
def propose_pool(
    *,
    strategy: str = "qlognehvi",
    ensemble: DeepEnsemble,
    pool_features: np.ndarray,
    pool_exact: np.ndarray,
    available: np.ndarray,
    pending: np.ndarray | None = None,
    baseline_features: np.ndarray,
    baseline_exact: np.ndarray,
    baseline_values: pd.DataFrame,
    objectives: Sequence[Objective],
    constraints: Sequence[OutcomeConstraint] = (),
    ref_point: Sequence[float] | None = None,
    batch_size: int,
    shortlist: int = 256,
    mc_samples: int = 128,
    seed: int = 0,
    chunk_rows: int = 1024,
    scorer: Scorer | None = None,
) -> Proposal:
    """Choose ``batch_size`` rows of a candidate pool.

    Args:
        strategy: "qlognehvi", "qnparego", "greedy" or "random".
        ensemble: the trained surrogate (d features, learned targets).
        pool_features: (n, d) float32 electrode features of the pool.
        pool_exact: (n, e) exact outcomes of the pool (capacity_grav in mAh/g).
        available: pool rows that may be proposed; rows in ``pending`` are removed from it.
        pending: pool rows submitted but unanswered: BoTorch ``X_pending``, never proposed.
        baseline_features, baseline_exact: (m, d) and (m, e): the measured in-scope points.
        baseline_values: m rows of measured outcomes (columns named by outcome, NaN allowed),
            for the reference point, the measured front and the baseline prefilter.
        objectives: one or more :class:`Objective`; constraints: :class:`OutcomeConstraint`.
        ref_point: in objective units, or None to derive it (see :func:`resolve_ref_point`).
        batch_size: q; fewer rows come back only when fewer are available.
        shortlist: candidates that reach the exact acquisition (at least q).
        mc_samples: Sobol QMC samples of the acquisition function.
        seed: seeds the sampler, the ParEGO weights and the random strategy.
        chunk_rows: rows per ensemble evaluation while scoring.
        scorer: scores the available rows in step (1) (:mod:`discovery.compute`, e.g. on Ray
            actors); None: :class:`~discovery.compute.LocalScorer`, in this process.

    Returns:
        A :class:`Proposal` with ``indices`` (pool rows, selection order, unique).
    """
    start = time.perf_counter()
    check_strategy(strategy)
    problem = make_problem(ensemble, objectives, constraints)
    if batch_size < 1:
        raise ProposalError(f"batch_size must be at least 1, got {batch_size}")
    d, e = len(ensemble.feature_names), len(EXACT_OUTCOMES)
    features = np.asarray(pool_features)
    if features.ndim != 2 or features.shape[1] != d:
        raise ProposalError(
            f"pool_features has shape {features.shape}; the model expects (n, {d}) features"
        )
    n = features.shape[0]
    exact = np.asarray(pool_exact, dtype=np.float64).reshape(n, e)
    pending_rows = np.unique(np.asarray([] if pending is None else pending, dtype=np.int64))
    candidates = np.unique(np.asarray(available, dtype=np.int64))
    for label, rows in (("available", candidates), ("pending", pending_rows)):
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise ProposalError(f"{label}: row indices must lie in [0, {n}) (the pool's rows)")
    candidates = np.setdiff1d(candidates, pending_rows, assume_unique=True)
    if len(candidates) == 0:
        raise ProposalError("available: no candidate left to propose (all measured or pending)")
    base_x, base_exact = check_baseline(
        ensemble, baseline_features, baseline_exact, baseline_values
    )
    measured = measured_outcomes(problem, baseline_values, base_exact)
    q = min(batch_size, len(candidates))
    seconds: dict[str, float] = {}

    if strategy == "random":
        rng = np.random.default_rng(seed)
        chosen = rng.choice(candidates, size=q, replace=False).astype(np.int64)
        mean, std = column_moments(ensemble, features[chosen], exact[chosen], chunk_rows)
        om, _ = problem.objective_moments(mean, std)
        ref = resolve_ref_point(ref_point, problem, measured, om * problem.sign)
        seconds["total"] = time.perf_counter() - start
        return Proposal(
            strategy=strategy,
            acquisition_value=np.full(q, np.nan),
            ref_point=ref,
            predicted=problem.outcomes.predicted_frame(mean, std),
            indices=chosen,
            seconds=seconds,
        )

    # (1) score every available row (the scorer bounds its copies of the features).
    t0 = time.perf_counter()
    if scorer is None:
        from discovery.compute import LocalScorer

        scorer = LocalScorer()
    model_mean, model_std = scorer.predict(ensemble, features, candidates, chunk_rows)
    mean, std = with_exact(model_mean, model_std, exact[candidates])
    seconds["score"] = time.perf_counter() - t0
    om, _ = problem.objective_moments(mean, std)
    ref = resolve_ref_point(ref_point, problem, measured, om * problem.sign)
    ref_oriented = np.asarray(ref) * problem.sign

    if strategy == "greedy":
        positions, values = _greedy_order(problem, mean, std, q)
        seconds["total"] = time.perf_counter() - start
        return Proposal(
            strategy=strategy,
            acquisition_value=values,
            ref_point=ref,
            predicted=problem.outcomes.predicted_frame(mean[positions], std[positions]),
            indices=candidates[positions],
            seconds=seconds,
        )

    # (2) shortlist by the marginal criterion.
    t0 = time.perf_counter()
    listed, _ = _shortlist(problem, mean, std, measured_front(measured), ref_oriented, shortlist, q)
    seconds["shortlist"] = time.perf_counter() - t0

    # (3) exact batch acquisition on the shortlist.
    t0 = time.perf_counter()
    base_rows = baseline_rows(measured)
    positions, values = _exact_pool(
        strategy,
        problem,
        ensemble,
        table_features=np.concatenate(
            [base_x[base_rows], features[pending_rows], features[candidates[listed]]]
        ),
        table_exact=np.concatenate(
            [base_exact[base_rows], exact[pending_rows], exact[candidates[listed]]]
        ),
        n_baseline=len(base_rows),
        n_pending=len(pending_rows),
        ref_oriented=ref_oriented,
        q=q,
        mc_samples=mc_samples,
        seed=seed,
        chunk_rows=chunk_rows,
    )
    seconds["acquisition"] = time.perf_counter() - t0
    picked = listed[positions]
    seconds["total"] = time.perf_counter() - start
    return Proposal(
        strategy=strategy,
        acquisition_value=values,
        ref_point=ref,
        predicted=problem.outcomes.predicted_frame(mean[picked], std[picked]),
        indices=candidates[picked],
        shortlist=candidates[listed],
        seconds=seconds,
    )


def _exact_pool(
    strategy: str,
    problem: Problem,
    ensemble: DeepEnsemble,
    *,
    table_features: np.ndarray,
    table_exact: np.ndarray,
    n_baseline: int,
    n_pending: int,
    ref_oriented: np.ndarray,
    q: int,
    mc_samples: int,
    seed: int,
    chunk_rows: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Sequential-greedy batch selection over the table's shortlist rows.

    The table holds ``n_baseline`` baseline rows, then ``n_pending`` pending rows, then the
    shortlist. Returns positions into the shortlist (selection order) and the acquisition value
    of each step.
    """
    import torch
    from botorch.optim.optimize import optimize_acqf_discrete
    from gpytorch.settings import max_cholesky_size

    from discovery.propose.models import (
        OutcomeObjective,
        build_acquisition,
        outcome_constraints,
        table_model,
    )

    rows = torch.arange(len(table_features), dtype=torch.float64).unsqueeze(-1)
    baseline = rows[:n_baseline]
    pending = rows[n_baseline : n_baseline + n_pending]
    choices = rows[n_baseline + n_pending :]
    kwargs: dict[str, Any] = {
        "objective": OutcomeObjective(problem.outcomes, problem.objectives),
        "constraints": outcome_constraints(problem.outcomes, problem.constraints),
        "X_baseline": baseline,
        "ref_point": torch.as_tensor(ref_oriented, dtype=torch.float64),
        "mc_samples": mc_samples,
        "seed": seed,
        "X_scale": choices,
    }
    with torch.random.fork_rng(), max_cholesky_size(MAX_CHOLESKY):
        torch.manual_seed(seed)
        model = table_model(ensemble, table_features, table_exact, chunk_rows)
        if strategy == "qnparego" and len(problem.objectives) > 1:
            weights = simplex_weights(len(problem.objectives), q, seed)
            picked: list[torch.Tensor] = []
            values: list[float] = []
            left = choices
            for i in range(q):
                acq = build_acquisition(
                    strategy,
                    model=model,
                    X_pending=torch.cat([pending, *picked]) if n_pending or picked else None,
                    weights=weights[i],
                    **kwargs,
                )
                best, value = optimize_acqf_discrete(acq, q=1, choices=left, unique=True)
                picked.append(best)
                values.append(float(value))
                left = left[left[:, 0] != best[0, 0]]
            chosen = torch.cat(picked)
            acq_values = torch.tensor(values)
        else:
            acq = build_acquisition(
                strategy, model=model, X_pending=pending if n_pending else None, **kwargs
            )
            chosen, acq_values = optimize_acqf_discrete(acq, q=q, choices=choices, unique=True)
    positions = chosen[:, 0].round().long().numpy() - (n_baseline + n_pending)
    return positions.astype(np.int64), acq_values.detach().numpy().astype(np.float64).reshape(-1)
