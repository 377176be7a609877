"""Cheap per-candidate criteria on marginal Gaussians, for whole pools (NumPy; no BoTorch).

All objective matrices here are *maximize-oriented*: minimized objectives arrive negated.

* :func:`expected_hvi` – the exact expected hypervolume improvement of one point whose objectives
  are independent Gaussians, over a front given by its box decomposition (closed form).
* :func:`feasibility_probability` – the marginal probability that every outcome constraint holds.
* :func:`nondominated_layers` – non-dominated sorting, peeled until enough rows are collected.
* :func:`crowding_distance` – NSGA-II's spread measure, to order the points of one layer.
"""

from __future__ import annotations

__all__ = [
    "crowding_distance",
    "expected_hvi",
    "feasibility_probability",
    "nondominated_cells",
    "nondominated_layers",
]

from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr

from discovery.export import pareto_mask

_INV_SQRT_2PI = 0.3989422804014327
_ELEMENTS_PER_BLOCK = 1 << 21  # candidate x cell x objective elements per vectorized block


def nondominated_cells(front: np.ndarray, ref_point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes that partition the region above ``ref_point`` that ``front`` does not dominate.

    Args:
        front: (m, k) maximize-oriented measured objective values (rows with NaN are ignored;
            m may be 0).
        ref_point: (k,) maximize-oriented reference point.

    Returns:
        ``(lower, upper)``, each (c, k); upper bounds may be ``inf``. For k = 1 this is the one
        box ``[max(best, ref), inf)``; for k ≥ 2 it is BoTorch's ``FastNondominatedPartitioning``.
    """
    ref = np.asarray(ref_point, dtype=np.float64).reshape(-1)
    k = ref.shape[0]
    y = np.asarray(front, dtype=np.float64).reshape(-1, k)
    y = y[~np.isnan(y).any(axis=1)]
    y = y[(y > ref).all(axis=1)]
    if k == 1:
        low = max(float(y.max()), float(ref[0])) if len(y) else float(ref[0])
        return np.array([[low]]), np.array([[np.inf]])
    if len(y) == 0:
        return ref[None, :].copy(), np.full((1, k), np.inf)
    import torch
    from botorch.utils.multi_objective.box_decompositions.non_dominated import (
        FastNondominatedPartitioning,
    )

    y = y[pareto_mask(y, [True] * k)]
    partitioning = FastNondominatedPartitioning(
        ref_point=torch.as_tensor(ref, dtype=torch.float64),
        Y=torch.as_tensor(y, dtype=torch.float64),
    )
    bounds = partitioning.get_hypercell_bounds().numpy()
    return bounds[0].copy(), bounds[1].copy()


def _clipped_gain(mean: np.ndarray, std: np.ndarray, low: np.ndarray, up: np.ndarray) -> np.ndarray:
    """``E[min(max(Y - low, 0), up - low)]`` for ``Y ~ N(mean, std²)``, elementwise.

    Equals ``∫_low^up P(Y > t) dt = std · (ψ(z_low) − ψ(z_up))`` with ``z = (mean − t) / std`` and
    ``ψ(z) = z Φ(z) + φ(z)``; for ``std = 0`` it is the clipped difference itself.
    """
    positive = std > 0
    s = np.where(positive, std, 1.0)
    z_low = (mean - low) / s
    psi_low = z_low * ndtr(z_low) + _INV_SQRT_2PI * np.exp(-0.5 * z_low**2)
    finite_up = np.isfinite(up)
    z_up = np.where(finite_up, (mean - np.where(finite_up, up, 0.0)) / s, 0.0)
    psi_up = np.where(finite_up, z_up * ndtr(z_up) + _INV_SQRT_2PI * np.exp(-0.5 * z_up**2), 0.0)
    stochastic = s * (psi_low - psi_up)
    deterministic = np.clip(mean - low, 0.0, up - low)
    return np.where(positive, np.maximum(stochastic, 0.0), deterministic)


def expected_hvi(
    mean: np.ndarray, std: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """Expected hypervolume improvement of single points with independent Gaussian objectives.

    The improvement of a point ``y`` is ``Σ_cells Π_j min(max(y_j − l_j, 0), u_j − l_j)`` over the
    boxes of :func:`nondominated_cells`; with independent objectives the expectation of each
    product is the product of the one-dimensional expectations, so this is exact (it is the
    box-decomposition form of the analytic EHVI).

    Args:
        mean: (n, k) maximize-oriented objective means.
        std: (n, k) standard deviations (0 for exact objectives).
        lower, upper: (c, k) cell bounds.

    Returns:
        (n,) float64 expected improvements, in the product of the objectives' units.
    """
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    n, k = mean.shape
    c = lower.shape[0]
    out = np.empty(n, dtype=np.float64)
    rows = max(1, _ELEMENTS_PER_BLOCK // max(1, c * k))
    for start in range(0, n, rows):
        m = mean[start : start + rows, None, :]
        s = std[start : start + rows, None, :]
        gain = _clipped_gain(m, s, lower[None], upper[None])  # (rows, c, k)
        out[start : start + rows] = gain.prod(axis=2).sum(axis=1)
    return out


def feasibility_probability(
    mean: np.ndarray,
    std: np.ndarray,
    lower: Sequence[float | None],
    upper: Sequence[float | None],
) -> np.ndarray:
    """``Π_j P(lower_j ≤ Y_j ≤ upper_j)`` for independent ``Y_j ~ N(mean_j, std_j²)``.

    Args:
        mean, std: (n, r), one column per constraint; std 0 gives an indicator.
        lower, upper: r bounds each, None for an open side.

    Returns:
        (n,) probabilities.
    """
    n = mean.shape[0]
    prob = np.ones(n, dtype=np.float64)
    for j, (lo, up) in enumerate(zip(lower, upper)):
        m, s = mean[:, j], std[:, j]
        positive = s > 0
        safe = np.where(positive, s, 1.0)
        p_up = np.ones(n) if up is None else np.where(positive, ndtr((up - m) / safe), m <= up)
        p_lo = np.zeros(n) if lo is None else np.where(positive, ndtr((lo - m) / safe), m < lo)
        prob *= np.clip(p_up - p_lo, 0.0, 1.0)
    return prob


def nondominated_layers(values: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Non-dominated sorting of maximize-oriented rows: the layer of each row.

    Layer 0 is the Pareto front, layer 1 the front of the rest, and so on. Peeling stops once
    ``limit`` rows have a layer (the layer that crosses it is completed); the others, and rows
    with NaN, get ``-1``.

    Args:
        values: (n, k) maximize-oriented values.
        limit: stop after this many rows are layered (None: all rows).

    Returns:
        (n,) int64 layer numbers, -1 where not layered.
    """
    y = np.asarray(values, dtype=np.float64)
    n, k = y.shape
    layer = np.full(n, -1, dtype=np.int64)
    remaining = np.flatnonzero(~np.isnan(y).any(axis=1))
    limit = n if limit is None else limit
    done, depth = 0, 0
    while len(remaining) and done < limit:
        mask = pareto_mask(y[remaining], [True] * k)
        layer[remaining[mask]] = depth
        done += int(mask.sum())
        remaining = remaining[~mask]
        depth += 1
    return layer


def crowding_distance(values: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the rows of one layer (n, k): per objective, the gap between
    each row's two neighbours divided by the objective's range, summed; the extreme rows get
    ``inf``. Larger means more isolated."""
    y = np.asarray(values, dtype=np.float64)
    n, k = y.shape
    distance = np.zeros(n, dtype=np.float64)
    if n <= 2:
        distance[:] = np.inf
        return distance
    for j in range(k):
        order = np.argsort(y[:, j], kind="stable")
        column = y[order, j]
        span = column[-1] - column[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (column[2:] - column[:-2]) / span
    return distance


def layered_order(values: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` rows by (non-dominated layer, then decreasing crowding distance).

    Args:
        values: (n, k) maximize-oriented values without NaN.
        count: how many rows to return (at most n).

    Returns:
        ``(rows, layers)``: (count,) row indices in order, and their layer numbers.
    """
    layer = nondominated_layers(values, limit=count)
    rows: list[np.ndarray] = []
    taken = 0
    for depth in range(int(layer.max()) + 1 if (layer >= 0).any() else 0):
        members = np.flatnonzero(layer == depth)
        crowd = crowding_distance(values[members])
        members = members[np.lexsort((members, -crowd))]  # ties: lower row first
        rows.append(members)
        taken += len(members)
        if taken >= count:
            break
    order = np.concatenate(rows)[:count] if rows else np.zeros(0, dtype=np.int64)
    return order, layer[order]
