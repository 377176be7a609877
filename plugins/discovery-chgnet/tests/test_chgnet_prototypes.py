"""Prototype structures, framework recognition, ordering and validation-pair selection (pymatgen
only: no CHGNet calculation here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from discovery.chemistry import parse_formula

from discovery_chgnet.prototypes import (
    ION_METALS,
    PROTOTYPES,
    PrototypeError,
    ion_metal_structure,
    plan_pair,
    recognize,
)

if TYPE_CHECKING:
    from pymatgen.core import Structure

REPO = Path(__file__).resolve().parents[3]
SHARED_CSV = REPO.parent / "shared" / "data" / "mp_insertion_electrodes_2019.csv"

#: One pair per prototype: (ion, charged, discharged, prototype).
EXAMPLES = [
    ("Li", "CoO2", "LiCoO2", "layered-O3"),
    ("Na", "Fe0.5Mn0.5O2", "Na0.5Fe0.5Mn0.5O2", "layered-O3"),
    ("Mg", "Mn2O4", "MgMn2O4", "spinel"),
    ("Li", "FePO4", "LiFePO4", "olivine"),
    ("K", "TiS2", "K0.5TiS2", "layered-1T"),
    ("Mg", "Mo6S8", "Mg2Mo6S8", "chevrel"),
    ("Ca", "WO3", "Ca0.5WO3", "perovskite-oxide"),
    ("K", "MnF3", "KMnF3", "perovskite-fluoride"),
]


def test_every_prototype_has_an_example() -> None:
    assert {e[3] for e in EXAMPLES} == {p.name for p in PROTOTYPES}


@pytest.mark.parametrize("ion, charge, discharge, name", EXAMPLES, ids=[e[2] for e in EXAMPLES])
def test_prototype_builds_sane_structures(ion: str, charge: str, discharge: str, name: str) -> None:
    plan = plan_pair(ion, charge, discharge)
    assert plan.prototype.name == name
    for state, formula, structure in zip(
        (plan.charge, plan.discharge), (charge, discharge), plan.structures()
    ):
        # the composition is the formula times the formula units in the cell
        fu = parse_formula(formula)
        # formula units of the framework as written: anion amount over the prototype's
        anion, amount = plan.prototype.nonmetals[-1]
        units = state.formula_units * amount / fu[anion]
        built = structure.composition.get_el_amt_dict()
        assert set(built) == set(fu)
        for el, n in fu.items():
            assert built[el] == pytest.approx(n * units, abs=1e-6), (formula, el)
        assert len(structure) <= 48
        assert 1.5 < structure.density < 9.0, (formula, structure.density)
        distances = structure.distance_matrix + np.eye(len(structure)) * 100
        assert distances.min() > 1.4, (formula, distances.min())


@pytest.mark.parametrize(
    "ion, charge, discharge, name, x_charge, x_discharge",
    [
        ("Li", "Li(CoO2)2", "LiCoO2", "layered-O3", 0.5, 1.0),  # MP writes Li0.5CoO2 so
        ("Li", "MnO2", "LiMn2O4", "spinel", 0.0, 1.0),  # M2O4 as written: a spinel
        ("Na", "CoO2", "Na0.5CoO2", "layered-O3", 0.0, 0.5),  # MO2 as written: layered
        ("Mg", "Mg(Mo3S4)2", "MgMo3S4", "chevrel", 1.0, 2.0),
        ("Zn", "Fe0.25Ni0.75O2", "Zn0.25Fe0.25Ni0.75O2", "layered-O3", 0.0, 0.25),
        ("Na", "MnPO4", "NaMnPO4", "olivine", 0.0, 1.0),
    ],
)
def test_recognizes_frameworks(
    ion: str, charge: str, discharge: str, name: str, x_charge: float, x_discharge: float
) -> None:
    proto, metals, x_c, x_d = recognize(ion, charge, discharge)
    assert proto.name == name
    assert sum(metals.values()) == pytest.approx(1.0)
    assert (x_c, x_d) == pytest.approx((x_charge, x_discharge))


@pytest.mark.parametrize(
    "ion, charge, discharge, message",
    [
        ("Li", "V2(PO4)3", "Li3V2(PO4)3", "no prototype for the framework V2P3O12"),
        ("Mg", "SrMn(PO4)2", "SrMgMn(PO4)2", "no prototype"),  # Sr is no M-site metal
        ("Li", "NiO2", "Li2NiO2", "layered-O3 has 1 ion site(s) per MO2"),
        ("Li", "Mo6S8", "Li5Mo6S8", "at most 4 electrons per M6S8"),
        ("Na", "CoO2", "Na0.05CoO2", "needs more than 48 atoms per cell"),
        ("Li", "CoO2", "NaCoO2", "frameworks do not match"),
        ("Mg", "MoO3", "MgMoO3", "12-fold cavity for ions of Shannon radius >= 0.95 Å; Mg has"),
    ],
)
def test_unbuildable_candidates_fail_with_a_reason(
    ion: str, charge: str, discharge: str, message: str
) -> None:
    with pytest.raises(PrototypeError, match=re.escape(message)):
        plan_pair(ion, charge, discharge, max_atoms=48)


def test_orderings_are_nested_and_deterministic() -> None:
    plan = plan_pair("Na", "Na0.25Fe0.5Mn0.5O2", "Na0.75Fe0.5Mn0.5O2")
    assert plan.charge.supercell == plan.discharge.supercell
    charged, discharged = plan.structures()
    again = plan.structures()
    assert charged == again[0] and discharged == again[1]

    def sites(structure: Structure, element: str) -> set[tuple[float, ...]]:
        return {
            tuple(np.round(s.frac_coords % 1.0, 4)) for s in structure if s.specie.symbol == element
        }

    # the same metal ordering, and the charged structure's ions are a subset of the discharged ones
    for metal in ("Fe", "Mn"):
        assert sites(charged, metal) == sites(discharged, metal)
    assert sites(charged, "Na") < sites(discharged, "Na")
    # a state needing no ordering is the primitive cell, shared by every candidate of its framework
    empty = plan_pair("K", "CoO2", "K0.5CoO2").structures()[0]
    assert len(empty) == 3 and empty == plan_pair("Li", "CoO2", "LiCoO2").structures()[0]


def test_lattice_follows_the_ion() -> None:
    li = plan_pair("Li", "TiS2", "LiTiS2").structures()[1]
    k = plan_pair("K", "TiS2", "KTiS2").structures()[1]
    assert k.lattice.c > li.lattice.c * 1.05  # the van der Waals gap opens for K


@pytest.mark.parametrize("ion", sorted(ION_METALS))
def test_ion_metals(ion: str) -> None:
    from pymatgen.core import Element

    metal = ion_metal_structure(ion)
    assert {s.specie.symbol for s in metal} == {ion}
    volume_per_atom = metal.volume / len(metal)
    # the tabulated atomic volume (density of the solid), within 15 %
    reference = Element(ion).molar_volume / 0.6022140760  # cm^3/mol -> Å^3/atom
    assert volume_per_atom == pytest.approx(reference, rel=0.15)


def test_unknown_ion_metal() -> None:
    with pytest.raises(
        PrototypeError, match="no reference metal structure for the working ion 'Sc'"
    ):
        ion_metal_structure("Sc")


@pytest.mark.shared_data
def test_validation_selects_enough_pairs() -> None:
    if not SHARED_CSV.is_file():
        pytest.skip("../shared/data/mp_insertion_electrodes_2019.csv is absent")
    from discovery.data import load_electrodes

    from discovery_chgnet.validate import select_pairs

    table = load_electrodes(SHARED_CSV, drop_invalid=True)
    pairs = select_pairs(table)
    assert len(pairs) >= 15
    assert pairs["working_ion"].nunique() >= 4
    assert {"layered-O3", "spinel", "olivine", "layered-1T"} <= set(pairs["prototype"])
    assert (pairs["atoms"] <= 32).all()
    assert not pairs.duplicated(["working_ion", "formula_charge", "formula_discharge"]).any()
