"""Pareto fronts, dominated hypervolume and the reference-point rule, on plain NumPy arrays.

Every function takes a value matrix ``values`` of shape ``(n, k)`` (n results, k objectives, in
the objectives' own units: V, mAh/g, Wh/kg, ...) and ``maximize``, one bool per objective. No
function changes the sign of what it returns: reference points are in objective units.

A row *dominates* another when it is at least as good in every objective and strictly better in
one. Rows with a NaN anywhere are never on the front and add nothing to a hypervolume.

BoTorch (for the hypervolume of three or more objectives) is imported inside the function that
needs it, so importing this module costs NumPy and pandas only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from discovery.errors import DiscoveryError, MissingColumnsError

__all__ = [
    "ObjectiveLike",
    "hypervolume",
    "hypervolume_trace",
    "pareto_mask",
    "reference_point",
]

# Bytes of booleans one comparison block may use in the k > 2 front (about 16 MiB).
_BLOCK_BYTES = 1 << 24


class ObjectiveLike(Protocol):
    """Anything with an outcome ``name`` and a ``direction`` ("maximize" or "minimize"), such as
    ``discovery.propose.Objective``."""

    @property
    def name(self) -> str: ...

    @property
    def direction(self) -> str: ...


def _as_matrix(values: object, maximize: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """``values`` as float64 (n, k) oriented so that larger is better, and the sign vector (k,)."""
    y = np.asarray(values, dtype=np.float64)
    flags = [bool(m) for m in maximize]
    if y.ndim == 1 and len(flags) == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise ValueError(f"values must be a 2-D (n, k) array, got shape {y.shape}")
    if y.shape[1] != len(flags):
        raise ValueError(
            f"values has {y.shape[1]} objective column(s) but maximize has {len(flags)} entries"
        )
    sign = np.where(flags, 1.0, -1.0)
    return y * sign, sign


def _front_2d(y: np.ndarray) -> np.ndarray:
    """Non-dominated mask of (m, 2) maximize-oriented rows without NaN; O(m log m).

    Rows are sorted by the first objective, then the second, both descending. A row is on the
    front when it has the largest second value of its first-value group (else a row of its group
    beats it) and that value is strictly above the running maximum of every earlier group (else a
    row with a larger first value is at least as good in the second).
    """
    m = y.shape[0]
    order = np.lexsort((-y[:, 1], -y[:, 0]))
    y0 = y[order, 0]
    y1 = y[order, 1]
    starts = np.flatnonzero(np.r_[True, y0[1:] != y0[:-1]])
    group = np.cumsum(np.r_[True, y0[1:] != y0[:-1]]) - 1
    best_in_group = y1[starts][group]
    running = np.maximum.accumulate(y1)
    before = np.empty(len(starts), dtype=np.float64)
    before[0] = -np.inf
    before[1:] = running[starts[1:] - 1]
    first_group = group == 0
    keep = (y1 == best_in_group) & (first_group | (y1 > before[group]))
    mask = np.empty(m, dtype=bool)
    mask[order] = keep
    return mask


def _front_nd(y: np.ndarray) -> np.ndarray:
    """Non-dominated mask of (m, k) maximize-oriented rows without NaN, any k.

    Values become dense per-column ranks (dominance is unchanged and ±inf need no care). Identical
    rows share one verdict, so the work runs on the distinct rows only. Those are visited in order
    of decreasing rank sum (a dominating row always has a strictly larger sum), block by block:
    a block's rows are checked against the front found so far and against each other, and the
    survivors join the front. A row dominated by anything is dominated by a front row, so no other
    comparison is needed.
    """
    m, k = y.shape
    ranks = np.empty((m, k), dtype=np.int64)
    for j in range(k):
        ranks[:, j] = np.unique(y[:, j], return_inverse=True)[1].reshape(-1)
    distinct, inverse = np.unique(ranks, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(-distinct.sum(axis=1), kind="stable")
    rows = distinct[order]
    on_front = np.zeros(len(rows), dtype=bool)
    front = np.empty((0, k), dtype=np.int64)
    block_rows = 512
    front_rows = max(1, _BLOCK_BYTES // (block_rows * k))
    for start in range(0, len(rows), block_rows):
        block = rows[start : start + block_rows]
        alive = np.ones(len(block), dtype=bool)
        for lo in range(0, front.shape[0], front_rows):
            part = front[lo : lo + front_rows]
            beaten = np.asarray((part[None, :, :] >= block[:, None, :]).all(axis=2))
            alive &= ~beaten.any(axis=1)
        # Within the block: distinct rows, so "at least as good everywhere" from another row means
        # dominated; the diagonal (a row against itself) is excluded.
        cand = block[alive]
        geq = np.asarray((cand[None, :, :] >= cand[:, None, :]).all(axis=2))
        np.fill_diagonal(geq, False)
        survivors = np.flatnonzero(alive)[~geq.any(axis=1)]
        on_front[start + survivors] = True
        front = np.concatenate([front, block[survivors]])
    distinct_mask = np.empty(len(rows), dtype=bool)
    distinct_mask[order] = on_front
    return distinct_mask[inverse]


def pareto_mask(values: object, maximize: Sequence[bool]) -> np.ndarray:
    """Which rows are non-dominated.

    Args:
        values: (n, k) array-like of objective values (NaN allowed).
        maximize: k flags, True where larger is better.

    Returns:
        Boolean array (n,). Rows with a NaN are False; rows identical to a front row are all True.
        O(n log n) for k ≤ 2 (a million rows take well under a second); for k > 2 the cost grows
        with n times the front size, in vectorized blocks of bounded memory.
    """
    y, _ = _as_matrix(values, maximize)
    n, k = y.shape
    mask = np.zeros(n, dtype=bool)
    valid = ~np.isnan(y).any(axis=1)
    if n == 0 or not valid.any():
        return mask
    yv = y[valid]
    if k == 0:
        sub = np.ones(len(yv), dtype=bool)
    elif k == 1:
        sub = yv[:, 0] == yv[:, 0].max()
    elif k == 2:
        sub = _front_2d(yv)
    else:
        sub = _front_nd(yv)
    mask[valid] = sub
    return mask


def hypervolume(values: object, ref_point: Sequence[float], maximize: Sequence[bool]) -> float:
    """Exact hypervolume dominated by the rows and bounded by ``ref_point``.

    The hypervolume is the Lebesgue measure (product of objective units, e.g. V·mAh/g) of the set
    of points that are dominated by at least one row and strictly better than the reference point
    in every objective. Rows with a NaN, and rows not strictly better than the reference point in
    every objective, contribute nothing.

    Args:
        values: (n, k) array-like of objective values.
        ref_point: k values in objective units (no sign change for minimized objectives).
        maximize: k flags, True where larger is better.

    Returns:
        The hypervolume (0.0 when no row is better than the reference point). Exact sweep for
        k ≤ 2; BoTorch's exact ``Hypervolume`` (dimension sweep) for k > 2.
    """
    y, sign = _as_matrix(values, maximize)
    ref = np.asarray(ref_point, dtype=np.float64).reshape(-1)
    if ref.shape[0] != y.shape[1]:
        raise ValueError(f"ref_point has {ref.shape[0]} entries but values has {y.shape[1]}")
    if np.isnan(ref).any():
        raise DiscoveryError(f"reference point {tuple(ref.tolist())} contains NaN")
    r = ref * sign
    y = y[~np.isnan(y).any(axis=1)]
    y = y[(y > r).all(axis=1)]
    if y.shape[0] == 0 or y.shape[1] == 0:
        return 0.0
    k = y.shape[1]
    if k == 1:
        return float(y[:, 0].max() - r[0])
    front = np.unique(y[pareto_mask(y, [True] * k)], axis=0)
    if k == 2:
        # Sorted by the first objective descending, the front's second objective increases; each
        # point adds the slab between the previous point's second value and its own.
        front = front[np.argsort(-front[:, 0], kind="stable")]
        steps = np.diff(np.r_[r[1], front[:, 1]])
        return float(np.sum((front[:, 0] - r[0]) * steps))
    import torch
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    hv = Hypervolume(ref_point=torch.as_tensor(r, dtype=torch.float64))
    return float(hv.compute(torch.as_tensor(front, dtype=torch.float64)))


def reference_point(
    values: object,
    maximize: Sequence[bool],
    margin: float = 0.1,
    *,
    names: Sequence[str] | None = None,
) -> tuple[float, ...]:
    """The reference point derived from observed values.

    Rule, per objective, over the finite values observed for it (NaN and ±inf are ignored):
    ``worst - margin × (max - min)`` for a maximized objective (worst = min) and
    ``worst + margin × (max - min)`` for a minimized one (worst = max). When all observed values
    are equal (range 0) the offset is ``margin × max(1, |worst|)`` instead, so the point stays
    strictly worse than every observation.

    Args:
        values: (n, k) array-like of objective values in their units.
        maximize: k flags, True where larger is better.
        margin: the fraction of the observed range to step beyond the worst value (≥ 0).
        names: objective names, used in error messages only.

    Returns:
        k floats in objective units.

    Raises:
        DiscoveryError: an objective without any finite observed value (give an explicit
            reference point instead), or a negative or non-finite margin.
    """
    y = np.asarray(values, dtype=np.float64)
    flags = [bool(m) for m in maximize]
    if y.ndim == 1 and len(flags) == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != len(flags):
        raise ValueError(f"values of shape {y.shape} do not match {len(flags)} objective(s)")
    if not np.isfinite(margin) or margin < 0:
        raise DiscoveryError(f"reference point margin must be a finite number ≥ 0, got {margin!r}")
    labels = list(names) if names is not None else [f"objective {j}" for j in range(len(flags))]
    point = []
    for j, is_max in enumerate(flags):
        column = y[:, j]
        column = column[np.isfinite(column)]
        if column.size == 0:
            raise DiscoveryError(
                f"cannot derive a reference point: {labels[j]} has no finite observed value "
                "(set the reference point explicitly)"
            )
        low, high = float(column.min()), float(column.max())
        worst = low if is_max else high
        spread = high - low
        offset = margin * spread if spread > 0 else margin * max(1.0, abs(worst))
        point.append(worst - offset if is_max else worst + offset)
    return tuple(point)


def _objective_columns(objectives: Iterable[ObjectiveLike]) -> tuple[list[str], list[bool]]:
    """Names and maximize flags of duck-typed objectives; checks the directions."""
    names: list[str] = []
    flags: list[bool] = []
    for i, objective in enumerate(objectives):
        direction = getattr(objective, "direction", None)
        if direction not in ("maximize", "minimize"):
            raise DiscoveryError(
                f"objectives[{i}].direction: expected 'maximize' or 'minimize', got {direction!r}"
            )
        names.append(str(objective.name))
        flags.append(direction == "maximize")
    if not names:
        raise DiscoveryError("objectives: at least one objective is needed")
    return names, flags


def ok_rows(history: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``history`` that count for the front: ``status == "ok"`` (when there is a status
    column) and ``feasible`` true (when there is a feasible column: the campaign's constraints)."""
    keep = np.ones(len(history), dtype=bool)
    if "status" in history.columns:
        keep &= history["status"].astype("string").eq("ok").fillna(False).to_numpy(bool)
    if "feasible" in history.columns:
        keep &= history["feasible"].astype("boolean").fillna(False).to_numpy(bool)
    return history[keep]


def hypervolume_trace(
    history: pd.DataFrame,
    objectives: Sequence[ObjectiveLike],
    ref_point: Sequence[float] | None,
    round_column: str = "round",
) -> pd.DataFrame:
    """Hypervolume of the measured results, round by round.

    Args:
        history: one row per result, with ``round_column``, the objective columns and optionally
            ``status`` (only ``"ok"`` rows count when it is present).
        objectives: objects with ``.name`` (a history column) and ``.direction``
            ("maximize" or "minimize").
        ref_point: in objective units; None derives it once from all ok results with
            :func:`reference_point`, so every round is measured against the same point.
        round_column: the column that holds the round number.

    Returns:
        One row per round found in ``history`` (ascending; rows with a missing round are left
        out), with columns ``round``, ``n_results`` (ok results up to and including the round),
        ``n_new`` (ok results of the round), ``n_pareto`` (of those up to the round, how many are
        non-dominated) and ``hypervolume`` (of all ok results up to and including the round, in
        the product of the objectives' units). Cumulative, so it never decreases.
    """
    names, flags = _objective_columns(objectives)
    missing = [c for c in [round_column, *names] if c not in history.columns]
    if missing:
        raise MissingColumnsError("history", missing, [str(c) for c in history.columns])
    ok = ok_rows(history)
    ok_values = ok[names].to_numpy(dtype=np.float64, na_value=np.nan)
    if ref_point is None:
        ref_point = reference_point(ok_values, flags, names=names)
    rounds_all = pd.to_numeric(history[round_column], errors="coerce").to_numpy(np.float64)
    rounds = np.unique(rounds_all[~np.isnan(rounds_all)])
    ok_rounds = pd.to_numeric(ok[round_column], errors="coerce").to_numpy(np.float64)
    records = []
    for r in rounds:
        upto = ok_rounds <= r
        values = ok_values[upto]
        records.append(
            {
                "round": int(r) if float(r).is_integer() else float(r),
                "n_results": int(upto.sum()),
                "n_new": int((ok_rounds == r).sum()),
                "n_pareto": int(pareto_mask(values, flags).sum()),
                "hypervolume": hypervolume(values, ref_point, flags),
            }
        )
    columns = ["round", "n_results", "n_new", "n_pareto", "hypervolume"]
    return pd.DataFrame.from_records(records, columns=columns)
