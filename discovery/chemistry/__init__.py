"""Ions, formula parsing and the exact electrochemistry of insertion pairs (capacity, energy)."""

from __future__ import annotations

from discovery.chemistry.capacity import (
    FARADAY_C_PER_MOL,
    InsertionPair,
    capacity_grav_mah_g,
    energy_grav_wh_kg,
    insertion_pair,
    molar_mass_g_mol,
)
from discovery.chemistry.formula import ELEMENTS, parse_formula
from discovery.chemistry.ions import DEFAULT_IONS, ION_DESCRIPTORS, Ion, IonTable

__all__ = [
    "DEFAULT_IONS",
    "ELEMENTS",
    "FARADAY_C_PER_MOL",
    "ION_DESCRIPTORS",
    "InsertionPair",
    "Ion",
    "IonTable",
    "capacity_grav_mah_g",
    "energy_grav_wh_kg",
    "insertion_pair",
    "molar_mass_g_mol",
    "parse_formula",
]
