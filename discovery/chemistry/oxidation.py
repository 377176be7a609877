"""Oxidation states of the elements in electrode frameworks: one table for the whole package.

Candidate generation (:mod:`discovery.space.generate`) charge-balances templates with these
states, and the redox features (:mod:`discovery.features.redox`) assign formal oxidation states
with them. The rule both follow for an element of a framework:

1. In a cyanide framework (C and N, no O or F), C is +2 (:data:`CYANIDE_CARBON_STATE`) and N -3.
2. A polyanion centre (:data:`POLYANION_STATES`) takes its polyanion state when a more
   electronegative anion-former (:data:`ANION_ELECTRONEGATIVITY`) is present: P +5 in a
   phosphate or a thiophosphate, S +6 in a sulfate.
3. Otherwise an anion-former takes its anion state (:data:`ANION_STATES`).
4. Otherwise the element is a cation with the range of :data:`OXIDATION_STATES`: one value for a
   fixed-valence cation, a range for a redox-active one.
"""

from __future__ import annotations

__all__ = [
    "ANION_ELECTRONEGATIVITY",
    "ANION_STATES",
    "CYANIDE_CARBON_STATE",
    "OXIDATION_STATES",
    "POLYANION_STATES",
]

#: (lowest, highest) oxidation state of an element as a cation (or, for Si, Ge, Sn, Sb, Bi and C,
#: down to its Zintl anion state, so that alloy and intercalation hosts pass). Redox-active
#: metals have a range (the states they take in insertion hosts); fixed-valence cations one value.
OXIDATION_STATES: dict[str, tuple[int, int]] = {
    "H": (1, 1),
    "Li": (1, 1),
    "Na": (1, 1),
    "K": (1, 1),
    "Rb": (1, 1),
    "Cs": (1, 1),
    "Be": (2, 2),
    "Mg": (2, 2),
    "Ca": (2, 2),
    "Sr": (2, 2),
    "Ba": (2, 2),
    "B": (3, 3),
    "Al": (3, 3),
    "Ga": (3, 3),
    "In": (3, 3),
    "Tl": (1, 3),
    "Sc": (3, 3),
    "Y": (3, 3),
    "La": (3, 3),
    "Ce": (3, 4),
    "Pr": (3, 4),
    "Nd": (3, 3),
    "Sm": (2, 3),
    "Eu": (2, 3),
    "Gd": (3, 3),
    "Tb": (3, 4),
    "Dy": (3, 3),
    "Ho": (3, 3),
    "Er": (3, 3),
    "Tm": (3, 3),
    "Yb": (2, 3),
    "Lu": (3, 3),
    "Zr": (4, 4),
    "Hf": (4, 4),
    "Th": (4, 4),
    "Zn": (2, 2),
    "Cd": (2, 2),
    "Ag": (1, 1),
    "Ti": (2, 4),
    "V": (2, 5),
    "Cr": (2, 6),
    "Mn": (2, 4),
    "Fe": (2, 4),
    "Co": (2, 4),
    "Ni": (2, 4),
    "Cu": (1, 3),
    "Nb": (3, 5),
    "Mo": (3, 6),
    "Ta": (4, 5),
    "W": (4, 6),
    "Ru": (3, 6),
    "Rh": (3, 4),
    "Pd": (2, 4),
    "Ir": (3, 6),
    "Pt": (2, 4),
    "Au": (1, 3),
    "Re": (4, 7),
    "U": (3, 6),
    "Pb": (2, 4),
    "C": (-4, 4),
    "Si": (-4, 4),
    "Ge": (-4, 4),
    "Sn": (-4, 4),
    "Sb": (-3, 5),
    "Bi": (-3, 5),
}

#: Oxidation state of the anion-forming elements as anions (oxide, sulfide, fluoride, ...).
ANION_STATES: dict[str, int] = {
    "O": -2,
    "S": -2,
    "Se": -2,
    "Te": -2,
    "N": -3,
    "P": -3,
    "As": -3,
    "F": -1,
    "Cl": -1,
    "Br": -1,
    "I": -1,
}

#: Oxidation state of polyanion centres (PO4, SO4, SiO4, GeO4, BO3, CO3, NO3, AsO4, SeO4),
#: taken when the fixed part of a template holds a more electronegative anion-former.
POLYANION_STATES: dict[str, int] = {
    "P": 5,
    "S": 6,
    "Si": 4,
    "Ge": 4,
    "B": 3,
    "C": 4,
    "N": 5,
    "As": 5,
    "Se": 6,
}

#: Pauling electronegativities of the anion-formers and polyanion centres (which one is the anion).
ANION_ELECTRONEGATIVITY: dict[str, float] = {
    "F": 3.98,
    "O": 3.44,
    "Cl": 3.16,
    "N": 3.04,
    "Br": 2.96,
    "I": 2.66,
    "S": 2.58,
    "Se": 2.55,
    "C": 2.55,
    "P": 2.19,
    "As": 2.18,
    "Te": 2.1,
    "B": 2.04,
    "Ge": 2.01,
    "Si": 1.90,
}
#: C in CN- (Prussian-blue frameworks, C and N without O or F): C +2, N -3.
CYANIDE_CARBON_STATE = 2
