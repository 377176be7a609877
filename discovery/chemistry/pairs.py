"""Insertion pairs in bulk: :func:`~discovery.chemistry.capacity.insertion_pair` for many rows at once.

The arithmetic and the checks are those of ``insertion_pair``, done with NumPy on all rows at once, and
every quantity is bit-for-bit the same double (``tests/test_pairs.py`` compares them row by row):

* every distinct formula string is parsed once (:func:`~discovery.chemistry._bulk.parse_formulas`,
  which gives exactly ``parse_formula``'s amounts, in its element order);
* the framework scale k is taken from the first framework element of the charged formula, in that
  order, and the frameworks must agree element by element as ``math.isclose(d, k·c,
  rel_tol=FRAMEWORK_RATIO_RTOL)`` does;
* per-formula sums (atoms, molar mass) add their terms in formula order, as Python's ``sum`` does.

Two steps, so that a caller that also needs the parsed formulas (the feature matrix of
:mod:`discovery.features.electrode`) parses them only once: :func:`parse_pairs` (ions and formulas,
with every distinct formula parsed once) and :func:`match_pairs` (frameworks, x, capacity).
:func:`insertion_pairs` does both. Rows are processed in blocks of 16,384, so the temporary dense
(rows x 104) matrices stay at a few tens of MB whatever the number of rows.
"""

from __future__ import annotations

__all__ = ["InsertionPairs", "ParsedPairs", "insertion_pairs", "match_pairs", "parse_pairs"]

from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cache
from typing import TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from discovery.chemistry._bulk import FormulaBatchError, ParsedBatch, parse_distinct
from discovery.chemistry.capacity import (
    FRAMEWORK_RATIO_RTOL,
    MAH_PER_MOL_ELECTRONS,
    MIN_INSERTED_RTOL,
    insertion_pair,
    molar_mass_g_mol,
)
from discovery.chemistry.formula import ELEMENTS
from discovery.chemistry.ions import DEFAULT_IONS, IonTable
from discovery.errors import FormulaError, UnknownIonError

_FORMULA_COLUMNS = ("formula_charge", "formula_discharge")
_ROWS_PER_BLOCK = 16384
_N_EL = len(ELEMENTS)
_NO_ELEMENT = _N_EL  # a dense column that is always zero (an ion symbol that is not an element)

#: n strings: a sequence, a NumPy object array or a pandas Series.
Strings: TypeAlias = Sequence[object] | NDArray[np.object_] | pd.Series


@dataclass(frozen=True, eq=False)
class ParsedPairs:
    """n (charged formula, discharged formula, working ion) rows, each distinct formula parsed once.

    Attributes:
        formula_charge: shape (n,), object: the charged formulas as given.
        formula_discharge: shape (n,), object: the discharged formulas as given.
        batch: every distinct formula of both columns, parsed.
        code_charge: shape (n,), intp: row -> index of its charged formula in ``batch``.
        code_discharge: shape (n,), intp: row -> index of its discharged formula in ``batch``.
        ion_index: shape (n,), intp: row -> position of its working ion in ``list(ions)``.
        ions: the ion table.
    """

    formula_charge: NDArray[np.object_]
    formula_discharge: NDArray[np.object_]
    batch: ParsedBatch
    code_charge: NDArray[np.intp]
    code_discharge: NDArray[np.intp]
    ion_index: NDArray[np.intp]
    ions: IonTable

    def __len__(self) -> int:
        return len(self.ion_index)


@dataclass(frozen=True, eq=False)
class InsertionPairs:
    """n matched (charged, discharged) pairs: the fields of :class:`InsertionPair` as arrays.

    Every array has shape (n,), rows in input order, float64 unless said otherwise.

    Attributes:
        valence: int64, the working ion's valence z.
        x_inserted: ions inserted per discharged formula unit (> 0).
        framework_scale: k with framework(discharged) = k · framework(charged) (dimensionless).
        molar_mass_discharge_g_mol: molar mass of the discharged formula unit in g/mol.
        capacity_grav_mah_g: gravimetric capacity x·z·F / (3.6·M_discharge) in mAh/g.
        ion_fraction_charge: atomic fraction of the ion in the charged formula (0..1).
        ion_fraction_discharge: atomic fraction of the ion in the discharged formula (0..1).
        framework_atoms_discharge: framework (non-ion) atoms per discharged formula unit, computed
            as all atoms minus the ion's.
    """

    valence: NDArray[np.int64]
    x_inserted: NDArray[np.float64]
    framework_scale: NDArray[np.float64]
    molar_mass_discharge_g_mol: NDArray[np.float64]
    capacity_grav_mah_g: NDArray[np.float64]
    ion_fraction_charge: NDArray[np.float64]
    ion_fraction_discharge: NDArray[np.float64]
    framework_atoms_discharge: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.x_inserted)


def _objects(values: Strings, n: int | None = None) -> NDArray[np.object_]:
    """``values`` as a 1-D object array (a lone string repeated ``n`` times)."""
    if isinstance(values, str):
        out = np.empty(0 if n is None else n, dtype=object)
        out[:] = values
        return out
    if isinstance(values, np.ndarray | pd.Series):
        return np.asarray(values, dtype=object).reshape(-1)
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def parse_pairs(
    formula_charge: Strings,
    formula_discharge: Strings,
    working_ion: Strings | str,
    ions: IonTable = DEFAULT_IONS,
) -> ParsedPairs:
    """Look up the working ions and parse every distinct formula once.

    Args:
        formula_charge: n charged formulas (strings).
        formula_discharge: n discharged formulas (strings).
        working_ion: n ion symbols of ``ions``, or one symbol for every row.
        ions: the ion table.

    Raises:
        ValueError: the inputs have different lengths.
        UnknownIonError: an ion (the first in row order) is not in ``ions``, or is missing.
        FormulaBatchError: (a :class:`~discovery.errors.FormulaError`) for the first row whose
            formula does not parse, with ``index`` the 0-based row and a reason that begins with
            ``row <i> (formula_charge)`` or ``row <i> (formula_discharge)``.
    """
    charge = _objects(formula_charge)
    discharge = _objects(formula_discharge)
    n = len(charge)
    ion_symbols = _objects(working_ion, n)
    if len(discharge) != n or len(ion_symbols) != n:
        raise ValueError(
            "formula_charge, formula_discharge and working_ion must have the same length, got "
            f"{n}, {len(discharge)} and {len(ion_symbols)}"
        )

    ion_codes, ion_uniques = pd.factorize(ion_symbols)
    ion_list = list(ions)
    for symbol in ion_uniques:
        if symbol not in ions:
            raise UnknownIonError(symbol, ion_list)
    if (ion_codes < 0).any():  # a missing ion (None / NaN)
        raise UnknownIonError(None, ion_list)
    positions = np.array([ion_list.index(str(s)) for s in ion_uniques], dtype=np.intp)
    ion_index = positions[ion_codes]

    # Interleaved (row-major), so that the first formula that fails belongs to the first bad row.
    interleaved = np.empty(2 * n, dtype=object)
    interleaved[0::2] = charge
    interleaved[1::2] = discharge
    try:
        codes, batch = parse_distinct(interleaved)
    except FormulaBatchError as exc:
        row, column = divmod(exc.index, 2)
        where = f"row {row} ({_FORMULA_COLUMNS[column]})"
        raise FormulaBatchError(row, FormulaError(exc.formula, f"{where}: {exc.reason}")) from None
    return ParsedPairs(
        formula_charge=charge,
        formula_discharge=discharge,
        batch=batch,
        code_charge=codes[0::2].astype(np.intp),
        code_discharge=codes[1::2].astype(np.intp),
        ion_index=ion_index,
        ions=ions,
    )


@cache
def _element_masses() -> NDArray[np.float64]:
    """Atomic masses of H..Lr in g/mol (those of :func:`molar_mass_g_mol`), shape (103,)."""
    return np.array([molar_mass_g_mol({el: 1.0}) for el in ELEMENTS])


def _sequential_sums(batch: ParsedBatch, token_values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-formula sums of ``token_values`` added in formula order, as Python's ``sum`` does.

    Args:
        batch: n parsed formulas.
        token_values: shape (batch.counts.sum(),), one value per parsed element.

    Returns:
        shape (n,).
    """
    out = np.empty(len(batch), dtype=np.float64)
    offsets = batch.offsets
    for c in np.unique(batch.counts):
        rows = np.flatnonzero(batch.counts == c)
        values = token_values[offsets[rows, None] + np.arange(c)]
        acc = values[:, 0].copy()
        for k in range(1, c):
            acc += values[:, k]
        out[rows] = acc
    return out


def _tokens(
    batch: ParsedBatch, formula: NDArray[np.intp]
) -> tuple[NDArray[np.intp], NDArray[np.int64], NDArray[np.int64]]:
    """The parsed elements of the formulas ``formula`` (indices into ``batch``), formula after formula.

    Returns:
        ``(row, token, first)``: for each element, the position of its formula in ``formula`` and
        its index into ``batch.elements`` / ``batch.amounts``; and, shape (m,), the position in
        those arrays of each formula's first element.
    """
    counts = batch.counts[formula]
    first = np.cumsum(counts) - counts
    token = np.repeat(batch.offsets[formula] - first, counts) + np.arange(int(counts.sum()))
    return np.repeat(np.arange(len(formula)), counts), token, first


def _dense(batch: ParsedBatch, formula: NDArray[np.intp]) -> NDArray[np.float64]:
    """Amounts of the formulas ``formula`` (indices into ``batch``) as a dense (m, 104) matrix.

    Column i < 103 is element ``ELEMENTS[i]``; column 103 is always zero.
    """
    row, token, _ = _tokens(batch, formula)
    out = np.zeros((len(formula), _N_EL + 1), dtype=np.float64)
    out[row, batch.elements[token]] = batch.amounts[token]
    return out


def _row_error(parsed: ParsedPairs, row: int) -> FormulaBatchError:
    """The error of ``insertion_pair`` on one row, naming the row."""
    charge = parsed.formula_charge[row]
    discharge = parsed.formula_discharge[row]
    ion = list(parsed.ions)[parsed.ion_index[row]]
    try:
        insertion_pair(charge, discharge, ion, parsed.ions)
    except FormulaError as exc:
        return FormulaBatchError(row, FormulaError(exc.formula, f"row {row}: {exc.reason}"))
    return FormulaBatchError(  # not expected: the vectorized checks mirror insertion_pair
        row, FormulaError(f"{charge} -> {discharge}", f"row {row}: not a valid insertion pair")
    )


def match_pairs(
    parsed: ParsedPairs, *, framework_fractions_out: NDArray[np.floating] | None = None
) -> InsertionPairs:
    """Match the frameworks of every parsed pair and count the inserted ions.

    Args:
        parsed: the rows, from :func:`parse_pairs`.
        framework_fractions_out: optional, shape (n, 103), any float dtype (a view is fine): filled
            with the atomic fractions of H..Lr in each discharged framework (the discharged
            formula without the working ion; each row sums to 1), computed in float64 and cast
            on assignment. Filled block by block, so no (n, 103) float64 temporary is made.

    Raises:
        FormulaBatchError: (a :class:`~discovery.errors.FormulaError`) for the first row, in row
            order, that ``insertion_pair`` rejects, with its reason prefixed by ``row <i>: `` and
            ``index`` the 0-based row.
    """
    n = len(parsed)
    if framework_fractions_out is not None and framework_fractions_out.shape != (n, _N_EL):
        raise ValueError(
            f"framework_fractions_out must have shape ({n}, {_N_EL}), "
            f"got {framework_fractions_out.shape}"
        )
    batch = parsed.batch
    ion_list = list(parsed.ions)
    element_index = {el: i for i, el in enumerate(ELEMENTS)}
    ion_element = np.array([element_index.get(s, _NO_ELEMENT) for s in ion_list], dtype=np.intp)
    row_ion_el = ion_element[parsed.ion_index]
    valence = np.array([parsed.ions[s].valence for s in ion_list], dtype=np.int64)[parsed.ion_index]
    valence_f = valence.astype(np.float64)
    n_atoms = _sequential_sums(batch, batch.amounts)
    masses = _sequential_sums(batch, batch.amounts * _element_masses()[batch.elements])

    out = {f.name: np.empty(n, dtype=np.float64) for f in fields(InsertionPairs)}
    del out["valence"]

    for start in range(0, n, _ROWS_PER_BLOCK):
        block = slice(start, min(start + _ROWS_PER_BLOCK, n))
        uc, ud = parsed.code_charge[block], parsed.code_discharge[block]
        ion_el = row_ion_el[block]
        m = len(uc)
        rows = np.arange(m)
        # The discharged formulas dense (element columns), the charged ones as tokens.
        dense_d = _dense(batch, ud)
        ion_d = dense_d[rows, ion_el]
        dense_d[rows, ion_el] = 0.0  # the discharged frameworks
        token_row, tokens, first = _tokens(batch, uc)
        token_el = batch.elements[tokens]
        token_amount = batch.amounts[tokens]
        is_ion = token_el == ion_el[token_row]
        ion_c = np.zeros(m)
        ion_c[token_row[is_ion]] = token_amount[is_ion]
        # Same framework elements: as many in each, and each charged one in the discharged one.
        fw_c = batch.counts[uc] - np.bincount(token_row[is_ion], minlength=m)
        fw_d = batch.counts[ud] - (ion_d > 0.0)
        bad = (fw_c == 0) | (fw_c != fw_d)
        # Scale from the first framework element of the charged formula (parse order).
        first = np.where(is_ion[first] & (fw_c > 0), first + 1, first)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = dense_d[rows, token_el[first]] / token_amount[first]
            fw = ~is_ion
            c = token_amount[fw]
            d = dense_d[token_row[fw], token_el[fw]]
            expected = scale[token_row[fw]] * c
            diff = np.abs(expected - d)  # math.isclose(d, k * c, rel_tol=FRAMEWORK_RATIO_RTOL)
            close = (diff <= np.abs(FRAMEWORK_RATIO_RTOL * expected)) | (
                diff <= np.abs(FRAMEWORK_RATIO_RTOL * d)
            )
            bad |= np.bincount(token_row[fw][~(close & (d > 0.0))], minlength=m) > 0
            x = ion_d - scale * ion_c
            bad |= ~(x > MIN_INSERTED_RTOL * np.maximum(1.0, ion_d))
        if bad.any():
            raise _row_error(parsed, start + int(np.argmax(bad)))
        framework_atoms = n_atoms[ud] - ion_d
        out["x_inserted"][block] = x
        out["framework_scale"][block] = scale
        out["molar_mass_discharge_g_mol"][block] = masses[ud]
        out["capacity_grav_mah_g"][block] = (
            x * valence_f[block] * MAH_PER_MOL_ELECTRONS / masses[ud]
        )
        out["ion_fraction_charge"][block] = ion_c / n_atoms[uc]
        out["ion_fraction_discharge"][block] = ion_d / n_atoms[ud]
        out["framework_atoms_discharge"][block] = framework_atoms
        if framework_fractions_out is not None:
            framework_fractions_out[block] = dense_d[:, :_N_EL] / framework_atoms[:, None]
    return InsertionPairs(valence=valence, **out)


def insertion_pairs(
    formula_charge: Strings,
    formula_discharge: Strings,
    working_ion: Strings | str,
    ions: IonTable = DEFAULT_IONS,
) -> InsertionPairs:
    """:func:`~discovery.chemistry.capacity.insertion_pair` for n rows at once, as arrays.

    The arguments are those of :func:`parse_pairs` (n strings each; one ion symbol may stand for
    every row). Returns :class:`InsertionPairs` whose row i holds exactly the doubles of
    ``insertion_pair(formula_charge[i], formula_discharge[i], working_ion[i], ions)``.

    Raises the errors of :func:`parse_pairs` (lengths, unknown ion, the first row whose formula
    does not parse), then those of :func:`match_pairs` (the first row whose pair
    ``insertion_pair`` rejects); a parse error in any row comes before a pair error.
    """
    return match_pairs(parse_pairs(formula_charge, formula_discharge, working_ion, ions))
