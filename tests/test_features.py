"""Features: the bulk formula parser against parse_formula, Magpie against matminer itself, and the
electrode feature matrix (shapes, names, one-hot, pair quantities against insertion_pair, errors)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from discovery.chemistry import ELEMENTS, insertion_pair, parse_formula
from discovery.chemistry._bulk import FormulaBatchError, parse_formulas
from discovery.chemistry.ions import DEFAULT_IONS, ION_DESCRIPTORS, Ion
from discovery.errors import FormulaError, MissingColumnsError, UnknownIonError
from discovery.features import (
    MAGPIE_COLUMNS,
    PAIR_FEATURES,
    electrode_feature_names,
    electrode_features,
    magpie,
    magpie_matrix,
    magpie_table,
    redox_feature_names,
)

SHARED_CSV = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "mp_insertion_electrodes_2019.csv"
)

# Hand-picked: brackets (round, square, nested), fractional amounts, single elements, repeated
# elements, mode ties (equal and np.isclose-equal amounts), >= 8 elements (NumPy's pairwise
# summation order), and elements whose Magpie data has NaN (He, Ne: MeltingT/Electronegativity;
# Fr: MeltingT/SpaceGroupNumber; Rn, Lr, Cf: CovalentRadius/Electronegativity/SpaceGroupNumber).
HAND_PICKED = [
    "LiFePO4",
    "Li0.5CoO2",
    "Li3V2(PO4)3",
    "Na2Fe(P2O7)0.5",
    "Mg[Fe2O4]",
    "K2(Fe(CN)6)0.5",
    "Ca(OH)2",
    "Fe",
    "O2",
    "Fe3",
    "He",
    "NeAr2",
    "FrRn",
    "LrCf2O3",
    "LiNaKO",
    "Fe2O3Fe",
    "Li2.00001Co2O",
    "C8H8O8N8S1P1Cl1Br1",
    "HLiBeBCNOFNaMgAlSiPSClKCa",
]


def _matminer(formulas: list[str], impute_nan: bool = True) -> pd.DataFrame:
    """matminer's Magpie features (the reference), one process (faster than its pool here)."""
    from matminer.featurizers.composition import ElementProperty
    from pymatgen.core import Composition

    featurizer = ElementProperty.from_preset("magpie", impute_nan=impute_nan)
    featurizer.set_n_jobs(1)
    frame = pd.DataFrame({"composition": [Composition(f) for f in formulas]})
    out = featurizer.featurize_dataframe(frame, "composition", pbar=False)
    return out.drop(columns="composition")


def _assert_same(ours: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(ours.columns) == list(ref.columns)
    a = ours.to_numpy(dtype=np.float64)
    b = ref.to_numpy(dtype=np.float64)
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    both = ~np.isnan(b)
    rel = np.abs(a[both] - b[both]) / np.maximum(np.abs(b[both]), np.finfo(float).tiny)
    assert (rel <= 1e-6).all(), f"max relative difference {rel.max():g}"


@pytest.fixture(scope="module")
def shared_frame() -> pd.DataFrame:
    if not SHARED_CSV.is_file():
        pytest.skip(f"shared data {SHARED_CSV.name} is absent (a clone outside the workplace)")
    return pd.read_csv(SHARED_CSV)


# --- bulk parser ---------------------------------------------------------------------------------


def _random_formula(rng: random.Random, depth: int = 0) -> str:
    """Valid and invalid formulas: brackets, odd numbers, spaces, unknown symbols, junk."""
    symbols = [*ELEMENTS[:40], "Xx", "Q", "Lr", "Co", "C", "O"]
    amounts = [
        "",
        "",
        "",
        "2",
        "0.5",
        ".5",
        "1.",
        "0",
        "13",
        "0.3333333333333333",
        "2000000",
        "1.2.3",
    ]
    parts = []
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.2 and depth < 3:
            opening, closing = rng.choice([("(", ")"), ("(", ")"), ("[", "]")])
            parts.append(opening + _random_formula(rng, depth + 1) + closing + rng.choice(amounts))
        else:
            parts.append(rng.choice(symbols) + rng.choice(amounts))
    text = "".join(parts)
    mutation = rng.random()
    if mutation < 0.03:
        text = f" {text}\t"
    elif mutation < 0.05:
        text = text[:2] + " " + text[2:]
    elif mutation < 0.06:
        text += ")"
    elif mutation < 0.07:
        text = "()" + text
    elif mutation < 0.08:
        text = text.lower()
    elif mutation < 0.09:
        text += "é"
    return text


def test_bulk_parser_matches_parse_formula() -> None:
    rng = random.Random(7)
    formulas = [_random_formula(rng) for _ in range(3000)]
    valid = []
    for formula in formulas:
        try:
            expected = parse_formula(formula)
        except FormulaError as exc:
            with pytest.raises(FormulaBatchError) as info:
                parse_formulas([formula])
            assert str(info.value) == str(exc) and info.value.index == 0
            continue
        valid.append((formula, expected))
    assert len(valid) > 1000
    parsed = parse_formulas([f for f, _ in valid]).as_dicts()
    for (formula, expected), got in zip(valid, parsed, strict=True):
        # Same elements, same order, bit-identical amounts.
        assert list(got.items()) == list(expected.items()), formula


def test_bulk_parser_reports_the_first_bad_formula() -> None:
    formulas = ["LiFePO4"] * 5 + [None, "Fe(O", 3.0]
    with pytest.raises(FormulaBatchError, match="expected a string") as info:
        parse_formulas(formulas)
    assert info.value.index == 5
    assert len(parse_formulas([])) == 0


# --- Magpie against matminer ---------------------------------------------------------------------


def test_magpie_matches_matminer_on_hand_picked_formulas() -> None:
    _assert_same(magpie(HAND_PICKED), _matminer(HAND_PICKED))


def test_magpie_matches_matminer_without_imputation() -> None:
    formulas = ["He", "NeAr2", "FrRn", "LrCf2O3", "LiFePO4", "Fe2O3"]
    ours = magpie(formulas, impute_nan=False)
    assert ours.isna().to_numpy().any()
    _assert_same(ours, _matminer(formulas, impute_nan=False))


def test_magpie_table_and_columns() -> None:
    table = magpie_table()
    assert table.shape == (len(ELEMENTS), 22)
    assert not np.isnan(table).any()
    assert np.isnan(magpie_table(impute_nan=False)).any()
    with pytest.raises(ValueError):
        table[0, 0] = 1.0  # read-only: the cached table cannot be corrupted
    assert len(MAGPIE_COLUMNS) == 132 and len(set(MAGPIE_COLUMNS)) == 132


def test_magpie_duplicates_index_and_errors() -> None:
    values, names = magpie_matrix(["LiFePO4", "FePO4", "LiFePO4"])
    assert values.shape == (3, 132) and values.dtype == np.float64 and names == MAGPIE_COLUMNS
    np.testing.assert_array_equal(values[0], values[2])
    series = pd.Series(["FePO4", "LiFePO4"], index=[10, 20])
    assert list(magpie(series).index) == [10, 20]
    with pytest.raises(FormulaError, match="Xx") as info:
        magpie(["LiFePO4", "FePO4", "LiFePO4", "LiXxO2"])
    assert isinstance(info.value, FormulaBatchError) and info.value.index == 3


@pytest.mark.shared_data
def test_magpie_matches_matminer_on_shared_formulas(shared_frame: pd.DataFrame) -> None:
    distinct = pd.unique(pd.concat([shared_frame.formula_charge, shared_frame.formula_discharge]))
    sample = sorted(random.Random(0).sample(list(distinct), 1000))
    assert len(set(sample)) == 1000
    _assert_same(magpie(sample), _matminer(sample))


# --- electrode features --------------------------------------------------------------------------

SMALL = pd.DataFrame(
    {
        "formula_charge": ["FePO4", "CoO2", "Mo6S8", "MnO2", "V2O5", "Li0.5CoO2"],
        "formula_discharge": ["LiFePO4", "Li0.5CoO2", "Mg2Mo6S8", "NaMnO2", "Zn0.5V2O5", "LiCoO2"],
        "working_ion": ["Li", "Li", "Mg", "Na", "Zn", "Li"],
    }
)


def _check_electrode_features(frame: pd.DataFrame) -> None:
    features = electrode_features(frame)
    names = list(features.names)
    n = len(frame)
    assert features.values.shape == (n, len(names)) and features.values.dtype == np.float32
    assert features.names == electrode_feature_names(DEFAULT_IONS)
    assert (
        len(set(names))
        == len(names)
        == 3 * 132 + len(ION_DESCRIPTORS) + len(DEFAULT_IONS) + 4 + 103 + len(redox_feature_names())
    )
    assert np.isfinite(features.values).all()
    values = features.values.astype(np.float64)

    def block(prefix: str) -> np.ndarray:
        return values[:, [i for i, name in enumerate(names) if name.startswith(prefix)]]

    charge = magpie(frame.formula_charge).to_numpy()
    discharge = magpie(frame.formula_discharge).to_numpy()
    np.testing.assert_allclose(block("charge:"), charge, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(block("discharge:"), discharge, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(block("delta:"), discharge - charge, rtol=1e-6, atol=1e-4)

    one_hot = block("ion_is:")
    expected_hot = (frame.working_ion.to_numpy()[:, None] == np.array(list(DEFAULT_IONS))).astype(
        float
    )
    np.testing.assert_array_equal(one_hot, expected_hot)
    descriptors = np.array([DEFAULT_IONS.descriptors(ion) for ion in frame.working_ion])
    np.testing.assert_allclose(block("ion:"), descriptors, rtol=1e-6)

    frac = block("frac:")
    np.testing.assert_allclose(frac.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(  # the ox: block sums to the mean of the two oxidation states
        block("ox:").sum(axis=1),
        (block("redox:oxidation_state_charge") + block("redox:oxidation_state_discharge")).ravel()
        / 2,
        atol=1e-4,
    )
    ion_columns = [ELEMENTS.index(ion) for ion in frame.working_ion]
    assert (frac[np.arange(n), ion_columns] == 0).all()

    pair = values[:, [names.index(p) for p in PAIR_FEATURES]]
    for row, (c, d, ion) in enumerate(
        frame[["formula_charge", "formula_discharge", "working_ion"]].itertuples(index=False)
    ):
        p = insertion_pair(c, d, ion)
        framework = sum(a for el, a in parse_formula(d).items() if el != ion)
        expected = [
            p.x_inserted / framework,
            p.ion_fraction_charge,
            p.ion_fraction_discharge,
            math.log(p.capacity_grav_mah_g),
        ]
        np.testing.assert_allclose(pair[row], expected, rtol=1e-6, atol=1e-7, err_msg=f"row {row}")


def test_electrode_features_small_table() -> None:
    _check_electrode_features(SMALL)
    empty = electrode_features(SMALL.iloc[:0])
    assert empty.values.shape == (0, len(empty.names))


@pytest.mark.shared_data
def test_electrode_features_on_shared_data(shared_frame: pd.DataFrame) -> None:
    _check_electrode_features(shared_frame)


def test_electrode_features_one_hot_follows_the_ion_table() -> None:
    ions = DEFAULT_IONS.extend([Ion("Ag", 1, 107.8682, 1.15, 0.7996, 1.93)])
    frame = pd.DataFrame(
        {
            "formula_charge": ["Mo6S8", "TiS2"],
            "formula_discharge": ["AgMo6S8", "Ag0.5TiS2"],
            "working_ion": "Ag",
        }
    )
    features = electrode_features(frame, ions)
    assert features.names[-len(redox_feature_names()) - 103 - 4 - 1] == "ion_is:Ag"
    hot = features.to_frame().filter(like="ion_is:").to_numpy()
    assert (hot.sum(axis=1) == 1).all() and (hot[:, -1] == 1).all()


def test_electrode_features_errors_name_the_row() -> None:
    bad_formula = SMALL.copy()
    bad_formula.loc[3, "formula_discharge"] = "NaMnXx2"
    with pytest.raises(FormulaError, match=r"row 3 \(formula_discharge\)") as info:
        electrode_features(bad_formula)
    assert isinstance(info.value, FormulaBatchError) and info.value.index == 3

    bad_pair = SMALL.copy()
    bad_pair.loc[4, "formula_discharge"] = "ZnV2O4"  # framework V2O5 -> V2O4: not proportional
    with pytest.raises(FormulaError, match="row 4: frameworks do not match"):
        electrode_features(bad_pair)

    no_insertion = SMALL.copy()
    no_insertion.loc[2, "formula_charge"] = "Mg2Mo6S8"
    with pytest.raises(FormulaError, match="row 2: the discharged formula holds no more Mg"):
        electrode_features(no_insertion)

    with pytest.raises(UnknownIonError):
        electrode_features(SMALL.assign(working_ion=["Li", "Li", "Mg", "Na", "Zn", "Xe"]))
    with pytest.raises(MissingColumnsError, match="working_ion"):
        electrode_features(SMALL.drop(columns="working_ion"))
