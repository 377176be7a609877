"""discovery.chemistry.pairs: insertion_pairs (vectorized) against insertion_pair (one pair), errors."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

from discovery.chemistry import (
    DEFAULT_IONS,
    ELEMENTS,
    InsertionPair,
    InsertionPairs,
    Ion,
    insertion_pair,
    insertion_pairs,
    match_pairs,
    parse_formula,
    parse_pairs,
)
from discovery.chemistry._bulk import FormulaBatchError
from discovery.errors import FormulaError, UnknownIonError

#: (charged, discharged, ion): scale 1 and not 1, the ion first / not first / absent in the charged
#: formula, brackets (round, square, nested), repeated elements, multivalent ions.
HAND_PAIRS = [
    ("CoO2", "LiCoO2", "Li"),
    ("FePO4", "LiFePO4", "Li"),
    ("LiFePO4", "Li5Fe4(PO4)4", "Li"),
    ("Li0.5CoO2", "LiCoO2", "Li"),
    ("CoLi0.5O2", "Li2Co2O4", "Li"),
    ("Mo6S8", "Mg2Mo6S8", "Mg"),
    ("V2O5", "Zn0.25V2O5", "Zn"),
    ("Fe2(SO4)3", "Na2Fe2(SO4)3", "Na"),
    ("NaFe(P2O7)0.5", "Na4Fe2(P2O7)", "Na"),
    ("[Fe2O4]", "Mg[Fe2O4]", "Mg"),
    ("K(Fe(CN)6)0.5", "K2(Fe(CN)6)0.5", "K"),
    ("Fe2O3Fe", "LiFe3O3", "Li"),
    ("TiS2", "Al0.333TiS2", "Al"),
    ("Ca0.1MnO2", "Ca0.6MnO2", "Ca"),
]
#: The attributes of InsertionPair that InsertionPairs holds as arrays (all but the ion symbol).
FIELDS = tuple(f.name for f in fields(InsertionPair) if f.name != "ion")


def _assert_same_as_scalar(charge: list[str], discharge: list[str], ions: list[str]) -> None:
    """Every field of every row is exactly (==) the double insertion_pair computes."""
    pairs = insertion_pairs(charge, discharge, ions)
    assert isinstance(pairs, InsertionPairs) and len(pairs) == len(charge)
    for name in (*FIELDS, "framework_atoms_discharge"):
        assert getattr(pairs, name).shape == (len(charge),)
    for row, (c, d, ion) in enumerate(zip(charge, discharge, ions, strict=True)):
        scalar = insertion_pair(c, d, ion)
        for name in FIELDS:
            assert getattr(pairs, name)[row] == getattr(scalar, name), (row, c, d, name)
        assert pairs.capacity_grav_mah_g[row] == scalar.capacity_grav_mah_g, (row, c, d)
        framework = sum(a for el, a in parse_formula(d).items() if el != ion)
        assert pairs.framework_atoms_discharge[row] == pytest.approx(framework, rel=1e-12)


def test_insertion_pairs_equal_insertion_pair_on_hand_pairs() -> None:
    charge, discharge, ions = (list(column) for column in zip(*HAND_PAIRS, strict=True))
    _assert_same_as_scalar(charge, discharge, ions)
    # Repeated rows over several blocks, in another order.
    order = np.random.default_rng(0).integers(0, len(HAND_PAIRS), size=40_000)
    pairs = insertion_pairs(
        np.array(charge, dtype=object)[order], pd.Series(discharge)[order], np.array(ions)[order]
    )
    single = insertion_pairs(charge, discharge, ions)
    for name in (*FIELDS, "capacity_grav_mah_g", "framework_atoms_discharge"):
        np.testing.assert_array_equal(getattr(pairs, name), getattr(single, name)[order])


def test_insertion_pairs_broadcasts_one_ion_and_accepts_no_rows() -> None:
    pairs = insertion_pairs(["CoO2", "FePO4"], ["LiCoO2", "LiFePO4"], "Li")
    assert (
        pairs.capacity_grav_mah_g[1] == insertion_pair("FePO4", "LiFePO4", "Li").capacity_grav_mah_g
    )
    empty = insertion_pairs([], [], [])
    assert len(empty) == 0 and empty.capacity_grav_mah_g.dtype == np.float64


def test_insertion_pairs_with_another_ion_table() -> None:
    ions = DEFAULT_IONS.extend([Ion("Ag", 1, 107.8682, 1.15, 0.7996, 1.93)])
    pairs = insertion_pairs(["Mo6S8", "TiS2"], ["AgMo6S8", "Ag0.5TiS2"], "Ag", ions)
    expected = insertion_pair("TiS2", "Ag0.5TiS2", "Ag", ions)
    assert pairs.capacity_grav_mah_g[1] == expected.capacity_grav_mah_g
    with pytest.raises(UnknownIonError):
        insertion_pairs(["Mo6S8"], ["AgMo6S8"], ["Ag"])


def test_framework_fractions_are_written_block_by_block() -> None:
    charge, discharge, ions = (list(column) for column in zip(*HAND_PAIRS, strict=True))
    parsed = parse_pairs(charge, discharge, ions)
    assert len(parsed.batch) == len(set(charge) | set(discharge))  # each formula parsed once
    out = np.full((len(charge), len(ELEMENTS)), np.nan, dtype=np.float32)
    pairs = match_pairs(parsed, framework_fractions_out=out)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
    for row, (d, ion) in enumerate(zip(discharge, ions, strict=True)):
        framework = {el: a for el, a in parse_formula(d).items() if el != ion}
        expected = np.zeros(len(ELEMENTS))
        for el, amount in framework.items():
            expected[ELEMENTS.index(el)] = amount / pairs.framework_atoms_discharge[row]
        np.testing.assert_array_equal(out[row], expected.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        match_pairs(parsed, framework_fractions_out=np.zeros((1, len(ELEMENTS))))


@pytest.mark.shared_data
def test_insertion_pairs_equal_insertion_pair_on_shared_data(shared_frame: pd.DataFrame) -> None:
    columns = shared_frame[["formula_charge", "formula_discharge", "working_ion"]]
    _assert_same_as_scalar(*(columns[c].tolist() for c in columns.columns))


@pytest.mark.parametrize(
    ("charge", "discharge", "reason"),
    [
        ("CoO2", "LiNiO2", "frameworks do not match"),
        ("CoO2", "LiCo2O3", "not in the ratio"),
        ("LiCoO2", "LiCoO2", "holds no more Li"),
        ("Li2CoO2", "LiCoO2", "holds no more Li"),
        ("Li", "Li2", "no host framework"),
        ("CoO2", "Li2", "no host framework"),
    ],
)
def test_bad_pair_names_the_first_bad_row(charge: str, discharge: str, reason: str) -> None:
    n = 40_000  # the bad rows lie in the third block of 16,384 rows and beyond
    charges = ["FePO4"] * n
    discharges = ["LiFePO4"] * n
    for row in (35_000, 39_999):
        charges[row], discharges[row] = charge, discharge
    with pytest.raises(FormulaError) as info:
        insertion_pairs(charges, discharges, "Li")
    assert isinstance(info.value, FormulaBatchError) and info.value.index == 35_000
    with pytest.raises(FormulaError) as scalar:
        insertion_pair(charge, discharge, "Li")
    assert reason in scalar.value.reason
    assert info.value.reason == f"row 35000: {scalar.value.reason}"
    assert info.value.formula == scalar.value.formula


def test_unparsable_formula_names_the_row_and_column() -> None:
    charge = ["CoO2", "FePO4", "V2O5", "TiS2"]
    discharge = ["LiCoO2", "LiFePO4", "LiV2O5", "LiTiS2"]
    discharge[2] = "LiXx2O5"
    charge[3] = "Ti(S2"
    with pytest.raises(FormulaError, match=r"row 2 \(formula_discharge\): unknown element") as info:
        insertion_pairs(charge, discharge, "Li")
    assert isinstance(info.value, FormulaBatchError) and info.value.index == 2
    # A parse error comes before a pair error in an earlier row.
    with pytest.raises(FormulaError, match=r"row 3 \(formula_charge\)"):
        insertion_pairs(["CoO2", *charge[1:]], ["LiNiO2", "LiFePO4", "LiV2O5", "LiTiS2"], "Li")


def test_unknown_or_missing_ion() -> None:
    with pytest.raises(UnknownIonError, match="'Xe'"):
        insertion_pairs(["CoO2", "CoO2"], ["LiCoO2", "XeCoO2"], ["Li", "Xe"])
    with pytest.raises(UnknownIonError, match="None"):
        insertion_pairs(["CoO2"], ["LiCoO2"], [None])


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="same length"):
        insertion_pairs(["CoO2", "FePO4"], ["LiCoO2"], "Li")
    with pytest.raises(ValueError, match="same length"):
        insertion_pairs(["CoO2"], ["LiCoO2"], ["Li", "Li"])


def _amount(value: float) -> str:
    return f"{value:.12f}".rstrip("0").rstrip(".")


def test_accepts_and_rejects_exactly_what_insertion_pair_does() -> None:
    """Random pairs near the tolerances: the same rows pass, with the same values."""
    rng = np.random.default_rng(1)
    hosts = [("Fe", "P", "O"), ("Co", "O"), ("Mo", "S"), ("V", "O"), ("Ti", "Li", "S")]
    rows = []
    for _ in range(400):
        elements = hosts[rng.integers(len(hosts))]
        amounts = rng.choice([1.0, 2.0, 0.5, 4.0, 6.0, 8.0], size=len(elements))
        scale = rng.choice([1.0, 2.0, 0.5, 3.0])
        jitter = 1.0 + rng.choice([0.0, 0.0, 5e-5, -5e-5, 1.01e-4, -1.01e-4, 1e-3], len(elements))
        ion = "Na" if "Li" in elements else "Li"
        ion_c = rng.choice([0.0, 0.25, 1.0])
        ion_d = ion_c * scale + rng.choice([0.0, 1e-10, 1e-6, 0.5, 1.0, -0.25])
        charge = "".join(f"{el}{_amount(a)}" for el, a in zip(elements, amounts, strict=True))
        discharge = "".join(
            f"{el}{_amount(a * scale * j)}"
            for el, a, j in zip(elements, amounts, jitter, strict=True)
        )
        if ion_c > 0:
            charge = f"{ion}{_amount(ion_c)}{charge}"
        if ion_d > 0:
            discharge = f"{ion}{_amount(ion_d)}{discharge}"
        rows.append((charge, discharge, ion))
    n_valid = 0
    for c, d, ion in rows:
        try:
            scalar = insertion_pair(c, d, ion)
        except FormulaError as exc:
            with pytest.raises(FormulaError) as info:
                insertion_pairs([c], [d], [ion])
            assert info.value.reason == f"row 0: {exc.reason}"
            continue
        n_valid += 1
        pairs = insertion_pairs([c], [d], [ion])
        for name in (*FIELDS, "capacity_grav_mah_g"):
            assert getattr(pairs, name)[0] == getattr(scalar, name), (c, d, name)
    assert 50 < n_valid < 350, n_valid  # both outcomes are exercised
