"""Crystal structures for candidate electrodes, from framework prototypes.

A candidate is a working ion and a charged and a discharged formula. :func:`plan_pair` recognizes
the host framework from the compositions (the framework without the ion, metals on the ``M``
sites), picks the smallest supercell of the prototype in which every amount is a whole number of
atoms, and :meth:`PairPlan.structures` builds the ordered charged and discharged structures.

Every prototype is written from crystallographic facts (space group, literature lattice constants
and Wyckoff positions; the source is cited next to each) with
:meth:`pymatgen.core.Structure.from_spacegroup`:

======================  ===================  ==========================================  ===========
prototype               framework per f.u.   reference structure                         ion sites
======================  ===================  ==========================================  ===========
``layered-O3``          M O2                 LiCoO2, alpha-NaFeO2 type, R-3m              1 octahedral
``spinel``              M2 O4                LiMn2O4, Fd-3m                               1 tetrahedral
``olivine``             M P O4               LiFePO4, Pnma                                1 octahedral
``layered-1T``          M S2                 TiS2 / LiTiS2, P-3m1                         1 octahedral
``chevrel``             M6 S8                Cu2.76Mo6S8, R-3 (the classic Mg host)       12 (2 rings)
``perovskite-oxide``    M O3                 ReO3, Pm-3m, ion in the A-site cavity        1
``perovskite-fluoride`` M F3                 KMnF3, Pm-3m                                 1
======================  ===================  ==========================================  ===========

Recognition: the framework of the discharged formula (ion removed) must hold exactly the
prototype's non-metal elements in the prototype's ratio to the metals; every other element is a
metal on the ``M`` sites (a transition metal, or Mg, Al, Ga, In, Sn, Sb, Bi, Pb, Tl). ``M O2``
fits two prototypes: the pair is a spinel when the discharged formula writes its framework as
``M2 O4`` (two metal atoms and four O per formula unit, as in ``LiMn2O4``, ``MgCr2O4`` or
``Mg0.5Mn2O4``), and layered O3 otherwise (``LiCoO2``, ``Na0.5CoO2``). x, the ions per
framework formula unit, must fit the prototype's ion sites (and, for the Chevrel phase, at most 4
electrons per Mo6S8); the perovskite A site, a 12-fold cavity, takes only ions of Shannon radius
0.95 Å or more (Na, K, Ca, ...).

Ordering is deterministic. The cell is the smallest diagonal supercell of the primitive
reference cell in which every amount is a whole number of atoms (the most compact one of that
size), up to ``max_atoms``. Metals of a mixed site are placed element by element, the rarest
first, each atom on the free ``M`` site farthest (periodic distance) from the atoms of its own
element already placed. Ions take the ion sites in one farthest-point sequence starting at the
first site, and the charged structure holds the first ions of the sequence that the discharged
structure fills, so the two are nested orderings of one supercell. A state that needs no ordering
(no mixed metals and no or all ion sites filled) is built in the primitive cell, so the same empty
framework (``CoO2``) or ion-free host is one structure, and one cached calculation, for every
candidate that shares it.

Starting lattices are scaled from the reference by Shannon radii (six-fold, averaged over spin
states, interpolated at the metals' mean oxidation state): the framework by
(r_M + r_X) / (r_M,ref + r_X) (half of that change for olivine, whose PO4 groups are rigid), and
for the layered prototypes the c axis, and for olivine the whole cell, by half of the ion's
relative size change weighted by the occupied fraction of ion sites. The relaxation does the rest.
"""

from __future__ import annotations

__all__ = [
    "ION_METALS",
    "M_SITE_MAIN_GROUP",
    "PROTOTYPES",
    "PairPlan",
    "Prototype",
    "PrototypeError",
    "StatePlan",
    "farthest_point_sequence",
    "ion_metal_structure",
    "plan_pair",
    "prototype_names",
    "recognize",
    "shannon_radius",
]

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from discovery.chemistry import DEFAULT_IONS, IonTable, insertion_pair, parse_formula
from discovery.errors import DiscoveryError

if TYPE_CHECKING:
    from pymatgen.core import Lattice, Structure

#: Atoms of a built structure may be this close to a whole number of atoms (``N·x`` and so on).
_WHOLE_TOL = 1e-4
#: Starting-lattice scale factors are clipped to this range (the relaxation does the rest).
_SCALE_RANGE = (0.88, 1.15)
#: Shannon ionic radii of the anions, six-fold coordination, in Å (Shannon, Acta Cryst. A32, 751 (1976)).
ANION_RADIUS_A = {"O": 1.40, "S": 1.84, "F": 1.33}


class PrototypeError(DiscoveryError, ValueError):
    """A candidate that no prototype can build (the message says why)."""


# --------------------------------------------------------------------------------------------
# Radii


@cache
def shannon_radius(element: str, oxidation_state: float) -> float | None:
    """Shannon ionic radius of a cation, six-fold coordination, in Å, at a (mean) oxidation state.

    Spin states are averaged; a non-integer state is interpolated linearly between the nearest
    tabulated states, and a state outside the table takes the nearest tabulated one. ``None`` when
    pymatgen has no six-fold radius for the element.
    """
    from pymatgen.core import Element

    table = Element(element).data.get("Shannon radii", {})
    states: list[tuple[float, float]] = []
    for ox, by_cn in table.items():
        spins = by_cn.get("VI", {})
        radii = [float(r["ionic_radius"]) for r in spins.values() if "ionic_radius" in r]
        if radii and float(ox) > 0:
            states.append((float(ox), sum(radii) / len(radii)))
    if not states:
        return None
    states.sort()
    oxs = [s for s, _ in states]
    rs = [r for _, r in states]
    return float(np.interp(oxidation_state, oxs, rs))


def _clip(scale: float) -> float:
    return min(max(scale, _SCALE_RANGE[0]), _SCALE_RANGE[1])


# --------------------------------------------------------------------------------------------
# Prototypes


@dataclass(frozen=True)
class Prototype:
    """One framework prototype.

    Attributes:
        name: short name (``"layered-O3"``).
        description: the reference structure in words, with its source.
        nonmetals: the framework's fixed elements per formula unit, ``((element, amount), ...)``
            (``(("O", 2.0),)`` for M O2; P counts here for olivine).
        metals: M atoms per formula unit.
        ion_sites: ion sites per formula unit.
        framework_charge: charge in e per formula unit that the metals (and inserted ions)
            balance: 4 for M O2, 3 for M P O4, 16 for Mo6S8.
        anion: the anion whose radius scales the lattice (``"O"``, ``"S"``, ``"F"``).
        reference_metal / reference_metal_state: element and oxidation state on the M sites of
            the reference structure.
        reference_ion / reference_ion_radius: element on the ion sites of the reference structure
            (the species the sites are written with; the candidate's ion replaces it) and its
            Shannon radius in Å (None: the
            lattice does not scale with the ion).
        ion_scaling: ``"c"`` (layered: the c axis follows the ion), ``"cell"`` (the whole cell) or
            ``"none"``.
        max_electrons: most electrons x·z inserted per formula unit (None: no limit beyond the
            ion sites).
        metal_weight: how much of the lattice follows the metal-anion bond length (1 for
            close-packed anion frameworks; 0.5 for olivine, whose rigid PO4 groups do not).
        min_ion_radius: smallest Shannon radius (Å, six-fold) of an ion the ion site holds
            (None: any). The perovskite A site is a 12-fold cavity that only large ions fill; a
            small ion sits off-centre in a distorted or different structure.
        build: returns the reference cell with every M site on ``reference_metal`` and every ion
            site filled with ``reference_ion``.
    """

    name: str
    description: str
    nonmetals: tuple[tuple[str, float], ...]
    metals: int
    ion_sites: int
    framework_charge: float
    anion: str
    reference_metal: str
    reference_metal_state: float
    reference_ion: str
    reference_ion_radius: float | None
    ion_scaling: str
    build: Callable[[], Structure] = field(repr=False, compare=False)
    max_electrons: float | None = None
    metal_weight: float = 1.0
    min_ion_radius: float | None = None

    @property
    def nonmetal_dict(self) -> dict[str, float]:
        """The fixed elements per formula unit as a dict."""
        return dict(self.nonmetals)


def _layered_o3() -> Structure:
    # LiCoO2, alpha-NaFeO2 type, R-3m (No. 166), hexagonal axes a = 2.8156 Å, c = 14.0542 Å;
    # Li 3a (0, 0, 0), Co 3b (0, 0, 1/2), O 6c (0, 0, 0.2396)
    # (Orman & Wiseman, Acta Cryst. C40, 12 (1984)). Co-O 1.92 Å, Li-O 2.09 Å.
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(
        "R-3m",
        Lattice.hexagonal(2.8156, 14.0542),
        ["Li", "Co", "O"],
        [[0, 0, 0], [0, 0, 0.5], [0, 0, 0.2396]],
    )


def _spinel() -> Structure:
    # LiMn2O4 spinel (Thackeray, David, Bruce & Goodenough, Mater. Res. Bull. 18, 461 (1983)),
    # Fd-3m (No. 227), a = 8.247 Å, oxygen parameter u ≈ 0.2625 in origin choice 2. pymatgen uses
    # origin choice 1: Li 8a (0, 0, 0), Mn 16d (5/8, 5/8, 5/8), O 32e (x, x, x), x = u + 1/8 = 0.3875;
    # Mn-O and Li-O both come out 1.96 Å.
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(
        "Fd-3m",
        Lattice.cubic(8.247),
        ["Li", "Mn", "O"],
        [[0, 0, 0], [0.625, 0.625, 0.625], [0.3875, 0.3875, 0.3875]],
    )


def _olivine() -> Structure:
    # LiFePO4 olivine (triphylite), Pnma (No. 62), a = 10.332, b = 6.010, c = 4.692 Å
    # (Streltsov, Belokoneva, Tsirelson & Hansen, Acta Cryst. B49, 147 (1993)).
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(
        "Pnma",
        Lattice.orthorhombic(10.332, 6.010, 4.692),
        ["Li", "Fe", "P", "O", "O", "O"],
        [
            [0, 0, 0],  # Li 4a
            [0.28222, 0.25, 0.97472],  # Fe 4c
            [0.09486, 0.25, 0.41820],  # P 4c
            [0.09678, 0.25, 0.74279],  # O1 4c
            [0.45710, 0.25, 0.20602],  # O2 4c
            [0.16558, 0.04646, 0.28470],  # O3 8d
        ],
    )


def _layered_1t() -> Structure:
    # 1T-TiS2, P-3m1 (No. 164), a = 3.4073 Å, c = 5.6953 Å; Ti 1a (0, 0, 0), S 2d (1/3, 2/3, 0.2501)
    # (Chianelli, Scanlon & Thompson, Mater. Res. Bull. 10, 1379 (1975)). The ion sits in the van
    # der Waals gap on the octahedral site 1b (0, 0, 1/2), as Li in LiTiS2.
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(
        "P-3m1",
        Lattice.hexagonal(3.4073, 5.6953),
        ["Ti", "S", "Li"],
        [[0, 0, 0], [1 / 3, 2 / 3, 0.2501], [0, 0, 0.5]],
    )


def _chevrel() -> Structure:
    # Chevrel phase Cu2.76Mo6S8 (Yvon et al. 1977, as tabulated in Poole, Handbook of
    # Superconductivity, ch. 6, "HT-Ni2.5Mo6S8 type"), R-3 (No. 148), hexagonal axes
    # a = 9.713 Å, c = 10.213 Å; Mo 18f (0.15080, 0.16564, 0.39103), S1 18f (0.05620, 0.35913,
    # 0.07637), S2 6c (0, 0, 0.20195); the small cations occupy an inner ring, Cu1 18f
    # (0.15378, 0.05862, 0.00161), and an outer ring, Cu2 18f (0.23611, 0.14694, 0.10334), of
    # sites around the cavity at the origin. The same two rings take Li and Mg in LixMo6S8 and
    # MgxMo6S8. Per Mo6S8: 6 inner + 6 outer sites. Mo-Mo 2.67-2.71 Å, Mo-S 2.42-2.53 Å.
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(
        "R-3",
        Lattice.hexagonal(9.713, 10.213),
        ["Mo", "S", "S", "Cu", "Cu"],
        [
            [0.15080, 0.16564, 0.39103],
            [0.05620, 0.35913, 0.07637],
            [0, 0, 0.20195],
            [0.15378, 0.05862, 0.00161],
            [0.23611, 0.14694, 0.10334],
        ],
    )


def _perovskite_oxide() -> Structure:
    # ReO3 (Meisel 1932), Pm-3m (No. 221), a = 3.7477 Å; Re 1a (0, 0, 0), O 3d (1/2, 0, 0); the
    # inserted ion takes the empty perovskite A site, the cuboctahedral cavity 1b (1/2, 1/2, 1/2),
    # as Na in the cubic tungsten bronzes NaxWO3.
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(3.7477), ["Re", "O", "K"], [[0, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0.5]]
    )


def _perovskite_fluoride() -> Structure:
    # KMnF3, the cubic perovskite, Pm-3m (No. 221): Mn 1a (0, 0, 0), F 3d (1/2, 0, 0),
    # K 1b (1/2, 1/2, 1/2); a = 4.19 Å, its room-temperature lattice constant (crystallographic
    # databases list 4.18-4.19 Å).
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(4.19), ["Mn", "F", "K"], [[0, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0.5]]
    )


#: The prototypes, in the order recognition tries them (layered O3 before spinel: see the module
#: docstring for how ``M O2`` frameworks are told apart).
PROTOTYPES: tuple[Prototype, ...] = (
    Prototype(
        name="layered-O3",
        description="LiCoO2 (alpha-NaFeO2 type), R-3m; ion on the octahedral site between MO2 layers",
        nonmetals=(("O", 2.0),),
        metals=1,
        ion_sites=1,
        framework_charge=4.0,
        anion="O",
        reference_metal="Co",
        reference_metal_state=3.0,
        reference_ion="Li",
        reference_ion_radius=0.76,
        ion_scaling="c",
        build=_layered_o3,
    ),
    Prototype(
        name="spinel",
        description="LiMn2O4, Fd-3m; ion on the tetrahedral 8a site",
        nonmetals=(("O", 4.0),),
        metals=2,
        ion_sites=1,
        framework_charge=8.0,
        anion="O",
        reference_metal="Mn",
        reference_metal_state=3.5,
        reference_ion="Li",
        reference_ion_radius=0.59,  # Li+ four-fold
        ion_scaling="none",
        build=_spinel,
    ),
    Prototype(
        name="olivine",
        description="LiFePO4 (triphylite), Pnma; ion on the octahedral 4a site",
        nonmetals=(("P", 1.0), ("O", 4.0)),
        metals=1,
        ion_sites=1,
        framework_charge=3.0,
        anion="O",
        reference_metal="Fe",
        reference_metal_state=2.0,
        reference_ion="Li",
        reference_ion_radius=0.76,
        ion_scaling="cell",
        build=_olivine,
        metal_weight=0.5,
    ),
    Prototype(
        name="layered-1T",
        description="1T-TiS2 / LiTiS2, P-3m1; ion on the octahedral site in the van der Waals gap",
        nonmetals=(("S", 2.0),),
        metals=1,
        ion_sites=1,
        framework_charge=4.0,
        anion="S",
        reference_metal="Ti",
        reference_metal_state=4.0,
        reference_ion="Li",
        reference_ion_radius=0.76,
        ion_scaling="c",
        build=_layered_1t,
    ),
    Prototype(
        name="chevrel",
        description="Chevrel phase Mo6S8 (Cu2.76Mo6S8 type), R-3; ions on inner and outer rings",
        nonmetals=(("S", 8.0),),
        metals=6,
        ion_sites=12,
        framework_charge=16.0,
        anion="S",
        reference_metal="Mo",
        reference_metal_state=(16 - 2.76) / 6,
        reference_ion="Cu",
        reference_ion_radius=None,
        ion_scaling="none",
        build=_chevrel,
        max_electrons=4.0,
    ),
    Prototype(
        name="perovskite-oxide",
        description="ReO3 host, Pm-3m; ion in the perovskite A-site cavity",
        nonmetals=(("O", 3.0),),
        metals=1,
        ion_sites=1,
        framework_charge=6.0,
        anion="O",
        reference_metal="Re",
        reference_metal_state=6.0,
        reference_ion="K",
        reference_ion_radius=None,
        ion_scaling="none",
        build=_perovskite_oxide,
        min_ion_radius=0.95,
    ),
    Prototype(
        name="perovskite-fluoride",
        description="KMnF3 cubic perovskite, Pm-3m; ion on the A site",
        nonmetals=(("F", 3.0),),
        metals=1,
        ion_sites=1,
        framework_charge=3.0,
        anion="F",
        reference_metal="Mn",
        reference_metal_state=2.0,
        reference_ion="K",
        reference_ion_radius=None,
        ion_scaling="none",
        build=_perovskite_fluoride,
        min_ion_radius=0.95,
    ),
)

_BY_NAME = {p.name: p for p in PROTOTYPES}


@dataclass(frozen=True)
class _Reference:
    """A prototype's primitive reference cell and its site roles."""

    structure: Structure
    formula_units: int
    metal_sites: tuple[int, ...]
    ion_sites: tuple[int, ...]


@cache
def _reference(name: str) -> _Reference:
    proto = _BY_NAME[name]
    cell = proto.build().get_primitive_structure()
    metal = tuple(i for i, s in enumerate(cell) if s.specie.symbol == proto.reference_metal)
    ions = tuple(i for i, s in enumerate(cell) if s.specie.symbol == proto.reference_ion)
    if len(metal) % proto.metals:
        raise AssertionError(f"{name}: {len(metal)} metal sites is not whole formula units")
    return _Reference(cell, len(metal) // proto.metals, metal, ions)


# --------------------------------------------------------------------------------------------
# Recognition and planning


@dataclass(frozen=True)
class StatePlan:
    """How one end of the pair is built.

    Attributes:
        x: ions per framework formula unit.
        formula_units: framework formula units in the built cell.
        supercell: diagonal supercell of the primitive reference cell, ``(n1, n2, n3)``.
        n_ions: ions in the built cell.
    """

    x: float
    formula_units: int
    supercell: tuple[int, int, int]
    n_ions: int


@dataclass(frozen=True)
class PairPlan:
    """A recognized candidate: its prototype, amounts and supercells (:func:`plan_pair`).

    Attributes:
        prototype: the framework prototype.
        ion: the working ion; ``valence``: its valence z.
        metals: ``{element: fraction}`` on the M sites (fractions sum to 1).
        charge / discharge: how each end is built.
        ion_radius: the ion's Shannon radius in Å (from the ion table).
    """

    prototype: Prototype
    ion: str
    valence: int
    metals: Mapping[str, float]
    charge: StatePlan
    discharge: StatePlan
    ion_radius: float

    def atoms(self, state: StatePlan) -> int:
        """Atoms in the built cell of one end (``self.charge`` or ``self.discharge``)."""
        ref = _reference(self.prototype.name)
        per_fu = len(ref.structure) / ref.formula_units - self.prototype.ion_sites
        return round(state.formula_units * per_fu) + state.n_ions

    @property
    def x_inserted(self) -> float:
        """Ions inserted per framework formula unit, x_discharge − x_charge."""
        return self.discharge.x - self.charge.x

    def structures(self) -> tuple[Structure, Structure]:
        """The ordered (charged, discharged) structures."""
        return self._build(self.charge), self._build(self.discharge)

    def _build(self, state: StatePlan) -> Structure:
        proto = self.prototype
        ref = _reference(proto.name)
        cell = ref.structure.copy()
        cell.lattice = _scaled_lattice(cell.lattice, self, state)
        n1, n2, n3 = state.supercell
        roles = {i: "M" for i in ref.metal_sites} | {i: "A" for i in ref.ion_sites}
        cell.add_site_property("role", [roles.get(i, "F") for i in range(len(cell))])
        sup = cell.make_supercell([n1, n2, n3], in_place=False)
        role = list(sup.site_properties["role"])
        metal_idx = [i for i, r in enumerate(role) if r == "M"]
        ion_idx = [i for i, r in enumerate(role) if r == "A"]
        species: dict[int, str] = {}
        for i, el in zip(metal_idx, _order_metals(sup, metal_idx, self.metals)):
            species[i] = el
        keep_ions = farthest_point_sequence(sup, ion_idx, state.n_ions)
        for i in keep_ions:
            species[i] = self.ion
        drop = sorted(set(ion_idx) - set(keep_ions))
        for i, el in species.items():
            sup.replace(i, el, properties={"role": role[i]})
        sup.remove_sites(drop)
        sup.remove_site_property("role")
        return sup


def farthest_point_sequence(structure: Structure, candidates: Sequence[int], n: int) -> list[int]:
    """``n`` of the ``candidates`` site indices, chosen one by one, each the site farthest (periodic
    distance, minimum over the sites already chosen) from those chosen; the first is
    ``candidates[0]`` and ties go to the lower index, so the choice is deterministic and the first
    k of n are the choice for k."""
    if n <= 0:
        return []
    cand = list(candidates)
    frac = structure.frac_coords[cand]
    dist = structure.lattice.get_all_distances(frac, frac)
    chosen = [0]
    nearest = dist[0].copy()
    while len(chosen) < n:
        nearest[chosen] = -1.0
        nxt = int(np.argmax(np.round(nearest, 6)))
        chosen.append(nxt)
        nearest = np.minimum(nearest, dist[nxt])
    return [cand[i] for i in chosen]


def _order_metals(
    structure: Structure, sites: Sequence[int], metals: Mapping[str, float]
) -> list[str]:
    """The element on each of ``sites`` (in order): the rarest element first, each atom on the free
    site farthest from its own element's atoms already placed; the most common fills the rest."""
    n = len(sites)
    counts = {el: round(f * n) for el, f in metals.items()}
    order = sorted(counts, key=lambda el: (counts[el], el))
    out: list[str | None] = [None] * n
    free = list(range(n))
    for el in order[:-1]:
        picked = farthest_point_sequence(structure, [sites[i] for i in free], counts[el])
        pos = {sites[i]: i for i in free}
        for site in picked:
            out[pos[site]] = el
        free = [i for i in free if out[i] is None]
    for i in free:
        out[i] = order[-1]
    return [el for el in out if el is not None]


def _mean_radius(metals: Mapping[str, float], state: float) -> float | None:
    total = 0.0
    for el, frac in metals.items():
        r = shannon_radius(el, state)
        if r is None:
            return None
        total += frac * r
    return total


def _scaled_lattice(lattice: Lattice, plan: PairPlan, state: StatePlan) -> Lattice:
    """The reference lattice scaled for the candidate's metals, ion and filling (module docstring)."""
    from pymatgen.core import Lattice

    proto = plan.prototype
    r_x = ANION_RADIUS_A[proto.anion]
    metal_state = (proto.framework_charge - state.x * plan.valence) / proto.metals
    r_m = _mean_radius(plan.metals, metal_state)
    r_ref = shannon_radius(proto.reference_metal, proto.reference_metal_state)
    s_fw = 1.0
    if r_m is not None and r_ref is not None:
        s_fw = _clip(1.0 + proto.metal_weight * ((r_m + r_x) / (r_ref + r_x) - 1.0))
    s_ion = 1.0
    if proto.reference_ion_radius is not None and state.x > 0:
        ratio = (plan.ion_radius + r_x) / (proto.reference_ion_radius + r_x)
        s_ion = _clip(1.0 + 0.5 * (ratio - 1.0) * state.x / proto.ion_sites)
    matrix = lattice.matrix * s_fw
    if proto.ion_scaling == "cell":
        matrix = matrix * s_ion
    elif proto.ion_scaling == "c":
        # the c axis of the reference cells: the primitive vectors' common component along z
        matrix = matrix.copy()
        matrix[:, 2] *= s_ion
    return Lattice(matrix)


def _whole(value: float) -> bool:
    return abs(value - round(value)) < _WHOLE_TOL


def _supercells(det: int) -> list[tuple[int, int, int]]:
    return [
        (a, b, det // (a * b))
        for a in range(1, det + 1)
        for b in range(1, det + 1)
        if det % (a * b) == 0
    ]


@cache
def _best_supercell(name: str, det: int) -> tuple[int, int, int]:
    """The diagonal supercell of determinant ``det`` of prototype ``name``'s primitive reference
    cell with the largest smallest width (ties: the first in lexicographic order)."""
    lattice = _reference(name).structure.lattice
    best: tuple[float, tuple[int, int, int]] | None = None
    for sc in _supercells(det):
        m = lattice.matrix * np.array(sc)[:, None]
        vol = abs(np.linalg.det(m))
        widths = [vol / np.linalg.norm(np.cross(m[(i + 1) % 3], m[(i + 2) % 3])) for i in range(3)]
        score = round(min(widths), 6)
        if best is None or score > best[0]:
            best = (score, sc)
    assert best is not None
    return best[1]


def recognize(
    ion: str, formula_charge: str, formula_discharge: str, ions: IonTable = DEFAULT_IONS
) -> tuple[Prototype, dict[str, float], float, float]:
    """The prototype, M-site fractions and x per framework formula unit (charged, discharged).

    Raises:
        PrototypeError: formulas that do not parse or match, or no prototype fits (the message
            names the framework and the prototypes tried).
    """
    pair = f"{ion}: {formula_charge} -> {formula_discharge}"
    try:
        insertion_pair(formula_charge, formula_discharge, ion, ions)
        charge = parse_formula(formula_charge)
        discharge = parse_formula(formula_discharge)
    except DiscoveryError as exc:
        raise PrototypeError(f"{pair}: {exc}") from None
    framework = {el: amt for el, amt in discharge.items() if el != ion}
    tried = []
    matches: list[tuple[Prototype, dict[str, float], float]] = []
    for proto in PROTOTYPES:
        tried.append(proto.name)
        fixed = proto.nonmetal_dict
        if any(el not in framework for el in fixed):
            continue
        metals = {el: amt for el, amt in framework.items() if el not in fixed}
        if not metals or not all(_is_metal(el) for el in metals):
            continue
        units = next(iter(framework[el] / amt for el, amt in fixed.items()))
        if not all(
            math.isclose(framework[el], amt * units, rel_tol=1e-4) for el, amt in fixed.items()
        ):
            continue
        if not math.isclose(sum(metals.values()), proto.metals * units, rel_tol=1e-4):
            continue
        matches.append((proto, metals, units))
    if not matches:
        fw = "".join(f"{el}{amt:g}" for el, amt in framework.items())
        raise PrototypeError(
            f"{pair}: no prototype for the framework {fw} (prototypes: "
            + ", ".join(f"{p.name} {_framework_text(p)}" for p in PROTOTYPES)
            + ")"
        )
    if len(matches) > 1:
        written = [
            m for m in matches if math.isclose(sum(m[1].values()), m[0].metals, rel_tol=1e-4)
        ]
        matches = written[-1:] or matches[:1]
    proto, metals, units = matches[0]
    total = sum(metals.values())
    fractions = {el: amt / total for el, amt in sorted(metals.items())}
    # the charged framework is k times the discharged one (insertion_pair checked proportionality)
    scale = next(charge[el] / framework[el] for el in framework)
    x_charge = charge.get(ion, 0.0) / (units * scale)
    x_discharge = discharge.get(ion, 0.0) / units
    return proto, fractions, x_charge, x_discharge


def _framework_text(proto: Prototype) -> str:
    fixed = "".join(f"{el}{amt:g}" if amt != 1 else el for el, amt in proto.nonmetals)
    return f"M{proto.metals if proto.metals != 1 else ''}{fixed}"


#: Main-group elements allowed on the M sites besides the transition metals (octahedral cations
#: of these frameworks). Alkali and alkaline-earth metals other than Mg, lanthanides and the
#: tetrahedral network formers (B, Si, Ge, As) are not M-site metals, so a framework holding them
#: matches no prototype.
M_SITE_MAIN_GROUP = frozenset({"Mg", "Al", "Ga", "In", "Sn", "Sb", "Bi", "Pb", "Tl"})


@cache
def _is_metal(element: str) -> bool:
    """Whether ``element`` may sit on an M site: a transition metal (groups 3-12) or one of
    :data:`M_SITE_MAIN_GROUP`."""
    from pymatgen.core import Element

    return element in M_SITE_MAIN_GROUP or bool(Element(element).is_transition_metal)


def plan_pair(
    ion: str,
    formula_charge: str,
    formula_discharge: str,
    ions: IonTable = DEFAULT_IONS,
    max_atoms: int = 48,
) -> PairPlan:
    """Recognize a candidate and plan its structures (see the module docstring).

    Raises:
        PrototypeError: no prototype fits, x exceeds the prototype's ion sites or electrons, or
            the ordering needs more than ``max_atoms`` atoms in a cell.
    """
    proto, metals, x_c, x_d = recognize(ion, formula_charge, formula_discharge, ions)
    pair = f"{ion}: {formula_charge} -> {formula_discharge}"
    valence = ions[ion].valence
    if x_d > proto.ion_sites + _WHOLE_TOL:
        raise PrototypeError(
            f"{pair}: {proto.name} has {proto.ion_sites} ion site(s) per {_framework_text(proto)}, "
            f"the discharged formula needs x = {x_d:g}"
        )
    radius = ions[ion].shannon_radius_angstrom
    if proto.min_ion_radius is not None and radius < proto.min_ion_radius:
        raise PrototypeError(
            f"{pair}: the {proto.name} A site is a 12-fold cavity for ions of Shannon radius "
            f">= {proto.min_ion_radius:g} Å; {ion} has {radius:g} Å"
        )
    if proto.max_electrons is not None and x_d * valence > proto.max_electrons + _WHOLE_TOL:
        raise PrototypeError(
            f"{pair}: {proto.name} takes at most {proto.max_electrons:g} electrons per "
            f"{_framework_text(proto)}, the discharged formula needs x·z = {x_d * valence:g}"
        )
    ref = _reference(proto.name)
    n_prim = ref.formula_units
    mixed = len(metals) > 1

    def ordered(x: float) -> bool:
        return mixed or not (_whole(x) and (round(x) == 0 or round(x) == proto.ion_sites))

    need = [x for x in (x_c, x_d) if ordered(x)]
    atoms_per_fu = len(ref.structure) / n_prim - proto.ion_sites + x_d

    def whole_for(n_fu: int) -> bool:
        amounts = [n_fu * x for x in need]
        if mixed:
            amounts += [n_fu * proto.metals * f for f in metals.values()]
        return all(_whole(a) for a in amounts)

    det = 1
    while True:
        n_fu = det * n_prim
        if n_fu * atoms_per_fu > max_atoms + _WHOLE_TOL:
            what = []
            if mixed:
                what.append("M = " + " ".join(f"{el}{f:g}" for el, f in metals.items()))
            what += [f"x = {x:g}" for x in need]
            raise PrototypeError(
                f"{pair}: ordering {', '.join(what)} in {proto.name} needs more than "
                f"{max_atoms} atoms per cell (max_atoms)"
            )
        if whole_for(n_fu):
            break
        det += 1
    supercell = _best_supercell(proto.name, det)

    def state(x: float) -> StatePlan:
        if ordered(x):
            return StatePlan(x, n_fu, supercell, round(n_fu * x))
        return StatePlan(x, n_prim, (1, 1, 1), round(n_prim * x))

    return PairPlan(
        prototype=proto,
        ion=ion,
        valence=valence,
        metals=metals,
        charge=state(x_c),
        discharge=state(x_d),
        ion_radius=ions[ion].shannon_radius_angstrom,
    )


# --------------------------------------------------------------------------------------------
# Ion metals

#: Structures of the working-ion metals: (lattice, a in Å, c in Å or None), from Kittel,
#: Introduction to Solid State Physics, 8th ed., chapter 1 (crystal structures of the elements;
#: the alkali metals near 4 K, the others at room temperature).
ION_METALS: dict[str, tuple[str, float, float | None]] = {
    "Li": ("bcc", 3.491, None),
    "Na": ("bcc", 4.225, None),
    "K": ("bcc", 5.225, None),
    "Rb": ("bcc", 5.585, None),
    "Cs": ("bcc", 6.045, None),
    "Ba": ("bcc", 5.02, None),
    "Mg": ("hcp", 3.21, 5.21),
    "Zn": ("hcp", 2.66, 4.95),
    "Y": ("hcp", 3.65, 5.73),
    "Ca": ("fcc", 5.58, None),
    "Sr": ("fcc", 6.08, None),
    "Al": ("fcc", 4.05, None),
    "Ag": ("fcc", 4.09, None),
    "Cu": ("fcc", 3.61, None),
}


def ion_metal_structure(ion: str) -> Structure:
    """The primitive cell of the working ion's metal (bcc, hcp or fcc, :data:`ION_METALS`).

    Raises:
        PrototypeError: no metal structure is known for the ion.
    """
    from pymatgen.core import Lattice, Structure

    if ion not in ION_METALS:
        raise PrototypeError(
            f"no reference metal structure for the working ion {ion!r} "
            f"(known: {', '.join(ION_METALS)})"
        )
    kind, a, c = ION_METALS[ion]
    h = a / 2
    if kind == "bcc":  # primitive cell of the body-centred cubic lattice, one atom
        return Structure(Lattice([[-h, h, h], [h, -h, h], [h, h, -h]]), [ion], [[0, 0, 0]])
    if kind == "fcc":  # primitive cell of the face-centred cubic lattice, one atom
        return Structure(Lattice([[0, h, h], [h, 0, h], [h, h, 0]]), [ion], [[0, 0, 0]])
    assert c is not None  # hcp, P6_3/mmc, atoms on 2c (1/3, 2/3, 1/4) and (2/3, 1/3, 3/4)
    return Structure(
        Lattice.hexagonal(a, c), [ion, ion], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]
    )


def prototype_names() -> list[str]:
    """Names of the prototypes in recognition order."""
    return [p.name for p in PROTOTYPES]
