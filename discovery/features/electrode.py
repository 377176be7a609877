"""Model features of insertion-electrode pairs (charged formula, discharged formula, working ion).

One row of features per electrode, in blocks (names are prefixed by their block):

==============  =====  =====================================================================
prefix          count  meaning
==============  =====  =====================================================================
``charge:``     132    Magpie features (:mod:`discovery.features.magpie`) of the charged formula
``discharge:``  132    Magpie features of the discharged formula
``delta:``      132    discharge - charge, feature by feature
``ion:``        6      the working ion's :data:`~discovery.chemistry.ions.ION_DESCRIPTORS`
``ion_is:``     n_ion  one-hot of the working ion over the ion table, in table order
``pair:``       4      ``x_per_framework_atom``: ions inserted per discharged formula unit divided
                       by the framework (non-ion) atoms per discharged formula unit;
                       ``ion_fraction_charge`` / ``ion_fraction_discharge``: atomic fraction of
                       the ion in each formula (0..1); ``log_capacity_grav_mah_g``: natural log
                       of the theoretical gravimetric capacity in mAh/g
``frac:``       103    atomic fractions of H..Lr in the discharged framework (the discharged
                       formula without the working ion); they sum to 1
``redox:``      7      formal oxidation states of the framework's redox-active atoms by charge
                       balance, charged and discharged, and what follows from them
                       (:mod:`discovery.features.redox`)
``ox:``         55     each redox-active element's share of the active atoms times their mean
                       oxidation state (:mod:`discovery.features.redox`)
==============  =====  =====================================================================

The pair quantities and the ``frac:`` block come from :func:`~discovery.chemistry.pairs.match_pairs`
(the same doubles as :func:`~discovery.chemistry.capacity.insertion_pair`, for all rows at once),
and every distinct formula is parsed once for them and for the Magpie blocks
(:func:`~discovery.chemistry.pairs.parse_pairs`).

NaN policy: with matminer's default imputation (used here) no Magpie feature is NaN for elements
H..Lr, and the other blocks are finite for valid pairs. Any NaN that would still appear is replaced
by 0 and nothing else is done (no column means, no indicator columns); the model standardizes.
"""

from __future__ import annotations

__all__ = ["PAIR_FEATURES", "ElectrodeFeatures", "electrode_feature_names", "electrode_features"]

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from discovery.chemistry.formula import ELEMENTS
from discovery.chemistry.ions import DEFAULT_IONS, ION_DESCRIPTORS, IonTable
from discovery.chemistry.pairs import InsertionPairs, match_pairs, parse_pairs
from discovery.errors import MissingColumnsError
from discovery.features.magpie import MAGPIE_COLUMNS, magpie_from_parsed
from discovery.features.redox import redox_feature_names, redox_features

#: Names of the ``pair:`` block, in order.
PAIR_FEATURES: tuple[str, ...] = (
    "pair:x_per_framework_atom",
    "pair:ion_fraction_charge",
    "pair:ion_fraction_discharge",
    "pair:log_capacity_grav_mah_g",
)

_COLUMNS = ("formula_charge", "formula_discharge", "working_ion")
_ROWS_PER_BLOCK = 1024  # a block of the feature matrix (about 2 MB) stays in cache


@dataclass(frozen=True)
class ElectrodeFeatures:
    """Features of n electrodes.

    Attributes:
        values: float32 array of shape (n, d), rows in the order of the input frame.
        names: the d feature names (see the module docstring for the blocks).
        pairs: the exact pair quantities of the n rows (capacity in mAh/g, x inserted, ...),
            computed on the way, so callers need not parse the formulas again.
    """

    values: NDArray[np.float32]
    names: tuple[str, ...]
    pairs: InsertionPairs

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def to_frame(self) -> pd.DataFrame:
        """The features as a DataFrame with columns ``names`` (no copy)."""
        return pd.DataFrame(self.values, columns=list(self.names), copy=False)


def electrode_feature_names(ions: IonTable = DEFAULT_IONS) -> tuple[str, ...]:
    """The d feature names :func:`electrode_features` produces for the ion table ``ions``."""
    return (
        *(f"charge:{c}" for c in MAGPIE_COLUMNS),
        *(f"discharge:{c}" for c in MAGPIE_COLUMNS),
        *(f"delta:{c}" for c in MAGPIE_COLUMNS),
        *(f"ion:{d}" for d in ION_DESCRIPTORS),
        *(f"ion_is:{s}" for s in ions),
        *PAIR_FEATURES,
        *(f"frac:{el}" for el in ELEMENTS),
        *redox_feature_names(),
    )


def electrode_features(frame: pd.DataFrame, ions: IonTable = DEFAULT_IONS) -> ElectrodeFeatures:
    """Features of the electrodes in ``frame`` (see the module docstring for the blocks).

    Args:
        frame: n rows with columns ``formula_charge``, ``formula_discharge`` (formula strings) and
            ``working_ion`` (a symbol of ``ions``); other columns are ignored.
        ions: the ion table; the ``ion_is:`` one-hot has one column per ion, in table order.

    Returns:
        :class:`ElectrodeFeatures` with float32 values of shape (n, d) and
        ``names == electrode_feature_names(ions)``.

    Raises:
        MissingColumnsError: a required column is missing.
        UnknownIonError: a working ion is not in ``ions``.
        FormulaBatchError: (a :class:`~discovery.errors.FormulaError`) for the first row, in row
            order, whose formula does not parse or whose pair ``insertion_pair`` rejects; its
            message and ``index`` give the 0-based row position. Callers validate tables first
            (:mod:`discovery.data`), so this is a guard, not a filter.
    """
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise MissingColumnsError("electrode features", missing, [str(c) for c in frame.columns])
    n = len(frame)
    names = electrode_feature_names(ions)
    parsed = parse_pairs(
        frame["formula_charge"], frame["formula_discharge"], frame["working_ion"], ions
    )
    n_mag = len(MAGPIE_COLUMNS)
    values = np.empty((n, len(names)), dtype=np.float32)
    col = 3 * n_mag  # the Magpie blocks (and the NaN policy) are applied block by block below
    descriptors = np.array([ions.descriptors(s) for s in ions], dtype=np.float64)
    values[:, col : col + len(ION_DESCRIPTORS)] = descriptors[parsed.ion_index]
    col += len(ION_DESCRIPTORS)
    values[:, col : col + len(ions)] = 0.0
    values[np.arange(n), col + parsed.ion_index] = 1.0
    col += len(ions)
    frac_col = col + len(PAIR_FEATURES)
    redox_col = frac_col + len(ELEMENTS)

    pairs = match_pairs(parsed, framework_fractions_out=values[:, frac_col:redox_col])
    values[:, col] = pairs.x_inserted / pairs.framework_atoms_discharge
    values[:, col + 1] = pairs.ion_fraction_charge
    values[:, col + 2] = pairs.ion_fraction_discharge
    values[:, col + 3] = np.log(pairs.capacity_grav_mah_g)
    # Ions per framework atom: the ion fraction f of a formula gives f / (1 - f).
    redox_features(
        values[:, frac_col:redox_col],
        pairs.ion_fraction_charge / (1.0 - pairs.ion_fraction_charge),
        pairs.ion_fraction_discharge / (1.0 - pairs.ion_fraction_discharge),
        pairs.valence,
        out=values[:, redox_col:],
    )

    mag = magpie_from_parsed(parsed.batch)
    mag32 = mag.astype(np.float32)  # the same values as casting after gathering, half the bytes
    for start in range(0, n, _ROWS_PER_BLOCK):
        block = slice(start, min(start + _ROWS_PER_BLOCK, n))
        uc, ud = parsed.code_charge[block], parsed.code_discharge[block]
        values[block, :n_mag] = mag32[uc]
        values[block, n_mag : 2 * n_mag] = mag32[ud]
        values[block, 2 * n_mag : 3 * n_mag] = mag[ud] - mag[uc]  # in float64, then cast
        rows = values[block]
        nan = np.isnan(rows)
        if nan.any():
            np.putmask(rows, nan, 0.0)
    return ElectrodeFeatures(values=values, names=names, pairs=pairs)
