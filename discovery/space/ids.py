"""Stable candidate ids: the same electrode gets the same id however its formulas are written.

A candidate is a (working ion, charged formula, discharged formula) triple. Its id is
``"c-"`` followed by the first 16 hex digits of the SHA-256 of ``"{ion}|{charge}|{discharge}"``,
where each formula is written canonically: parsed (:func:`~discovery.chemistry.parse_formula`:
brackets multiplied out, repeated elements summed), elements in the order of
:data:`~discovery.chemistry.ELEMENTS` (H, He, Li, ...), each followed by its amount formatted as
``format(round(amount, 6), ".6g")``, the amount always written (``"Li1Co1O2"``).

So ``LiCoO2``, ``CoO2Li`` and ``Li1Co1O2`` share an id, and ``Li3V2(PO4)3`` and ``Li3V2P3O12`` too.
:func:`candidate_ids` does the same for a whole table, parsing every distinct formula once.
"""

from __future__ import annotations

__all__ = ["candidate_id", "candidate_ids", "canonical_formula", "canonical_formulas"]

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from discovery.chemistry._bulk import FormulaBatchError, ParsedBatch, parse_distinct
from discovery.chemistry.formula import ELEMENTS, parse_formula
from discovery.errors import DiscoveryError, FormulaError, MissingColumnsError

_ID_PREFIX = "c-"
_HEX_DIGITS = 16
_COLUMNS = ("working_ion", "formula_charge", "formula_discharge")


def _amount_text(amount: float) -> str:
    return format(round(amount, 6), ".6g")


def canonical_formula(formula: str) -> str:
    """The canonical writing of a formula: ``"CoO2Li"`` -> ``"Li1Co1O2"``.

    Elements in :data:`~discovery.chemistry.ELEMENTS` order, each followed by its amount per
    formula unit as ``format(round(amount, 6), ".6g")``. Raises
    :class:`~discovery.errors.FormulaError` for a formula that does not parse.
    """
    parsed = parse_formula(formula)
    order = sorted(parsed, key=ELEMENTS.index)
    return "".join(f"{el}{_amount_text(parsed[el])}" for el in order)


def _digest(key: str) -> str:
    return _ID_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:_HEX_DIGITS]


def candidate_id(ion: str, formula_charge: str, formula_discharge: str) -> str:
    """The id of one candidate: ``"c-"`` + 16 hex digits of SHA-256 of the canonical triple."""
    if not isinstance(ion, str) or not ion:
        raise DiscoveryError(f"working ion must be a non-empty string, got {ion!r}")
    key = f"{ion}|{canonical_formula(formula_charge)}|{canonical_formula(formula_discharge)}"
    return _digest(key)


def _canonical_batch(batch: ParsedBatch) -> NDArray[np.object_]:
    """Canonical strings of every formula of a parsed batch, shape (n,), object."""
    n = len(batch)
    out = np.empty(n, dtype=object)
    if n == 0:
        return out
    # Each distinct amount, then each distinct (element, amount) token, is formatted once.
    amount_code, unique_amounts = pd.factorize(batch.amounts)
    amount_text = [_amount_text(a) for a in unique_amounts.tolist()]
    n_amounts = len(unique_amounts)
    token_code, unique_keys = pd.factorize(
        batch.elements.astype(np.int64) * n_amounts + amount_code
    )
    token_text = np.array(
        [ELEMENTS[k // n_amounts] + amount_text[k % n_amounts] for k in unique_keys.tolist()],
        dtype=object,
    )
    tokens = token_text[token_code]
    counts = batch.counts
    offsets = batch.offsets
    for c in np.unique(counts).tolist():
        rows = np.flatnonzero(counts == c)
        positions = offsets[rows, None] + np.arange(c)
        order = np.argsort(batch.elements[positions], axis=1)  # ELEMENTS order within a formula
        grid = np.take_along_axis(tokens[positions], order, axis=1)
        acc = grid[:, 0].copy()
        for k in range(1, c):
            acc += grid[:, k]  # object arrays: element-wise string concatenation
        out[rows] = acc
    return out


def canonical_formulas(
    formulas: Sequence[str] | NDArray[np.object_] | pd.Series,
) -> NDArray[np.object_]:
    """:func:`canonical_formula` of n formulas, each distinct string parsed once; shape (n,), object.

    Raises:
        FormulaBatchError: (a :class:`~discovery.errors.FormulaError`) for the first formula that
            does not parse, with its position in ``index``.
    """
    codes, batch = parse_distinct(formulas)
    return _canonical_batch(batch)[codes]


def candidate_ids(frame: pd.DataFrame) -> NDArray[np.object_]:
    """Ids of every row of a candidate table (:func:`candidate_id`, row by row, vectorized).

    Args:
        frame: n rows with columns ``working_ion``, ``formula_charge``, ``formula_discharge``.

    Returns:
        shape (n,), object array of id strings (``"c-0123456789abcdef"``).

    Raises:
        MissingColumnsError: a column is missing.
        DiscoveryError: a working ion that is not a non-empty string (naming the row).
        FormulaBatchError: (a :class:`~discovery.errors.FormulaError`) for the first row whose
            formula does not parse; the reason starts with ``row <i> (<column>)``.
    """
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise MissingColumnsError("candidate ids", missing, [str(c) for c in frame.columns])
    n = len(frame)
    if n == 0:
        return np.empty(0, dtype=object)
    ions = frame["working_ion"].to_numpy(dtype=object)
    ion_codes, ion_uniques = pd.factorize(ions, use_na_sentinel=False)
    for code, symbol in enumerate(ion_uniques.tolist()):
        if not isinstance(symbol, str) or not symbol:
            row = int(np.argmax(ion_codes == code))
            raise DiscoveryError(f"row {row} (working_ion): expected an ion symbol, got {symbol!r}")
    interleaved = np.empty(2 * n, dtype=object)
    interleaved[0::2] = frame["formula_charge"].to_numpy(dtype=object)
    interleaved[1::2] = frame["formula_discharge"].to_numpy(dtype=object)
    try:
        canonical = canonical_formulas(interleaved)
    except FormulaBatchError as exc:
        row, column = divmod(exc.index, 2)
        where = f"row {row} ({_COLUMNS[1 + column]})"
        raise FormulaBatchError(row, FormulaError(exc.formula, f"{where}: {exc.reason}")) from None
    keys = ions + "|" + canonical[0::2] + "|" + canonical[1::2]
    # Distinct keys are hashed once (a pool often repeats a row under several names).
    codes, uniques = pd.factorize(keys)
    sha256 = hashlib.sha256
    digests = np.array(
        [_ID_PREFIX + sha256(k.encode()).hexdigest()[:_HEX_DIGITS] for k in uniques.tolist()],
        dtype=object,
    )
    return digests[codes]
