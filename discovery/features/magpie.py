"""Magpie composition features, identical to matminer's ``ElementProperty.from_preset("magpie")``.

matminer featurizes one ``pymatgen.core.Composition`` at a time in Python (about 4 ms each); this
module computes the same 132 numbers for many formulas at once (a few µs each):

* formulas are parsed in bulk (:func:`discovery.chemistry._bulk.parse_formulas`, the exact results of
  :func:`~discovery.chemistry.formula.parse_formula`), each distinct string once;
* formulas with the same number of elements c are processed together: the (c x 22) property values
  of each formula are gathered from the element table and reduced across its c elements.

Semantics, all those of matminer 0.10.1 (``ElementProperty.featurize`` and ``PropertyStats``):

* Properties are read from the ``magpie_elementdata/*.table`` files shipped inside the installed
  matminer package (line Z-1 holds element Z; a missing or non-numeric line is NaN). With
  ``impute_nan=True`` (matminer's default) a NaN is replaced by the mean of the property over the
  elements with data (Z = 1..118), so no feature is ever NaN; with ``impute_nan=False`` NaN
  propagates: minimum, maximum, range, mean and avg_dev are NaN when any element of the formula
  lacks the property, and so is mode when one of the most abundant elements does.
* Weights are the element amounts per formula unit (not fractions; the mean is normalized anyway,
  but the mode's tie test depends on it): mean = Σ wᵢxᵢ / Σ wᵢ; avg_dev = Σ wᵢ|xᵢ - mean| / Σ wᵢ;
  range = max - min; mode = the smallest value among the elements whose amount is
  ``np.isclose`` (rtol 1e-5, atol 1e-8) to the largest amount.
* Sums are accumulated in NumPy's own order (sequential below 8 terms, 8-way pairwise from 8 on,
  elements in formula order), so results are bit-for-bit those of ``np.average`` in matminer,
  including the exact zeros of avg_dev when all elements share a value.
"""

from __future__ import annotations

__all__ = [
    "MAGPIE_COLUMNS",
    "MAGPIE_PROPERTIES",
    "MAGPIE_STATS",
    "magpie",
    "magpie_from_parsed",
    "magpie_matrix",
    "magpie_table",
]

import importlib.util
from collections.abc import Sequence
from functools import cache, reduce
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from discovery.chemistry._bulk import ParsedBatch, parse_distinct
from discovery.chemistry.formula import ELEMENTS

#: The 22 elemental properties of the Magpie preset, in matminer's order.
MAGPIE_PROPERTIES: tuple[str, ...] = (
    "Number",
    "MendeleevNumber",
    "AtomicWeight",
    "MeltingT",
    "Column",
    "Row",
    "CovalentRadius",
    "Electronegativity",
    "NsValence",
    "NpValence",
    "NdValence",
    "NfValence",
    "NValence",
    "NsUnfilled",
    "NpUnfilled",
    "NdUnfilled",
    "NfUnfilled",
    "NUnfilled",
    "GSvolume_pa",
    "GSbandgap",
    "GSmagmom",
    "SpaceGroupNumber",
)

#: The 6 statistics of the Magpie preset, in matminer's order.
MAGPIE_STATS: tuple[str, ...] = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")

#: The 132 feature names, as matminer labels them: property-major, statistic-minor.
MAGPIE_COLUMNS: tuple[str, ...] = tuple(
    f"MagpieData {stat} {prop}" for prop in MAGPIE_PROPERTIES for stat in MAGPIE_STATS
)

_MAX_Z = 118  # matminer reads (and averages over) elements 1..118
_ROWS_PER_BLOCK = 8192  # formulas per block: the per-block temporaries stay a few MB


def _magpie_data_dir() -> Path:
    spec = importlib.util.find_spec("matminer")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "matminer is not installed; the Magpie element tables are read from its package data"
        )
    return Path(spec.origin).parent / "utils" / "data_files" / "magpie_elementdata"


@cache
def magpie_table(impute_nan: bool = True) -> NDArray[np.float64]:
    """The Magpie element properties of elements H..Lr, read from the installed matminer package.

    Args:
        impute_nan: replace a missing value by the mean of that property over elements 1..118, as
            matminer's ``MagpieData(impute_nan=True)`` does (the ``from_preset`` default).

    Returns:
        read-only array of shape (103, 22): row ``i`` is element ``ELEMENTS[i]`` (Z = i + 1),
        columns follow :data:`MAGPIE_PROPERTIES` (units as in matminer: K, Å, eV, µB, Å³/atom...).
    """
    directory = _magpie_data_dir()
    table = np.empty((_MAX_Z, len(MAGPIE_PROPERTIES)), dtype=np.float64)
    for j, name in enumerate(MAGPIE_PROPERTIES):
        with open(directory / f"{name}.table") as handle:
            lines = handle.readlines()
        for z in range(1, _MAX_Z + 1):
            try:
                table[z - 1, j] = float(lines[z - 1])
            except (ValueError, IndexError):
                table[z - 1, j] = np.nan
        if impute_nan:
            column = table[:, j]
            column[np.isnan(column)] = np.nanmean(list(column))
    out = np.ascontiguousarray(table[: len(ELEMENTS)])
    out.flags.writeable = False
    return out


def _numpy_sum(terms: list[NDArray[np.float64]]) -> NDArray[np.float64]:
    """Element-wise sum of ``terms`` in the order NumPy's pairwise summation adds a 1-D array.

    ``np.sum`` of n < 8 numbers adds them one after the other; from 8 on it keeps 8 partial sums
    (a[0..7], then a[8..15] added to them, ...), combines them as
    ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)) and adds the remainder one by one.
    """
    n = len(terms)
    if n < 8:
        acc = terms[0].copy()
        for term in terms[1:]:
            acc += term
        return acc
    partial = [t.copy() for t in terms[:8]]
    i = 8
    while i < n - n % 8:
        for j in range(8):
            partial[j] += terms[i + j]
        i += 8
    acc = ((partial[0] + partial[1]) + (partial[2] + partial[3])) + (
        (partial[4] + partial[5]) + (partial[6] + partial[7])
    )
    for term in terms[i:]:
        acc += term
    return acc


def _stats(
    elements: NDArray[np.intp], weights: NDArray[np.float64], table: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The 6 statistics of each property for m formulas of c elements each.

    Args:
        elements: (m, c) element indices into ``table``.
        weights: (m, c) element amounts.
        table: (n_elements, p) property values.

    Returns:
        (m, p, 6) array: minimum, maximum, range, mean, avg_dev, mode.
    """
    c = elements.shape[1]
    values = [table[elements[:, k]] for k in range(c)]  # c arrays (m, p)
    w = [weights[:, k] for k in range(c)]  # c arrays (m,)
    w_col = [wk[:, None] for wk in w]
    total_w = _numpy_sum(w)[:, None]
    mean = _numpy_sum([v * wk for v, wk in zip(values, w_col, strict=True)]) / total_w
    avg_dev = (
        _numpy_sum([np.abs(v - mean) * wk for v, wk in zip(values, w_col, strict=True)]) / total_w
    )
    low = reduce(np.minimum, values)
    high = reduce(np.maximum, values)
    # np.isclose(weights, weights.max()): |w - w_max| <= atol + rtol·|w_max|, or w == w_max.
    w_max = reduce(np.maximum, w)
    tolerance = 1e-8 + 1e-5 * np.abs(w_max)
    mode = np.full_like(mean, np.inf)
    for v, wk in zip(values, w, strict=True):
        tied = (np.abs(wk - w_max) <= tolerance) | (wk == w_max)
        np.minimum(mode, np.where(tied[:, None], v, np.inf), out=mode)
    return np.stack([low, high, high - low, mean, avg_dev, mode], axis=-1)


def magpie_from_parsed(batch: ParsedBatch, *, impute_nan: bool = True) -> NDArray[np.float64]:
    """Magpie features of already parsed formulas.

    Args:
        batch: n parsed formulas (:func:`discovery.chemistry._bulk.parse_formulas`).
        impute_nan: matminer's ``impute_nan`` (see :func:`magpie_table`).

    Returns:
        float64 array of shape (n, 132), columns as :data:`MAGPIE_COLUMNS`.
    """
    table = magpie_table(impute_nan)
    n = len(batch)
    n_props = table.shape[1]
    out = np.empty((n, n_props, len(MAGPIE_STATS)), dtype=np.float64)
    offsets = batch.offsets
    for start in range(0, n, _ROWS_PER_BLOCK):
        counts = batch.counts[start : start + _ROWS_PER_BLOCK]
        first = offsets[start : start + len(counts)]
        for c in np.unique(counts):
            rows = np.flatnonzero(counts == c)
            positions = first[rows, None] + np.arange(c)
            out[start + rows] = _stats(batch.elements[positions], batch.amounts[positions], table)
    return out.reshape(n, n_props * len(MAGPIE_STATS))


def _as_object_array(
    formulas: Sequence[str] | NDArray[np.object_] | pd.Series,
) -> NDArray[np.object_]:
    if isinstance(formulas, pd.Series | pd.Index):
        return formulas.to_numpy(dtype=object)
    array = np.empty(len(formulas), dtype=object)
    array[:] = list(formulas)
    return array


def magpie_matrix(
    formulas: Sequence[str] | NDArray[np.object_] | pd.Series, *, impute_nan: bool = True
) -> tuple[NDArray[np.float64], tuple[str, ...]]:
    """Magpie features of n formulas as a float64 matrix, each distinct string computed once.

    Args:
        formulas: n chemical formulas (``"LiFePO4"``, ``"Li3V2(PO4)3"``, ``"Li0.5CoO2"``).
        impute_nan: matminer's ``impute_nan`` (default True, as ``from_preset("magpie")``).

    Returns:
        ``(values, names)``: values of shape (n, 132), float64; names = :data:`MAGPIE_COLUMNS`.

    Raises:
        FormulaBatchError: (a :class:`~discovery.errors.FormulaError`) for the first formula that does
            not parse; its ``index`` is the formula's position in ``formulas``.
    """
    strings = _as_object_array(formulas)
    codes, batch = parse_distinct(strings)
    values = magpie_from_parsed(batch, impute_nan=impute_nan)
    if len(batch) != len(strings):
        values = values[codes]
    return values, MAGPIE_COLUMNS


def magpie(
    formulas: Sequence[str] | NDArray[np.object_] | pd.Series, *, impute_nan: bool = True
) -> pd.DataFrame:
    """Magpie features of n formulas, exactly as matminer computes them.

    Equivalent to ``ElementProperty.from_preset("magpie").featurize_dataframe(...)`` on
    ``pymatgen.core.Composition(f)`` for each formula (same 132 column names and order, values equal
    to floating-point rounding, usually bit-for-bit), thousands of times faster.

    Args:
        formulas: n chemical formulas; a pandas Series keeps its index.
        impute_nan: matminer's ``impute_nan`` (default True: no NaN in the output).

    Returns:
        DataFrame of shape (n, 132), float64, columns :data:`MAGPIE_COLUMNS`.

    Raises:
        FormulaBatchError: (a :class:`~discovery.errors.FormulaError`) for the first formula that does
            not parse, with its position in ``index``.
    """
    values, names = magpie_matrix(formulas, impute_nan=impute_nan)
    index = formulas.index if isinstance(formulas, pd.Series) else None
    return pd.DataFrame(values, columns=list(names), index=index, copy=False)
