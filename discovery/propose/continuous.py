"""Choosing the next batch in a continuous composition space: :func:`propose_continuous`.

The decision vector ``X`` (element fractions, bounded, with linear equality and inequality
constraints) maps to augmented features ``Z = [space.features(X), space.exact(X)]``; the model,
objective, constraints, reference point and baseline prefilter are the pool's
(:mod:`discovery.propose.strategies`), and BoTorch's ``optimize_acqf`` works on ``X`` with
gradients through the space's differentiable feature map.
"""

from __future__ import annotations

__all__ = ["ContinuousSpaceLike", "propose_continuous"]

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from discovery.propose._rules import (
    BASELINE_LIMIT,
    MAX_CHOLESKY,
    Problem,
    baseline_rows,
    check_baseline,
    check_strategy,
    column_moments,
    make_problem,
    measured_outcomes,
    resolve_ref_point,
    simplex_weights,
)
from discovery.propose.spec import Objective, OutcomeConstraint, Proposal, ProposalError

if TYPE_CHECKING:
    import torch
    from botorch.acquisition.acquisition import AcquisitionFunction

    from discovery.surrogate.ensemble import DeepEnsemble


class ContinuousSpaceLike(Protocol):
    """What :func:`propose_continuous` needs of ``discovery.space.ContinuousSpace``."""

    @property
    def dim(self) -> int: ...

    @property
    def bounds(self) -> torch.Tensor: ...

    @property
    def equality_constraints(self) -> list[tuple[torch.Tensor, torch.Tensor, float]]: ...

    @property
    def inequality_constraints(self) -> list[tuple[torch.Tensor, torch.Tensor, float]]: ...

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    def features(self, X: torch.Tensor) -> torch.Tensor: ...

    def exact(self, X: torch.Tensor) -> torch.Tensor: ...

    def sample(self, n: int, seed: int) -> np.ndarray: ...


class _WithFixedFeatures:
    """A continuous space whose features end with constant columns (see :func:`with_fixed_features`)."""

    def __init__(
        self, space: ContinuousSpaceLike, names: Sequence[str], values: np.ndarray
    ) -> None:
        self._space = space
        self._names = tuple(names)
        self._values = np.asarray(values, dtype=np.float64).reshape(-1)

    @property
    def dim(self) -> int:
        return self._space.dim

    @property
    def bounds(self) -> torch.Tensor:
        return self._space.bounds

    @property
    def equality_constraints(self) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        return self._space.equality_constraints

    @property
    def inequality_constraints(self) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        return self._space.inequality_constraints

    @property
    def feature_names(self) -> tuple[str, ...]:
        return (*self._space.feature_names, *self._names)

    def features(self, X: torch.Tensor) -> torch.Tensor:
        import torch

        base = self._space.features(X)
        fixed = torch.as_tensor(self._values, dtype=base.dtype, device=base.device)
        return torch.cat([base, fixed.expand(*base.shape[:-1], len(self._values))], dim=-1)

    def exact(self, X: torch.Tensor) -> torch.Tensor:
        return self._space.exact(X)

    def sample(self, n: int, seed: int) -> np.ndarray:
        return self._space.sample(n, seed)


def with_fixed_features(
    space: ContinuousSpaceLike, names: Sequence[str], values: np.ndarray
) -> ContinuousSpaceLike:
    """``space`` with constant feature columns ``names`` = ``values`` appended to its features
    (e.g. the indicator columns of the fidelity proposals are scored at)."""
    return _WithFixedFeatures(space, names, values)


def propose_continuous(
    *,
    strategy: str = "qlognehvi",
    ensemble: DeepEnsemble,
    space: ContinuousSpaceLike,
    pending_X: np.ndarray | None = None,
    baseline_features: np.ndarray,
    baseline_exact: np.ndarray,
    baseline_values: pd.DataFrame,
    objectives: Sequence[Objective],
    constraints: Sequence[OutcomeConstraint] = (),
    ref_point: Sequence[float] | None = None,
    batch_size: int,
    mc_samples: int = 128,
    num_restarts: int = 8,
    raw_samples: int = 256,
    seed: int = 0,
) -> Proposal:
    """Choose ``batch_size`` points of a continuous composition space.

    * qlognehvi (one objective: qLogNEI): ``optimize_acqf(..., sequential=True)``.
    * qnparego: one ``qLogNParEGO`` per batch point with its own Chebyshev weights (from
      ``seed``), optimized in sequence with ``optimize_acqf_list``.
    * greedy: ``qSimpleRegret`` of the posterior-mean objective, feasibility-weighted by the
      constraints. One objective: the joint q-batch. Several: one weighted sum per batch point
      (each objective divided by its measured range; random simplex weights from ``seed``),
      optimized in sequence.
    * random: ``space.sample(batch_size, seed)``, ignoring the model.

    Every optimization respects ``space.bounds``, ``space.equality_constraints`` and
    ``space.inequality_constraints`` (``sum(c * x) >= rhs``).

    Args:
        space: a ``discovery.space.ContinuousSpace`` (see :class:`ContinuousSpaceLike`).
        pending_X: (p, dim) decision vectors submitted but unanswered (``X_pending``).
        num_restarts, raw_samples: ``optimize_acqf`` multistart settings.
        Other arguments: as in :func:`discovery.propose.propose_pool`.

    Returns:
        A :class:`Proposal` with ``X`` of shape (q, dim).
    """
    import torch
    from gpytorch.settings import max_cholesky_size

    start = time.perf_counter()
    check_strategy(strategy)
    problem = make_problem(ensemble, objectives, constraints)
    if batch_size < 1:
        raise ProposalError(f"batch_size must be at least 1, got {batch_size}")
    if tuple(space.feature_names) != tuple(ensemble.feature_names):
        ensemble.check_features(space.feature_names)
    base_x, base_exact = check_baseline(
        ensemble, baseline_features, baseline_exact, baseline_values
    )
    measured = measured_outcomes(problem, baseline_values, base_exact)
    dim = int(space.dim)
    pending = np.asarray([] if pending_X is None else pending_X, dtype=np.float64)
    pending = pending.reshape(-1, dim)
    seconds: dict[str, float] = {}

    def to_z(X: torch.Tensor) -> torch.Tensor:
        return torch.cat([space.features(X), space.exact(X)], dim=-1).to(torch.float64)

    def moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            xt = torch.as_tensor(X, dtype=torch.float64)
            features = space.features(xt).numpy().astype(np.float32)
            exact = space.exact(xt).numpy().astype(np.float64).reshape(len(X), -1)
        return column_moments(ensemble, features, exact, 1024)

    # Posterior means at feasible samples of the space: the reference point for objectives
    # never measured, and the normalization of greedy / ParEGO scalarizations without data.
    probe = np.asarray(space.sample(BASELINE_LIMIT, seed), dtype=np.float64).reshape(-1, dim)
    probe_mean, probe_std = moments(probe)
    probe_objectives = problem.objective_moments(probe_mean, probe_std)[0]
    ref = resolve_ref_point(ref_point, problem, measured, probe_objectives * problem.sign)
    ref_oriented = np.asarray(ref) * problem.sign

    if strategy == "random":
        X = np.asarray(space.sample(batch_size, seed), dtype=np.float64).reshape(-1, dim)
        values = np.full(len(X), np.nan)
    else:
        t0 = time.perf_counter()
        rows = baseline_rows(measured)
        with torch.random.fork_rng(), max_cholesky_size(MAX_CHOLESKY):
            torch.manual_seed(seed)
            X, values = _optimize(
                strategy,
                problem,
                ensemble,
                space,
                to_z=to_z,
                baseline_z=np.concatenate([base_x[rows], base_exact[rows]], axis=1),
                pending_X=pending,
                probe=probe,
                probe_objectives=probe_objectives,
                measured=measured,
                ref_oriented=ref_oriented,
                q=batch_size,
                mc_samples=mc_samples,
                num_restarts=num_restarts,
                raw_samples=raw_samples,
                seed=seed,
            )
        seconds["acquisition"] = time.perf_counter() - t0
    mean, std = moments(X)
    seconds["total"] = time.perf_counter() - start
    return Proposal(
        strategy=strategy,
        acquisition_value=values,
        ref_point=ref,
        predicted=problem.outcomes.predicted_frame(mean, std),
        X=X,
        seconds=seconds,
    )


def _optimize(
    strategy: str,
    problem: Problem,
    ensemble: DeepEnsemble,
    space: ContinuousSpaceLike,
    *,
    to_z: Any,
    baseline_z: np.ndarray,
    pending_X: np.ndarray,
    probe: np.ndarray,
    probe_objectives: np.ndarray,
    measured: dict[str, Any],
    ref_oriented: np.ndarray,
    q: int,
    mc_samples: int,
    num_restarts: int,
    raw_samples: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``optimize_acqf`` / ``optimize_acqf_list``; returns X (q, dim) and values (q,)."""
    import torch
    from botorch.optim.optimize import optimize_acqf, optimize_acqf_list

    from discovery.propose.models import (
        DecisionSpaceAcquisition,
        OutcomeObjective,
        augmented_model,
        build_acquisition,
        outcome_constraints,
    )

    model = augmented_model(ensemble)
    objective = OutcomeObjective(problem.outcomes, problem.objectives)
    bounds = outcome_constraints(problem.outcomes, problem.constraints)
    k = len(problem.objectives)
    pending = torch.as_tensor(pending_X, dtype=torch.float64) if len(pending_X) else None
    options: dict[str, Any] = {
        "bounds": torch.as_tensor(space.bounds, dtype=torch.float64),
        "num_restarts": num_restarts,
        "raw_samples": raw_samples,
        "equality_constraints": list(space.equality_constraints) or None,
        "inequality_constraints": list(space.inequality_constraints) or None,
        "options": {"seed": seed},
    }
    baseline = torch.as_tensor(baseline_z, dtype=torch.float64)

    def wrap(inner: AcquisitionFunction) -> AcquisitionFunction:
        acq = DecisionSpaceAcquisition(inner, to_z)
        acq.set_X_pending(pending)
        return acq

    acqs: list[AcquisitionFunction]
    if strategy == "greedy":
        acqs = _greedy_acquisitions(
            problem, model, objective, bounds, measured, probe_objectives, q, mc_samples, seed
        )
        if len(acqs) == 1:
            X, values = optimize_acqf(wrap(acqs[0]), q=q, **options)
        else:
            X, values = optimize_acqf_list([wrap(a) for a in acqs], **options)
    else:
        with torch.no_grad():
            scale_z = to_z(torch.as_tensor(probe, dtype=torch.float64))
        common: dict[str, Any] = {
            "model": model,
            "objective": objective,
            "constraints": bounds,
            "X_baseline": baseline,
            "X_pending": None,
            "ref_point": torch.as_tensor(ref_oriented, dtype=torch.float64),
            "mc_samples": mc_samples,
            "seed": seed,
            "X_scale": scale_z,
        }
        if strategy == "qnparego" and k > 1:
            weights = simplex_weights(k, q, seed)
            acqs = [wrap(build_acquisition(strategy, weights=w, **common)) for w in weights]
            X, values = optimize_acqf_list(acqs, **options)
        else:
            acq = wrap(build_acquisition(strategy, **common))
            X, values = optimize_acqf(acq, q=q, sequential=True, **options)
    out = np.full(q, np.nan)
    if values is not None:
        flat = np.asarray(values.detach().numpy(), dtype=np.float64).reshape(-1)
        out[:] = flat if flat.size == q else flat[0]
    return X.detach().numpy().astype(np.float64).reshape(q, -1), out


def _greedy_acquisitions(
    problem: Problem,
    model: Any,
    objective: Any,
    bounds: list[Any],
    measured: dict[str, Any],
    probe_objectives: np.ndarray,
    q: int,
    mc_samples: int,
    seed: int,
) -> list[AcquisitionFunction]:
    """``qSimpleRegret`` of the feasibility-weighted posterior-mean scalarization.

    One objective: one function for the joint batch. Several: q weighted sums of the objectives,
    each divided by its measured range (or, with fewer than two measured rows, the range of the
    posterior means at feasible samples of the space), with simplex weights from ``seed``.
    Constraints weight the objective by BoTorch's smoothed feasibility indicator, with an
    infeasible cost below every posterior mean seen at the samples.
    """
    import torch
    from botorch.acquisition.monte_carlo import qSimpleRegret
    from botorch.acquisition.objective import ConstrainedMCObjective, GenericMCObjective

    from discovery.propose.models import make_sampler

    k = len(problem.objectives)
    oriented = measured["oriented"][measured["complete"]]
    source = oriented if len(oriented) > 1 else probe_objectives
    span = np.ptp(source, axis=0)
    scale = torch.as_tensor(np.where(span > 0, span, 1.0), dtype=torch.float64)
    weights = torch.ones(1, 1, dtype=torch.float64) if k == 1 else simplex_weights(k, q, seed)
    acqs: list[AcquisitionFunction] = []
    for w in weights:

        def scalarized(samples: torch.Tensor, X: torch.Tensor | None = None, w: Any = w) -> Any:
            return (objective(samples, X) / scale * w).sum(-1)

        mc_objective: GenericMCObjective = GenericMCObjective(scalarized)
        if bounds:
            floor = float((torch.as_tensor(probe_objectives) / scale * w).sum(-1).min())
            mc_objective = ConstrainedMCObjective(
                objective=scalarized, constraints=bounds, infeasible_cost=max(0.0, -floor) + 1.0
            )
        acqs.append(
            qSimpleRegret(model, sampler=make_sampler(mc_samples, seed), objective=mc_objective)
        )
    return acqs
