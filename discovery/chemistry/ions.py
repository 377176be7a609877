"""Working ions: valence, molar mass, Shannon radius, standard reduction potential.

The default table covers the ten working ions of the Materials Project battery database
(Li, Na, K, Rb, Cs, Mg, Ca, Zn, Al, Y). A campaign can extend it with :meth:`IonTable.extend`.
"""

from __future__ import annotations

__all__ = ["DEFAULT_IONS", "ION_DESCRIPTORS", "Ion", "IonTable"]

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields

from discovery.errors import UnknownIonError


@dataclass(frozen=True)
class Ion:
    """One working ion.

    Attributes:
        symbol: element symbol of the ion (``"Li"``).
        valence: charge z carried per inserted ion (1 for Li+, 2 for Mg2+, 3 for Al3+).
        molar_mass_g_mol: molar mass of the element in g/mol.
        shannon_radius_angstrom: Shannon effective ionic radius in Å, octahedral (VI) coordination.
        reduction_potential_v: standard reduction potential of M^z+/M vs SHE in V.
        electronegativity_pauling: Pauling electronegativity of the element.
    """

    symbol: str
    valence: int
    molar_mass_g_mol: float
    shannon_radius_angstrom: float
    reduction_potential_v: float
    electronegativity_pauling: float

    def __post_init__(self) -> None:
        if self.valence < 1:
            raise ValueError(f"ion {self.symbol}: valence must be >= 1, got {self.valence}")
        for f in fields(self)[2:]:
            value = getattr(self, f.name)
            if not math.isfinite(value):
                raise ValueError(f"ion {self.symbol}: {f.name} must be finite, got {value}")
        if self.molar_mass_g_mol <= 0 or self.shannon_radius_angstrom <= 0:
            raise ValueError(f"ion {self.symbol}: molar mass and radius must be positive")

    @property
    def charge_density_e_per_a2(self) -> float:
        """Ionic potential z / r² in e/Å², a proxy for how strongly the ion polarizes its host."""
        return self.valence / self.shannon_radius_angstrom**2


#: Names of the numeric ion descriptors used as model features, in order.
ION_DESCRIPTORS: tuple[str, ...] = (
    "valence",
    "molar_mass_g_mol",
    "shannon_radius_angstrom",
    "reduction_potential_v",
    "electronegativity_pauling",
    "charge_density_e_per_a2",
)


class IonTable(Mapping[str, Ion]):
    """An immutable mapping ``symbol -> Ion``; :meth:`extend` returns a new, larger table."""

    def __init__(self, ions: Iterable[Ion]) -> None:
        self._ions: dict[str, Ion] = {}
        for ion in ions:
            self._ions[ion.symbol] = ion

    def __getitem__(self, symbol: str) -> Ion:
        try:
            return self._ions[symbol]
        except KeyError:
            raise UnknownIonError(symbol, list(self._ions)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._ions)

    def __len__(self) -> int:
        return len(self._ions)

    def __repr__(self) -> str:
        return f"IonTable({', '.join(self._ions)})"

    def extend(self, ions: Iterable[Ion]) -> IonTable:
        """A new table with ``ions`` added (an ion with a symbol already present replaces it)."""
        return IonTable([*self._ions.values(), *ions])

    def descriptors(self, symbol: str) -> tuple[float, ...]:
        """The values of :data:`ION_DESCRIPTORS` for one ion."""
        ion = self[symbol]
        return tuple(float(getattr(ion, name)) for name in ION_DESCRIPTORS)


# Masses: IUPAC standard atomic weights (as in pymatgen). Radii: Shannon (1976), six-fold
# coordination. Potentials: standard reduction potentials vs SHE (CRC Handbook).
DEFAULT_IONS = IonTable(
    [
        Ion("Li", 1, 6.941, 0.76, -3.040, 0.98),
        Ion("Na", 1, 22.98976928, 1.02, -2.713, 0.93),
        Ion("K", 1, 39.0983, 1.38, -2.931, 0.82),
        Ion("Rb", 1, 85.4678, 1.52, -2.98, 0.82),
        Ion("Cs", 1, 132.9054519, 1.67, -3.026, 0.79),
        Ion("Mg", 2, 24.305, 0.72, -2.372, 1.31),
        Ion("Ca", 2, 40.078, 1.00, -2.868, 1.00),
        Ion("Zn", 2, 65.409, 0.74, -0.7618, 1.65),
        Ion("Al", 3, 26.9815386, 0.535, -1.662, 1.61),
        Ion("Y", 3, 88.90585, 0.90, -2.372, 1.22),
    ]
)
