"""The BoTorch side of proposals: the model over augmented features, objectives, constraints,
the sampler and the acquisition functions.

**Model.** Inputs are augmented features ``Z = [features (d), exact (e)]`` with the exact
columns in the order of :data:`~discovery.propose.spec.EXACT_OUTCOMES`. The model is a BoTorch
``ModelList`` of two parts:

* the deep ensemble (:class:`discovery.surrogate.EnsembleModel`) applied to ``Z[..., :d]``: a
  joint Gaussian over the batch points and the learned targets;
* a ``GenericDeterministicModel`` returning ``Z[..., d:]``: gravimetric capacity is a known
  function of the formulas (mAh/g), so it has no uncertainty and is never learned.

Outputs are ``[*ensemble.target_names, *EXACT_OUTCOMES]``. Its posterior is a ``PosteriorList``
(a Gaussian and an ``EnsemblePosterior`` with one member), so the sampler is a ``ListSampler``
of a seeded Sobol QMC normal sampler and an ``IndexSampler``; every Monte-Carlo acquisition
function (qLogNEHVI, qLogNParEGO, qLogNEI, qSimpleRegret) then sees ordinary
``sample x batch x q x (T + e)`` samples, and ``cache_root=False`` (the low-rank root update
applies to GPyTorch models only).

**Pool tables.** On a discrete pool the same model is evaluated at a few hundred distinct rows
(baseline, pending, shortlist) thousands of times. :func:`table_model` computes the ensemble's
member moments once per row and serves them by row number: its input is a single column holding
the row number in the table, and its posterior equals :func:`augmented_model`'s at that row's
``Z`` (same joint formula, same numbers).

**Objectives** are maximized: :class:`OutcomeObjective` picks the objective outcomes from the
samples (computing derived ones such as ``energy_grav = average_voltage × capacity_grav``) and
negates minimized ones. **Constraints** are BoTorch callables ``samples -> slack`` with
``slack <= 0`` feasible, one per finite bound.
"""

from __future__ import annotations

__all__ = [
    "DecisionSpaceAcquisition",
    "OutcomeBound",
    "OutcomeObjective",
    "augmented_model",
    "build_acquisition",
    "first_objective",
    "make_sampler",
    "outcome_constraints",
    "pareto_masks",
    "prune_baseline",
    "table_model",
]

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.acquisition.logei import qLogExpectedImprovement, qLogNoisyExpectedImprovement
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import MCMultiOutputObjective
from botorch.acquisition.objective import GenericMCObjective
from botorch.models.deterministic import GenericDeterministicModel
from botorch.models.model import ModelList
from botorch.sampling.index_sampler import IndexSampler
from botorch.sampling.list_sampler import ListSampler
from botorch.sampling.normal import SobolQMCNormalSampler
from botorch.utils.multi_objective.scalarization import get_chebyshev_scalarization
from torch import Tensor

from discovery.propose.spec import EXACT_OUTCOMES, Objective, OutcomeConstraint, OutcomeSet
from discovery.surrogate.adapter import EnsembleModel

if TYPE_CHECKING:
    from discovery.surrogate.ensemble import DeepEnsemble


def _skip_fused_kernel_build() -> None:
    """Keep BoTorch from compiling its fused qLogEHVI C++ kernel on first use.

    BoTorch (0.18) builds that kernel with ``torch.utils.cpp_extension.load``, which holds a lock
    file under ``~/.cache/torch_extensions`` while it checks and builds. A campaign killed at that
    moment (Ctrl-C twice, SIGKILL, a scheduler's time limit) leaves the lock behind, and every later
    run then waits on it forever. The pure-PyTorch path gives the same acquisition values; the
    kernel only makes that one step faster, which is not where a round spends its time.
    """
    from botorch.acquisition.multi_objective import logei

    if hasattr(logei, "_load_attempted"):
        logei._load_attempted = True


_skip_fused_kernel_build()


def _log_parego() -> Any:
    """``qLogNParEGO`` where the installed BoTorch has it (0.12 and later), else None."""
    try:
        from botorch.acquisition.multi_objective.parego import qLogNParEGO
    except ImportError:  # pragma: no cover - older BoTorch
        return None
    return qLogNParEGO


class _FeatureView:
    """The ensemble's member moments as a function of ``Z``: only ``Z[..., :d]`` is used."""

    def __init__(self, ensemble: DeepEnsemble) -> None:
        self.ensemble = ensemble
        self.target_names = ensemble.target_names
        self.d = len(ensemble.feature_names)

    def member_moments(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.ensemble.member_moments(z[..., : self.d])


class _MomentTable:
    """Precomputed member moments of table rows, served by row number (``x[..., 0]``)."""

    def __init__(self, means: Tensor, variances: Tensor, target_names: tuple[str, ...]) -> None:
        self.means = means  # (M, rows, T)
        self.variances = variances
        self.target_names = target_names

    def member_moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        rows = x[..., 0].round().long()  # (*batch, q)
        return self.means[:, rows], self.variances[:, rows]


def augmented_model(ensemble: DeepEnsemble, n_exact: int = len(EXACT_OUTCOMES)) -> ModelList:
    """``ModelList(ensemble on Z[..., :d], deterministic Z[..., d:])`` over augmented features.

    Args:
        ensemble: a trained :class:`~discovery.surrogate.DeepEnsemble` with d features.
        n_exact: e, the number of exact outcome columns appended to the features.

    Returns:
        A BoTorch model with inputs ``batch x q x (d + e)`` (double) and ``T + e`` outputs.
    """
    d = len(ensemble.feature_names)
    learned = EnsembleModel(cast("DeepEnsemble", _FeatureView(ensemble)))
    exact = GenericDeterministicModel(lambda z: z[..., d:], num_outputs=n_exact)
    return ModelList(learned, exact)


def table_model(
    ensemble: DeepEnsemble,
    features: np.ndarray,
    exact: np.ndarray,
    chunk_rows: int = 1024,
) -> ModelList:
    """The augmented model at a fixed table of rows, with inputs = row numbers.

    Args:
        ensemble: the trained ensemble (d features).
        features: (r, d) raw features of the table rows.
        exact: (r, e) exact outcomes of the table rows (mAh/g for capacity).
        chunk_rows: rows per ensemble evaluation.

    Returns:
        A BoTorch ``ModelList`` whose inputs are ``batch x q x 1`` doubles holding row numbers
        ``0 .. r-1``; its posterior at row i equals :func:`augmented_model`'s at
        ``[features[i], exact[i]]``.
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    means, variances = [], []
    with torch.no_grad():
        for start in range(0, len(x), chunk_rows):
            mu, var = ensemble.member_moments(torch.from_numpy(x[start : start + chunk_rows]))
            means.append(mu)
            variances.append(var)
    m = len(means[0]) if means else ensemble.config.members
    t = len(ensemble.target_names)
    source = _MomentTable(
        torch.cat(means, dim=1) if means else torch.zeros(m, 0, t),
        torch.cat(variances, dim=1) if variances else torch.zeros(m, 0, t),
        ensemble.target_names,
    )
    table = torch.as_tensor(np.asarray(exact, dtype=np.float64)).reshape(len(x), -1)
    learned = EnsembleModel(cast("DeepEnsemble", source))
    known = GenericDeterministicModel(
        lambda r: table[r[..., 0].round().long()], num_outputs=table.shape[1]
    )
    return ModelList(learned, known)


def make_sampler(mc_samples: int, seed: int) -> ListSampler:
    """Seeded QMC sampler for the augmented model's ``PosteriorList``."""
    shape = torch.Size([mc_samples])
    return ListSampler(SobolQMCNormalSampler(shape, seed=seed), IndexSampler(shape, seed=seed))


def _outcome(samples: Tensor, outcomes: OutcomeSet, name: str) -> Tensor:
    """One outcome from ``... x (T + e)`` samples, derived outcomes computed."""
    if name in outcomes.derived:
        a, b = outcomes.derived[name]
        return samples[..., outcomes.index(a)] * samples[..., outcomes.index(b)]
    return samples[..., outcomes.index(name)]


class OutcomeObjective(MCMultiOutputObjective):
    """The objective outcomes, maximize-oriented: ``... x (T + e)`` samples -> ``... x k``."""

    def __init__(self, outcomes: OutcomeSet, objectives: Sequence[Objective]) -> None:
        super().__init__()
        self.outcomes = outcomes
        self.names = tuple(o.name for o in objectives)
        self.sign = torch.tensor([1.0 if o.maximize else -1.0 for o in objectives])

    def forward(self, samples: Tensor, X: Tensor | None = None) -> Tensor:
        values = torch.stack([_outcome(samples, self.outcomes, n) for n in self.names], dim=-1)
        return values * self.sign.to(values)


class OutcomeBound:
    """A BoTorch constraint callable: ``samples -> slack`` (``<= 0`` feasible) for one bound.

    ``slack = bound - value`` for a lower bound, ``value - bound`` for an upper one, in the
    outcome's units.
    """

    def __init__(self, outcomes: OutcomeSet, name: str, bound: float, upper: bool) -> None:
        self.outcomes, self.name, self.bound, self.upper = outcomes, name, float(bound), upper

    def __call__(self, samples: Tensor) -> Tensor:
        value = _outcome(samples, self.outcomes, self.name)
        return value - self.bound if self.upper else self.bound - value

    def __repr__(self) -> str:
        return f"OutcomeBound({self.name} {'<=' if self.upper else '>='} {self.bound})"


def outcome_constraints(
    outcomes: OutcomeSet, constraints: Sequence[OutcomeConstraint]
) -> list[Callable[[Tensor], Tensor]]:
    """One :class:`OutcomeBound` per finite bound of every constraint."""
    bounds: list[Callable[[Tensor], Tensor]] = []
    for c in constraints:
        if c.lower is not None:
            bounds.append(OutcomeBound(outcomes, c.name, c.lower, upper=False))
        if c.upper is not None:
            bounds.append(OutcomeBound(outcomes, c.name, c.upper, upper=True))
    return bounds


def build_acquisition(
    strategy: str,
    *,
    model: ModelList,
    objective: OutcomeObjective,
    constraints: list[Callable[[Tensor], Tensor]],
    X_baseline: Tensor,
    X_pending: Tensor | None,
    ref_point: Tensor,
    mc_samples: int,
    seed: int,
    weights: Tensor | None = None,
    X_scale: Tensor | None = None,
) -> AcquisitionFunction:
    """The exact batch acquisition function for ``strategy`` on the augmented model.

    * "qlognehvi", k ≥ 2 objectives: ``qLogNoisyExpectedHypervolumeImprovement`` with
      ``cache_root=False`` on the baseline pruned by :func:`prune_baseline` (BoTorch's
      ``prune_baseline=True`` rule, computed faster), then ``prune_baseline=False``. An empty
      baseline is allowed: the improvement is then over the reference point (and the sampled
      front of the pending points, which qLogNEHVI caches into its baseline).
    * "qnparego", k ≥ 2: ``qLogNParEGO`` (``qNParEGO`` as qLogNEI over the Chebyshev
      scalarization where the installed BoTorch lacks it) with the given simplex ``weights``.
    * one objective, either strategy: ``qLogNoisyExpectedImprovement`` of that objective
      (hypervolume improvement in one dimension is improvement over the best).

    Without measured points, qLogNParEGO and qLogNEI have no noisy incumbent, so they become
    ``qLogExpectedImprovement`` over the reference point: of the objective (``best_f`` = the
    reference point), or of the Chebyshev scalarization normalized by the posterior means at
    ``X_scale`` (``best_f`` = the scalarized reference point).

    Args:
        ref_point: (k,) maximize-oriented reference point (double).
        X_baseline: ``r x D`` model inputs of measured points (r may be 0); X_pending:
            ``p x D`` or None; X_scale: ``s x D`` inputs whose posterior means normalize the
            ParEGO scalarization when ``X_baseline`` is empty.
    """
    sampler = make_sampler(mc_samples, seed)
    k = len(objective.names)
    common: dict[str, Any] = {
        "model": model,
        "sampler": sampler,
        "constraints": constraints or None,
        "X_pending": X_pending,
    }
    if strategy not in ("qlognehvi", "qnparego"):
        raise ValueError(f"no exact acquisition for strategy {strategy!r}")
    if strategy == "qlognehvi" and k > 1:
        # BoTorch's pruning rule, computed faster; an empty baseline is fine for qLogNEHVI
        # without pruning (improvement over the reference point and the pending points).
        X_baseline = prune_baseline(model, X_baseline, objective, constraints, ref_point, seed=seed)
        return qLogNoisyExpectedHypervolumeImprovement(
            ref_point=ref_point,
            objective=objective,
            X_baseline=X_baseline,
            prune_baseline=False,
            cache_root=False,
            **common,
        )
    if len(X_baseline) == 0:
        return _from_reference(strategy, objective, ref_point, weights, X_scale, common)
    common.update(X_baseline=X_baseline, prune_baseline=True, cache_root=False)
    if k == 1:
        return qLogNoisyExpectedImprovement(objective=first_objective(objective), **common)
    assert weights is not None
    parego = _log_parego()
    if parego is not None:
        return cast(
            AcquisitionFunction,
            parego(scalarization_weights=weights, objective=objective, **common),
        )
    # Older BoTorch: qNParEGO is (log) noisy EI of the Chebyshev scalarization, normalized by
    # the posterior means at the baseline.
    with torch.no_grad():
        y = objective(cast(Any, model.posterior(X_baseline)).mean)
    scalarized, _ = _chebyshev(objective, weights, y)
    return qLogNoisyExpectedImprovement(objective=scalarized, **common)


def first_objective(objective: MCMultiOutputObjective) -> GenericMCObjective:
    """The single objective of a one-objective :class:`OutcomeObjective`, as a scalar."""

    def first(samples: Tensor, X: Tensor | None = None) -> Tensor:
        return objective(samples, X)[..., 0]

    return GenericMCObjective(first)


def _chebyshev(
    objective: OutcomeObjective, weights: Tensor, y: Tensor
) -> tuple[GenericMCObjective, Callable[[Tensor], Tensor]]:
    """Augmented Chebyshev scalarization of the objectives, normalized by the rows ``y``."""
    chebyshev = get_chebyshev_scalarization(weights=weights, Y=y)

    def scalarize(values: Tensor) -> Tensor:
        return chebyshev(values, None)

    def scalarized(samples: Tensor, X: Tensor | None = None) -> Tensor:
        return chebyshev(objective(samples, X), X)

    return GenericMCObjective(scalarized), scalarize


def _from_reference(
    strategy: str,
    objective: OutcomeObjective,
    ref_point: Tensor,
    weights: Tensor | None,
    X_scale: Tensor | None,
    common: dict[str, Any],
) -> AcquisitionFunction:
    """Improvement over the reference point, for when nothing has been measured."""
    k = len(objective.names)
    if k == 1:
        return qLogExpectedImprovement(
            best_f=float(ref_point[0]), objective=first_objective(objective), **common
        )
    assert weights is not None and X_scale is not None
    with torch.no_grad():
        y = objective(cast(Any, common["model"].posterior(X_scale)).mean)
    scalarized, scalarize = _chebyshev(objective, weights, torch.cat([y, ref_point[None]]))
    best = float(scalarize(ref_point[None])[0])
    return qLogExpectedImprovement(best_f=best, objective=scalarized, **common)


def pareto_masks(values: Tensor) -> Tensor:
    """Non-dominated masks of a batch of point sets, duplicates kept (maximization).

    Args:
        values: ``batch x n x k`` maximize-oriented values.

    Returns:
        ``batch x n`` bool: not dominated within its batch (a row equal to a front row is on
        the front too). For k = 2 a sort and a running maximum, O(n log n) per batch; for k > 2
        BoTorch's ``is_non_dominated`` on batches small enough for its all-pairs kernel.
    """
    from botorch.utils.multi_objective.pareto import is_non_dominated

    batch, n, k = values.shape
    if n == 0:
        return torch.zeros(batch, 0, dtype=torch.bool)
    if k != 2:
        step = max(1, int(4e6 // (n * n * 8)))
        return torch.cat(
            [is_non_dominated(part, deduplicate=False) for part in values.split(step, dim=0)]
        )
    # Order by the first value, then the second, both descending (two stable sorts).
    by_second = torch.sort(values[..., 1], dim=-1, descending=True, stable=True).indices
    first = values[..., 0].gather(-1, by_second)
    by_first = torch.sort(first, dim=-1, descending=True, stable=True).indices
    order = by_second.gather(-1, by_first)
    a = values[..., 0].gather(-1, order)
    b = values[..., 1].gather(-1, order)
    positions = torch.arange(n).expand(batch, n)
    new_group = torch.ones(batch, n, dtype=torch.bool)
    new_group[:, 1:] = a[:, 1:] != a[:, :-1]
    start = torch.where(new_group, positions, 0).cummax(dim=-1).values  # first of equal a
    running = b.cummax(dim=-1).values
    before = torch.where(  # best b among rows with a strictly larger a
        start > 0, running.gather(-1, (start - 1).clamp_min(0)), -torch.inf
    )
    dominated = (before >= b) | (b.gather(-1, start) > b)
    dominated |= torch.isnan(a) | torch.isnan(b)
    mask = torch.empty(batch, n, dtype=torch.bool)
    mask.scatter_(-1, order, ~dominated)
    return mask


def prune_baseline(
    model: ModelList,
    X_baseline: Tensor,
    objective: OutcomeObjective,
    constraints: list[Callable[[Tensor], Tensor]],
    ref_point: Tensor,
    num_samples: int = 2048,
    seed: int = 0,
) -> Tensor:
    """The baseline points with a non-zero sampled probability of being Pareto optimal.

    BoTorch's ``prune_inferior_points_multi_objective`` rule (the one ``prune_baseline=True``
    applies: 2,048 joint posterior samples; in a sample, an infeasible point is set to the
    reference point; a point counts when it is non-dominated and better than the reference
    point in every objective), with a seeded sampler and :func:`pareto_masks`, whose sort-based
    front for two objectives replaces BoTorch's O(n²) loop over the 2,048 samples.

    Args:
        X_baseline: ``r x D`` model inputs; ref_point: (k,) maximize-oriented.

    Returns:
        The kept rows of ``X_baseline``, in their original order (possibly none).
    """
    if len(X_baseline) == 0:
        return X_baseline
    with torch.no_grad():
        samples = make_sampler(num_samples, seed)(model.posterior(X_baseline))
        values = objective(samples)  # num_samples x r x k
        if constraints:
            feasible = torch.stack([c(samples) <= 0 for c in constraints]).all(dim=0)
            values = torch.where(feasible.unsqueeze(-1), values, ref_point.to(values))
        counts = (pareto_masks(values) & (values > ref_point.to(values)).all(dim=-1)).sum(0)
    return X_baseline[counts > 0]


class DecisionSpaceAcquisition(AcquisitionFunction):
    """An acquisition function on decision vectors ``X`` of a continuous space.

    It maps ``X`` (``batch x q x dim``) to augmented features ``Z = [features(X), exact(X)]``
    and calls the inner acquisition function, which lives in ``Z`` space; pending points are
    mapped the same way. Gradients flow through the space's differentiable maps.
    """

    def __init__(self, inner: AcquisitionFunction, to_z: Callable[[Tensor], Tensor]) -> None:
        super().__init__(model=inner.model)
        self.inner = inner
        self.to_z = to_z
        self.set_X_pending(None)

    def forward(self, X: Tensor) -> Tensor:
        return self.inner(self.to_z(X))

    def set_X_pending(self, X_pending: Tensor | None = None) -> None:
        self.X_pending = None if X_pending is None else X_pending.detach().clone()  # type: ignore[assignment]
        if X_pending is None:
            self.inner.set_X_pending(None)
            return
        with torch.no_grad():
            self.inner.set_X_pending(self.to_z(X_pending.detach()))
