"""Ions, formula parsing and the exact electrochemistry of insertion pairs (capacity, energy),
one pair at a time (:func:`insertion_pair`) or many at once (:func:`insertion_pairs`)."""

from __future__ import annotations

from discovery.chemistry.capacity import (
    FARADAY_C_PER_MOL,
    FRAMEWORK_RATIO_RTOL,
    MAH_PER_MOL_ELECTRONS,
    MIN_INSERTED_RTOL,
    InsertionPair,
    capacity_grav_mah_g,
    energy_grav_wh_kg,
    insertion_pair,
    molar_mass_g_mol,
)
from discovery.chemistry.formula import ELEMENTS, parse_formula
from discovery.chemistry.ions import DEFAULT_IONS, ION_DESCRIPTORS, Ion, IonTable
from discovery.chemistry.pairs import (
    InsertionPairs,
    ParsedPairs,
    insertion_pairs,
    match_pairs,
    parse_pairs,
)

__all__ = [
    "DEFAULT_IONS",
    "ELEMENTS",
    "FARADAY_C_PER_MOL",
    "FRAMEWORK_RATIO_RTOL",
    "ION_DESCRIPTORS",
    "MAH_PER_MOL_ELECTRONS",
    "MIN_INSERTED_RTOL",
    "InsertionPair",
    "InsertionPairs",
    "Ion",
    "IonTable",
    "ParsedPairs",
    "capacity_grav_mah_g",
    "energy_grav_wh_kg",
    "insertion_pair",
    "insertion_pairs",
    "match_pairs",
    "molar_mass_g_mol",
    "parse_formula",
    "parse_pairs",
]
