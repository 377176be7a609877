"""Redox features: formal oxidation states by charge balance on textbook electrodes, the couple's
ionization energy against pymatgen's element data, the edge cases, and their place in the
electrode feature matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Element

from discovery.chemistry.formula import ELEMENTS
from discovery.features import (
    REDOX_FEATURES,
    electrode_feature_names,
    electrode_features,
    redox_feature_names,
    redox_features,
)
from discovery.features.redox import ACTIVE_ELEMENTS, ionization_energies_ev

# (charged, discharged, ion, expected state charged, discharged, electrons per active atom)
TEXTBOOK = [
    ("FePO4", "LiFePO4", "Li", 3.0, 2.0, 1.0),
    ("CoO2", "LiCoO2", "Li", 4.0, 3.0, 1.0),
    ("Li0.5CoO2", "LiCoO2", "Li", 3.5, 3.0, 0.5),
    ("Mn2O4", "LiMn2O4", "Li", 4.0, 3.5, 0.5),
    ("V2(PO4)3", "Na3V2(PO4)3", "Na", 4.5, 3.0, 1.5),
    ("Mo6S8", "Mg2Mo6S8", "Mg", 8 / 3, 2.0, 2 / 3),
    ("FeSO4F", "LiFeSO4F", "Li", 3.0, 2.0, 1.0),
    ("Sb", "Li3Sb", "Li", 0.0, -3.0, 3.0),
    ("FeFe(CN)6", "Na2FeFe(CN)6", "Na", 3.0, 2.0, 1.0),  # cyanide: C +2, N -3
    ("FeSiO4", "Li2FeSiO4", "Li", 4.0, 2.0, 2.0),  # Si +4 in a silicate
    ("Si", "LiSi", "Li", 0.0, -1.0, 1.0),  # Si carries the redox in an alloy
    ("FeP2S6", "LiFeP2S6", "Li", 2.0, 1.0, 1.0),  # P +5 with the more electronegative S
]


def _frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["formula_charge", "formula_discharge", "working_ion"])


def _redox_block(frame: pd.DataFrame) -> pd.DataFrame:
    features = electrode_features(frame).to_frame()
    return features[list(redox_feature_names())].astype(np.float64)


def test_textbook_oxidation_states() -> None:
    block = _redox_block(_frame([row[:3] for row in TEXTBOOK]))
    for (c, d, _, charged, discharged, electrons), (_, got) in zip(
        TEXTBOOK, block.iterrows(), strict=True
    ):
        assert got["redox:oxidation_state_charge"] == pytest.approx(charged, abs=1e-5), c
        assert got["redox:oxidation_state_discharge"] == pytest.approx(discharged, abs=1e-5), d
        assert got["redox:electrons_per_active_atom"] == pytest.approx(electrons, abs=1e-5), d


def test_fractions_anions_and_the_ox_block() -> None:
    block = _redox_block(_frame([("FePO4", "LiFePO4", "Li"), ("Mo6S8", "Mg2Mo6S8", "Mg")]))
    phosphate, chevrel = block.iloc[0], block.iloc[1]
    assert phosphate["redox:active_atom_fraction"] == pytest.approx(1 / 6)
    assert phosphate["redox:anion_charge_per_atom"] == pytest.approx(8 / 6)  # 4 O at -2
    assert phosphate["redox:oxide_or_fluoride"] == 1.0
    assert chevrel["redox:oxide_or_fluoride"] == 0.0  # S is an anion here (-2), not S(VI)
    assert chevrel["redox:anion_charge_per_atom"] == pytest.approx(16 / 14)
    ox = block[[f"ox:{el}" for el in ACTIVE_ELEMENTS]]
    # One active element: its column is the mean of the two states, every other column is 0.
    assert phosphate["ox:Fe"] == pytest.approx(2.5)
    assert chevrel["ox:Mo"] == pytest.approx((8 / 3 + 2) / 2, abs=1e-5)
    assert (ox.abs() > 0).sum(axis=1).tolist() == [1, 1]


def test_mixed_metals_share_the_electrons() -> None:
    got = _redox_block(_frame([("Ni0.5Mn1.5O4", "LiNi0.5Mn1.5O4", "Li")])).iloc[0]
    # 1 Li and 8 negative charges over 2 metal atoms: 4 charged, 3.5 discharged, both metals
    assert got["redox:oxidation_state_charge"] == pytest.approx(4.0, abs=1e-5)
    assert got["redox:oxidation_state_discharge"] == pytest.approx(3.5, abs=1e-5)
    assert got["ox:Ni"] == pytest.approx(0.25 * 3.75, abs=1e-5)
    assert got["ox:Mn"] == pytest.approx(0.75 * 3.75, abs=1e-5)
    shares = got[[f"ox:{el}" for el in ACTIVE_ELEMENTS]].sum()
    assert shares == pytest.approx(3.75, abs=1e-5)


def test_couple_ionization_energy_is_pymatgens() -> None:
    block = _redox_block(_frame([("FePO4", "LiFePO4", "Li"), ("Mn2O4", "LiMn2O4", "Li")]))
    fe = Element("Fe").ionization_energies
    mn = Element("Mn").ionization_energies
    # Fe2+/Fe3+ is the third ionization; Mn3.5+/Mn4+ sits a quarter of the way from the 4th to
    # the 5th (k = 3.75 + 0.5).
    assert block.iloc[0]["redox:ionization_energy_couple_ev"] == pytest.approx(fe[2], rel=1e-6)
    expected = 0.75 * mn[3] + 0.25 * mn[4]
    assert block.iloc[1]["redox:ionization_energy_couple_ev"] == pytest.approx(expected, rel=1e-6)
    table = ionization_energies_ev()
    assert table.shape == (len(ACTIVE_ELEMENTS), 10) and np.isfinite(table).all()
    assert (np.diff(table, axis=1) >= 0).all()  # each ionization costs at least the one before
    with pytest.raises(ValueError):
        table[0, 0] = 1.0  # read-only


def test_framework_without_active_atoms_gives_zeros_not_nan() -> None:
    # Li-S: sulfur is amphoteric (-2 without O), nothing is redox active by these rules
    got = _redox_block(_frame([("S", "Li2S", "Li")])).iloc[0]
    assert got["redox:active_atom_fraction"] == 0.0
    for name in REDOX_FEATURES[1:5]:
        assert got[name] == 0.0, name
    assert got["redox:anion_charge_per_atom"] == pytest.approx(2.0)
    assert (got[[f"ox:{el}" for el in ACTIVE_ELEMENTS]] == 0.0).all()


def test_clips_and_caps() -> None:
    # 0.001 Fe per framework atom taking 2 Li: states and electrons would run far off the scale
    fractions = np.zeros((1, len(ELEMENTS)))
    fractions[0, ELEMENTS.index("Fe")] = 0.001
    fractions[0, ELEMENTS.index("F")] = 0.999
    out = redox_features(fractions, np.array([0.0]), np.array([2.0]), np.array([1]))
    row = dict(zip(redox_feature_names(), out[0], strict=True))
    assert row["redox:oxidation_state_charge"] == 8.0
    assert row["redox:oxidation_state_discharge"] == -4.0  # (0.999 - 2) / 0.001 = -1001
    assert row["redox:electrons_per_active_atom"] == 8.0
    with pytest.raises(ValueError, match="out must have shape"):
        redox_features(fractions, np.zeros(1), np.ones(1), np.ones(1), out=np.empty((1, 3)))


def test_block_order_and_names_in_the_electrode_features() -> None:
    names = electrode_feature_names()
    redox = redox_feature_names()
    assert names[-len(redox) :] == redox
    assert len(redox) == len(REDOX_FEATURES) + len(ACTIVE_ELEMENTS)
    assert {"Fe", "Co", "Mn", "Ni", "V", "Ti", "Mo", "Sn", "Sb"} <= set(ACTIVE_ELEMENTS)
    assert not {"O", "P", "S", "Li", "Na", "Mg", "Al", "Y", "F"} & set(ACTIVE_ELEMENTS)
    # many rows go through in blocks: the same numbers as one at a time
    frame = _frame([row[:3] for row in TEXTBOOK] * 300)
    whole = electrode_features(frame).values
    single = np.vstack([electrode_features(frame.iloc[[i]]).values for i in range(len(TEXTBOOK))])
    np.testing.assert_array_equal(whole[: len(TEXTBOOK)], single)
    np.testing.assert_array_equal(whole[-len(TEXTBOOK) :], single)
