"""Redox features: formal oxidation states of an insertion pair's framework, by charge balance.

The voltage of an insertion electrode is set mostly by its redox couple (Fe2+/Fe3+ in LiFePO4,
Co3+/Co4+ in LiCoO2) and by what surrounds it (the inductive effect of a phosphate or sulfate
group). Magpie statistics describe which elements are present, not which of them changes its
oxidation state, nor from what to what. This module estimates that, for many rows at once, from
the framework's element fractions alone:

1. Every framework element gets a state by the rule of :mod:`discovery.chemistry.oxidation`, the
   tables candidate generation charge-balances with:

   * in a cyanide framework (C and N, no O or F) C is +2 and N -3;
   * a polyanion centre takes its polyanion state when a more electronegative anion-former is
     present (P +5 in a phosphate or thiophosphate, S +6 in a sulfate, Si +4 in a silicate);
   * otherwise an anion-former takes its anion state (O -2, S -2 in a sulfide, P -3, F -1...);
   * otherwise an element with one state in ``OXIDATION_STATES`` is a spectator with that charge
     (alkali +1, Mg, Zn +2, Al, Y +3, Zr +4...);
   * the rest is **redox active** (:data:`ACTIVE_ELEMENTS`): the elements with a range of states
     (transition metals, Sn, Sb, Bi, Ce...; C, Si and Ge in an alloy) and those with no known
     state, noble gases excepted.

2. The working ion carries its valence z. Per framework atom, the charges of the anions, the
   amphoteric non-metals, the spectators and the ions must cancel; the redox-active atoms carry
   the rest, shared equally. That gives their mean formal oxidation state in the charged and in
   the discharged formula, and the electrons each takes up on discharge.

3. The **couple's ionization energy** is the energy to remove one electron from an active atom at
   the charged state: the k-th ionization energy of the element, k = the mean of the two states
   plus one half (Fe2+/Fe3+ gives k = 3, the third ionization energy, Fe2+ -> Fe3+), linearly
   interpolated between whole k and averaged over the active elements by their share of the
   active atoms. Ionization energies (eV) are pymatgen's element data (NIST).

These are formal estimates, not a structure's real charges: mixed-metal frameworks share the
electrons equally (LiNi0.5Mn1.5O4 gives Ni and Mn the same state), and intermetallic frameworks
give negative states. The model learns how far to trust them. On the 10 % test splits of the
shared Materials Project data they lower the ensemble's voltage MAE from 0.363 to 0.339 V
(random) and from 0.350 to 0.315 V (grouped by framework); see docs/benchmarks.md.

Features (``REDOX_FEATURES``, then one ``ox:`` column per element of :data:`ACTIVE_ELEMENTS`):

=====================================  ===================================================================
``redox:active_atom_fraction``         redox-active atoms per framework atom (0..1)
``redox:oxidation_state_charge``       mean formal oxidation state of the active atoms, charged, clipped to
                                       [-4, 8]; 0 without active atoms
``redox:oxidation_state_discharge``    the same in the discharged formula
``redox:electrons_per_active_atom``    x·z per active atom taken up on discharge, at most 8
``redox:ionization_energy_couple_ev``  the couple's ionization energy in eV (see 3.); 0 without active atoms
``redox:anion_charge_per_atom``        total negative formal charge per framework atom, in e (positive)
``redox:oxide_or_fluoride``            1 if the framework contains O or F, else 0
``ox:<El>``                            the element's share of the active atoms times the mean of the two
                                       oxidation states; the row of ``ox:`` columns sums to that mean
=====================================  ===================================================================
"""

from __future__ import annotations

__all__ = [
    "ACTIVE_ELEMENTS",
    "REDOX_FEATURES",
    "ionization_energies_ev",
    "redox_feature_names",
    "redox_features",
    "redox_features_torch",
]

import warnings
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import torch

from discovery.chemistry.formula import ELEMENTS
from discovery.chemistry.oxidation import (
    ANION_ELECTRONEGATIVITY,
    ANION_STATES,
    CYANIDE_CARBON_STATE,
    OXIDATION_STATES,
    POLYANION_STATES,
)

_NOBLE_GASES = frozenset(("He", "Ne", "Ar", "Kr", "Xe", "Rn"))

#: Elements that can carry the redox: those with a range of states in :data:`OXIDATION_STATES`
#: or with no known state, except anion-formers and noble gases. C, Si and Ge count only where
#: they are not polyanion centres (or, for C, cyanide).
ACTIVE_ELEMENTS: tuple[str, ...] = tuple(
    el
    for el in ELEMENTS
    if el not in ANION_STATES
    and el not in _NOBLE_GASES
    and not (el in OXIDATION_STATES and OXIDATION_STATES[el][0] == OXIDATION_STATES[el][1])
)

#: Names of the scalar redox features, in order (the ``ox:`` block follows them).
REDOX_FEATURES: tuple[str, ...] = (
    "redox:active_atom_fraction",
    "redox:oxidation_state_charge",
    "redox:oxidation_state_discharge",
    "redox:electrons_per_active_atom",
    "redox:ionization_energy_couple_ev",
    "redox:anion_charge_per_atom",
    "redox:oxide_or_fluoride",
)

_MIN_STATE, _MAX_STATE = -4.0, 8.0  # clip of the mean formal oxidation state (e)
_MAX_ELECTRONS = 8.0  # cap of the electrons per active atom
_N_IONIZATION = 10  # ionization energies kept per element
_ROWS_PER_BLOCK = 8192
_OXYGEN_FLUORINE = [ELEMENTS.index("O"), ELEMENTS.index("F")]
_CARBON, _NITROGEN = ELEMENTS.index("C"), ELEMENTS.index("N")  # a cyanide framework holds both


def redox_feature_names() -> tuple[str, ...]:
    """The names :func:`redox_features` fills: :data:`REDOX_FEATURES`, then ``ox:<El>``."""
    return (*REDOX_FEATURES, *(f"ox:{el}" for el in ACTIVE_ELEMENTS))


@cache
def ionization_energies_ev() -> NDArray[np.float64]:
    """Ionization energies of the active elements, in eV, from pymatgen's element data.

    Returns:
        read-only array of shape (len(ACTIVE_ELEMENTS), 10): ``[i, k - 1]`` is the k-th ionization
        energy of ``ACTIVE_ELEMENTS[i]`` (from charge k - 1 to k). Where pymatgen lists fewer
        than 10 (or a missing value), the last known one is repeated.
    """
    from pymatgen.core import Element

    table = np.zeros((len(ACTIVE_ELEMENTS), _N_IONIZATION))
    for i, symbol in enumerate(ACTIVE_ELEMENTS):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about elements with sparse data
            listed = Element(symbol).ionization_energies or []
        known: list[float] = []
        for value in listed[:_N_IONIZATION]:
            if value is None:
                break
            known.append(float(value))
        if not known:
            raise ValueError(f"pymatgen lists no ionization energy for {symbol}")
        known += [known[-1]] * (_N_IONIZATION - len(known))
        table[i] = known
    table.flags.writeable = False
    return table


@dataclass(frozen=True)
class _Charges:
    """Per-element constants of the charge balance (indices into H..Lr)."""

    fixed: NDArray[np.float64]  # (103,) charge of an element whose state never depends on the row
    centres: NDArray[np.intp]  # polyanion centres
    centre_state: NDArray[np.float64]  # their polyanion state
    centre_otherwise: NDArray[np.float64]  # their anion state, or 0 where they are active
    centre_electronegativity: NDArray[np.float64]
    in_cyanide: NDArray[np.bool_]  # the centres a cyanide fixes (C and N)
    cyanide_state: NDArray[np.float64]  # their states there (C +2, N -3)
    formers: NDArray[np.intp]  # the anion-formers
    former_electronegativity: NDArray[np.float64]
    active: NDArray[np.intp]  # ACTIVE_ELEMENTS
    active_centre: NDArray[np.intp]  # for each active element, its position in centres, or -1


def _state_otherwise(el: str) -> float:
    """A polyanion centre's state where it is not one: its anion state, its fixed cation state
    (B +3), or 0 where it is redox active (C, Si, Ge in an alloy)."""
    if el in ANION_STATES:
        return float(ANION_STATES[el])
    if el in OXIDATION_STATES and OXIDATION_STATES[el][0] == OXIDATION_STATES[el][1]:
        return float(OXIDATION_STATES[el][0])
    return 0.0


@cache
def _charges() -> _Charges:
    index = {el: i for i, el in enumerate(ELEMENTS)}
    fixed = np.zeros(len(ELEMENTS))
    for el, (low, high) in OXIDATION_STATES.items():
        if low == high:
            fixed[index[el]] = low
    for el, state in ANION_STATES.items():
        fixed[index[el]] = state
    centres = list(POLYANION_STATES)
    fixed[[index[el] for el in centres]] = 0.0  # row-dependent: added per row
    return _Charges(
        fixed=fixed,
        centres=np.array([index[el] for el in centres], dtype=np.intp),
        centre_state=np.array([POLYANION_STATES[el] for el in centres], dtype=np.float64),
        centre_otherwise=np.array([_state_otherwise(el) for el in centres], dtype=np.float64),
        centre_electronegativity=np.array([ANION_ELECTRONEGATIVITY[el] for el in centres]),
        in_cyanide=np.array([el in ("C", "N") for el in centres]),
        cyanide_state=np.array(
            [
                CYANIDE_CARBON_STATE if el == "C" else ANION_STATES["N"] if el == "N" else 0.0
                for el in centres
            ],
            dtype=np.float64,
        ),
        formers=np.array([index[el] for el in ANION_ELECTRONEGATIVITY], dtype=np.intp),
        former_electronegativity=np.array(list(ANION_ELECTRONEGATIVITY.values())),
        active=np.array([index[el] for el in ACTIVE_ELEMENTS], dtype=np.intp),
        active_centre=np.array(
            [centres.index(el) if el in centres else -1 for el in ACTIVE_ELEMENTS], dtype=np.intp
        ),
    )


def redox_features(
    fractions: NDArray[np.floating],
    ions_per_atom_charge: NDArray[np.floating],
    ions_per_atom_discharge: NDArray[np.floating],
    valence: NDArray[np.floating] | NDArray[np.integer],
    out: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]:
    """Redox features of n insertion pairs (see the module docstring).

    Args:
        fractions: (n, 103) atomic fractions of H..Lr in each framework (the formula without the
            working ion; rows sum to 1), e.g. the ``frac:`` block of the electrode features.
        ions_per_atom_charge: (n,) working ions per framework atom in the charged formula.
        ions_per_atom_discharge: (n,) the same in the discharged formula (larger).
        valence: (n,) the working ion's valence z.
        out: optional (n, len(redox_feature_names())) array (a view is fine) to fill; computed in
            float64 and cast on assignment, block by block.

    Returns:
        ``out``, or a new float64 array, with columns :func:`redox_feature_names`.
    """
    import torch

    n = fractions.shape[0]
    width = len(REDOX_FEATURES) + len(ACTIVE_ELEMENTS)
    if out is None:
        out = np.empty((n, width))
    if out.shape != (n, width):
        raise ValueError(f"out must have shape ({n}, {width}), got {out.shape}")

    def tensor(values: NDArray[np.generic]) -> torch.Tensor:  # a copy: inputs may be read-only
        return torch.tensor(np.asarray(values), dtype=torch.float64)

    for start in range(0, n, _ROWS_PER_BLOCK):
        block = slice(start, min(start + _ROWS_PER_BLOCK, n))
        out[block] = redox_features_torch(
            tensor(fractions[block]),
            tensor(ions_per_atom_charge[block]),
            tensor(ions_per_atom_discharge[block]),
            tensor(valence[block]),
        ).numpy()
    return out


def redox_features_torch(
    fractions: torch.Tensor,
    ions_per_atom_charge: torch.Tensor,
    ions_per_atom_discharge: torch.Tensor,
    valence: torch.Tensor | float,
) -> torch.Tensor:
    """:func:`redox_features` in torch, differentiable in the fractions and ion amounts.

    Args:
        fractions: (m, 103) framework fractions, float64.
        ions_per_atom_charge, ions_per_atom_discharge: (m,) working ions per framework atom.
        valence: (m,) or a number, the working ion's valence z.

    Returns:
        (m, len(redox_feature_names())) float64 tensor on the device of ``fractions``. The clips,
        caps and the choice of each element's state (polyanion or anion, cyanide) carry no
        gradient.
    """
    import torch

    c = _charges()

    def t(array: NDArray[np.generic]) -> torch.Tensor:
        return torch.tensor(array, device=fractions.device)  # a copy

    dtype = fractions.dtype
    present = fractions[:, t(c.formers)] > 0.0
    strongest = torch.where(
        present, t(c.former_electronegativity).to(dtype), torch.tensor(-1.0, dtype=dtype)
    ).amax(-1, keepdim=True)
    polyanion = t(c.centre_electronegativity).to(dtype) < strongest  # (m, k): polyanion state
    oxide = fractions[:, _OXYGEN_FLUORINE].sum(-1) > 0.0
    cyanide = (fractions[:, _CARBON] > 0.0) & (fractions[:, _NITROGEN] > 0.0) & ~oxide
    by_cyanide = cyanide.unsqueeze(-1) & t(c.in_cyanide)  # (m, k): C +2 and N -3 there
    centre_charge = torch.where(
        by_cyanide,
        t(c.cyanide_state).to(dtype),
        torch.where(polyanion, t(c.centre_state).to(dtype), t(c.centre_otherwise).to(dtype)),
    )
    fixed_centre = polyanion | by_cyanide  # (m, k): not redox active there
    at_centres = fractions[:, t(c.centres)]
    fixed_table = t(np.stack([c.fixed, np.minimum(c.fixed, 0.0)]).T).to(dtype)  # (103, 2)
    sums = fractions @ fixed_table
    fixed = sums[:, 0] + (at_centres * centre_charge).sum(-1)
    anion = -(sums[:, 1] + (at_centres * centre_charge.clamp(max=0.0)).sum(-1))
    # C, Si and Ge carry no redox where they are polyanion centres (or cyanide carbon)
    carries = torch.ones(
        fractions.shape[0], len(c.active), dtype=torch.bool, device=fractions.device
    )
    columns = np.flatnonzero(c.active_centre >= 0)
    carries[:, t(columns)] = ~fixed_centre[:, t(c.active_centre[columns])]
    share = fractions[:, t(c.active)] * carries.to(dtype)
    active_fraction = share.sum(-1)
    has = active_fraction > 1e-9
    safe = torch.where(has, active_fraction, torch.ones_like(active_fraction))
    share = share / safe.unsqueeze(-1)
    charged = valence * ions_per_atom_charge
    discharged = valence * ions_per_atom_discharge
    zero = torch.zeros_like(active_fraction)
    state_c = torch.where(has, (-(fixed + charged) / safe).clamp(_MIN_STATE, _MAX_STATE), zero)
    state_d = torch.where(has, (-(fixed + discharged) / safe).clamp(_MIN_STATE, _MAX_STATE), zero)
    electrons = torch.where(has, ((discharged - charged) / safe).clamp(max=_MAX_ELECTRONS), zero)
    middle = 0.5 * (state_c + state_d)
    k = (middle + 0.5).clamp(1.0, float(_N_IONIZATION))  # which ionization, 1-based
    low = k.detach().floor().long()
    high = (low + 1).clamp(max=_N_IONIZATION)
    by_order = t(ionization_energies_ev().T).to(dtype)  # (10, a): row k - 1, every k-th energy
    weight = (k - low).unsqueeze(-1)
    couple = by_order[low - 1] * (1.0 - weight) + by_order[high - 1] * weight  # (m, a)
    energy = torch.where(has, (share * couple).sum(-1), zero)
    scalars = torch.stack(
        [active_fraction, state_c, state_d, electrons, energy, anion, oxide.to(dtype)],
        dim=-1,
    )
    return torch.cat([scalars, share * middle.unsqueeze(-1)], dim=-1)
