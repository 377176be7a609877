"""Generated candidate pools: host-framework templates × site mixings × working ions × x.

A framework is a template such as ``"A_x M O2"``, ``"A_x M2 (PO4)3"`` or ``"A_x M1 M2 O4"``:
whitespace-separated tokens, one of which is ``A_x``, the working-ion site holding x ions per
formula unit. Every other token is either a *substitution site* (a label of the framework's
``sites`` mapping, optionally followed by a multiplicity: ``M2`` is site ``M`` twice when ``M`` is a
label and ``M2`` is not) or a fixed *formula group* (``O2``, ``(PO4)3``, ``P``, ``O4``). A site
lists allowed elements; a *mixing* puts up to ``max_elements`` distinct elements on it with
fractions on the ``fraction_step`` grid that sum to 1.

For every framework × mixing of its sites × ion × x, the discharged formula is the template with
``A_x`` written as the ion and x (``"Li0.5Fe0.5Mn0.5O2"``), the charged formula is the framework
alone (all x ions removed, ``"Fe0.5Mn0.5O2"``). A candidate is kept only when it can be charge
balanced (:func:`charge_range`, documented in ``docs/spaces.md``), and candidates are
de-duplicated by :func:`~discovery.space.ids.candidate_id`.

Generation works on NumPy arrays: mixings are enumerated per site, the charge-balance test is
one boolean matrix (frameworks × (ion, x)), and formula strings are concatenated as NumPy object
arrays, so a million candidates take seconds.
"""

from __future__ import annotations

__all__ = [
    "ANION_STATES",
    "DEFAULT_MAX_CANDIDATES",
    "MAX_ENUMERATED",
    "MAX_FRAMEWORK_COMBINATIONS",
    "OXIDATION_STATES",
    "POLYANION_STATES",
    "FrameworkLike",
    "SiteLike",
    "SpaceError",
    "Template",
    "TemplateError",
    "TemplateToken",
    "charge_range",
    "generate_pool",
    "parse_template",
]

import itertools
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from discovery.chemistry.formula import ELEMENTS, parse_formula
from discovery.chemistry.ions import DEFAULT_IONS, IonTable
from discovery.chemistry.oxidation import (
    ANION_ELECTRONEGATIVITY,
    ANION_STATES,
    CYANIDE_CARBON_STATE,
    OXIDATION_STATES,
    POLYANION_STATES,
)
from discovery.errors import DiscoveryError, FormulaError
from discovery.space.ids import candidate_ids


class SpaceError(DiscoveryError, ValueError):
    """A candidate-space definition that cannot be used (names the field or token at fault)."""


class TemplateError(SpaceError):
    """A framework template or site definition that cannot be used (names the token or field)."""


# --------------------------------------------------------------------------------------------
# Oxidation states (the tables: discovery.chemistry.oxidation, shared with the redox features)

#: Tolerance of the charge-balance test, in elementary charges per formula unit.
_CHARGE_TOL = 1e-6


def _fixed_states(
    composition: Mapping[str, float], cation_states: Mapping[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    """(lowest, highest) state of each element of the fixed (non-site, non-ion) template part."""
    present = set(composition)
    anions = [el for el in present if el in ANION_STATES]
    strongest = max((ANION_ELECTRONEGATIVITY[el] for el in anions), default=-math.inf)
    cyanide = {"C", "N"} <= present and "O" not in present and "F" not in present
    out: dict[str, tuple[float, float]] = {}
    for el in composition:
        if cyanide and el == "C":
            out[el] = (CYANIDE_CARBON_STATE, CYANIDE_CARBON_STATE)
        elif cyanide and el == "N":
            out[el] = (ANION_STATES["N"], ANION_STATES["N"])
        elif el in POLYANION_STATES and ANION_ELECTRONEGATIVITY[el] < strongest:
            out[el] = (POLYANION_STATES[el], POLYANION_STATES[el])
        elif el in ANION_STATES:
            out[el] = (ANION_STATES[el], ANION_STATES[el])
        elif el in cation_states:
            out[el] = cation_states[el]
        else:
            raise TemplateError(_no_state(el))
    return out


def _site_states(el: str, cation_states: Mapping[str, tuple[float, float]]) -> tuple[float, float]:
    """(lowest, highest) state of an element on a substitution site."""
    if el in cation_states:
        return cation_states[el]
    if el in ANION_STATES:
        return (ANION_STATES[el], ANION_STATES[el])
    raise TemplateError(_no_state(el))


def _no_state(el: str) -> str:
    return (
        f"no oxidation state known for element {el!r}: pass oxidation_states={{{el!r}: (low, high)}} "
        "or switch charge balance off for this framework"
    )


# --------------------------------------------------------------------------------------------
# Templates

ION_TOKEN = "A_x"
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)")


@dataclass(frozen=True)
class TemplateToken:
    """One token of a template.

    Attributes:
        kind: ``"ion"`` (the ``A_x`` site), ``"site"`` (a substitution site) or ``"fixed"``.
        text: the token as written.
        label: the site label (``"site"`` tokens only).
        multiplicity: atoms of the site per formula unit (``"site"`` tokens; 1 otherwise).
        composition: ``(element, amount)`` of a fixed formula group (``"fixed"`` tokens only).
    """

    kind: Literal["ion", "site", "fixed"]
    text: str
    label: str | None = None
    multiplicity: float = 1.0
    composition: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Template:
    """A parsed framework template (:func:`parse_template`).

    Attributes:
        text: the template as written.
        tokens: its tokens in order; exactly one is the ion site.
    """

    text: str
    tokens: tuple[TemplateToken, ...]

    @property
    def ion_position(self) -> int:
        """Index of the ``A_x`` token in :attr:`tokens`."""
        return next(i for i, t in enumerate(self.tokens) if t.kind == "ion")

    @property
    def site_labels(self) -> tuple[str, ...]:
        """Distinct site labels in order of first appearance."""
        return tuple(dict.fromkeys(t.label for t in self.tokens if t.label is not None))

    def site_multiplicity(self, label: str) -> float:
        """Total atoms of site ``label`` per formula unit (a label may appear more than once)."""
        return sum(t.multiplicity for t in self.tokens if t.label == label)

    @property
    def fixed_composition(self) -> dict[str, float]:
        """Amounts of the fixed formula groups together, ``{element: atoms per formula unit}``."""
        out: dict[str, float] = {}
        for token in self.tokens:
            for el, amount in token.composition:
                out[el] = out.get(el, 0.0) + amount
        return out


def _site_token(token: str, labels: Collection[str]) -> tuple[str, float] | None:
    """(label, multiplicity) when ``token`` is a site label, possibly followed by a number."""
    if token in labels:
        return token, 1.0
    for label in sorted(labels, key=len, reverse=True):  # the longest label that fits
        rest = token[len(label) :]
        if token.startswith(label) and rest and _NUMBER.fullmatch(rest):
            return label, float(rest)
    return None


def parse_template(text: str, sites: Collection[str] | None = None) -> Template:
    """Parse a framework template such as ``"A_x M2 (PO4)3"``.

    Tokens are separated by whitespace. ``A_x`` (exactly once) is the working-ion site. With
    ``sites`` given, a token is first resolved as a site: a label itself (``M1``), or a label
    followed by a multiplicity (``M2`` = site ``M`` twice, when ``M`` is a label and ``M2`` is not;
    the longest matching label wins). Any other token must be a chemical formula group
    (``O2``, ``(PO4)3``, ``P``), kept as written in the generated formulas. Without ``sites``,
    a token that is not a formula is a site whose label is the token without its trailing number.

    Args:
        text: the template.
        sites: the site labels of the framework (keys of its ``sites`` mapping).

    Raises:
        TemplateError: (a :class:`~discovery.errors.DiscoveryError`) naming the template and the
            token at fault: no or several ``A_x``, a token that is neither a site nor a formula,
            a zero multiplicity, no site at all.
    """
    if not isinstance(text, str) or not text.strip():
        raise TemplateError(f"template {text!r}: empty template (write e.g. 'A_x M O2')")
    words = text.split()
    tokens: list[TemplateToken] = []
    for word in words:
        if word == ION_TOKEN:
            tokens.append(TemplateToken("ion", word))
            continue
        site = _site_token(word, sites) if sites is not None else None
        if site is None:
            try:
                composition = parse_formula(word)
            except FormulaError as exc:
                if sites is not None:
                    known = ", ".join(sorted(sites)) or "none"
                    raise TemplateError(
                        f"template {text!r}: token {word!r} is neither a site (labels: {known}) "
                        f"nor a chemical formula ({exc.reason})"
                    ) from None
                match = re.fullmatch(rf"(.*?[A-Za-z_])({_NUMBER.pattern})?", word)
                if match is None or word.startswith(("(", "[")):
                    raise TemplateError(
                        f"template {text!r}: token {word!r} is neither a site label nor a "
                        f"chemical formula ({exc.reason})"
                    ) from None
                site = (match.group(1), float(match.group(2)) if match.group(2) else 1.0)
            else:
                tokens.append(TemplateToken("fixed", word, composition=tuple(composition.items())))
                continue
        label, multiplicity = site
        if not multiplicity > 0 or not math.isfinite(multiplicity):
            raise TemplateError(
                f"template {text!r}: token {word!r}: the site multiplicity must be > 0"
            )
        tokens.append(TemplateToken("site", word, label=label, multiplicity=multiplicity))
    n_ion = sum(t.kind == "ion" for t in tokens)
    if n_ion != 1:
        raise TemplateError(
            f"template {text!r}: expected exactly one working-ion token {ION_TOKEN!r}, found {n_ion}"
        )
    if not any(t.kind == "site" for t in tokens):
        raise TemplateError(f"template {text!r}: no substitution site (write e.g. 'A_x M O2')")
    return Template(text=text, tokens=tuple(tokens))


def charge_range(
    template: Template,
    mixing: Mapping[str, Mapping[str, float]],
    oxidation_states: Mapping[str, tuple[float, float]] = OXIDATION_STATES,
) -> tuple[float, float]:
    """Lowest and highest total charge of one framework (template without ``A_x``), in e per f.u.

    Every atom takes a state in its (lowest, highest) range, so the framework's total charge can
    be anything in [Σ nᵢ·lowᵢ, Σ nᵢ·highᵢ] (mixed valence allowed). A candidate inserting x ions
    of valence z is charge balanced when 0 (charged) and -x·z (discharged) both lie in that range,
    i.e. ``low <= -x·z`` and ``high >= 0``.

    Args:
        template: the parsed template.
        mixing: ``{site label: {element: fraction}}`` (fractions of one site sum to 1).
        oxidation_states: cation ranges (:data:`OXIDATION_STATES` by default).
    """
    low = high = 0.0
    for el, (lo, hi) in _fixed_states(template.fixed_composition, oxidation_states).items():
        amount = template.fixed_composition[el]
        low += amount * lo
        high += amount * hi
    for label in template.site_labels:
        multiplicity = template.site_multiplicity(label)
        for el, fraction in mixing[label].items():
            lo, hi = _site_states(el, oxidation_states)
            low += multiplicity * fraction * lo
            high += multiplicity * fraction * hi
    return low, high


# --------------------------------------------------------------------------------------------
# Frameworks and site mixings


class SiteLike(Protocol):
    """What :func:`generate_pool` reads from a site definition."""

    @property
    def elements(self) -> Sequence[str]: ...
    @property
    def max_elements(self) -> int: ...
    @property
    def fraction_step(self) -> float: ...


class FrameworkLike(Protocol):
    """What :func:`generate_pool` reads from a framework definition.

    An optional ``charge_balance`` attribute (default True) switches the charge filter off.
    """

    @property
    def template(self) -> str: ...
    @property
    def sites(self) -> Mapping[str, SiteLike]: ...
    @property
    def x(self) -> Sequence[float]: ...
    @property
    def name(self) -> str | None: ...


#: Largest number of site-mixing combinations of one framework (before the charge filter).
MAX_FRAMEWORK_COMBINATIONS = 20_000_000
#: Largest number of (framework combination, ion, x) triples tested for charge balance at once.
MAX_ENUMERATED = 100_000_000
#: Largest pool generated when ``max_candidates`` is not given (its features alone take ~40 GiB).
DEFAULT_MAX_CANDIDATES = 20_000_000


@dataclass(frozen=True)
class _SiteMixings:
    """Every mixing of one site: element indices (into ``elements``) and grid counts per group."""

    elements: tuple[str, ...]
    steps: int  # grid points: a fraction is count / steps
    groups: tuple[tuple[NDArray[np.intp], NDArray[np.intp]], ...]  # (m_k, k) indices, counts
    low: NDArray[np.float64]  # shape (n,): Σ fraction·low state per site atom
    high: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.low)

    def dense(self, column: Mapping[str, int], n_columns: int) -> NDArray[np.float64]:
        """Fractions of every mixing as a dense (n, n_columns) matrix, element el in column[el]."""
        out = np.zeros((len(self), n_columns))
        columns = np.array([column[el] for el in self.elements], dtype=np.intp)
        start = 0
        for index, count in self.groups:
            rows = np.arange(start, start + len(index))[:, None]
            out[rows, columns[index]] = count / self.steps
            start += len(index)
        return out

    def pieces(self, multiplicity: float) -> NDArray[np.object_]:
        """The formula text of every mixing for a site of the given multiplicity (``"Fe0.5Mn0.5"``)."""
        symbols = np.array(self.elements, dtype=object)
        amounts = np.array(
            [_amount_text(j / self.steps * multiplicity) for j in range(self.steps + 1)],
            dtype=object,
        )
        table = symbols[:, None] + amounts[None, :]  # (n_elements, steps + 1)
        parts = []
        for index, count in self.groups:
            acc = table[index[:, 0], count[:, 0]].copy()
            for c in range(1, index.shape[1]):
                acc += table[index[:, c], count[:, c]]
            parts.append(acc)
        return np.concatenate(parts) if parts else np.empty(0, dtype=object)


def _amount_text(amount: float) -> str:
    """An amount as written in a generated formula: omitted when 1, at most 6 decimals."""
    value = round(amount, 6)
    if value == 1.0:
        return ""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _count_mixings(n_elements: int, max_elements: int, steps: int) -> int:
    return sum(
        math.comb(n_elements, k) * math.comb(steps - 1, k - 1)
        for k in range(1, min(max_elements, n_elements, steps) + 1)
    )


def _site_steps(where: str, site: Any) -> tuple[tuple[str, ...], int, int]:
    """Validated (elements, max_elements, steps) of a site definition."""
    elements = tuple(getattr(site, "elements", ()) or ())
    if not elements:
        raise TemplateError(f"{where}.elements: a site needs at least one element")
    for el in elements:
        if el not in ELEMENTS:
            raise TemplateError(f"{where}.elements: {el!r} is not an element symbol")
    duplicates = sorted({el for el in elements if elements.count(el) > 1})
    if duplicates:
        raise TemplateError(f"{where}.elements: listed more than once: {', '.join(duplicates)}")
    max_elements = getattr(site, "max_elements", 1)
    if not isinstance(max_elements, int) or max_elements < 1:
        raise TemplateError(f"{where}.max_elements: must be an integer >= 1, got {max_elements!r}")
    step = float(getattr(site, "fraction_step", 1.0))
    steps = round(1.0 / step) if 0.0 < step <= 1.0 else 0
    if steps < 1 or abs(steps * step - 1.0) > 1e-9:
        raise TemplateError(
            f"{where}.fraction_step: must be 1/n for a whole number n (0.5, 0.25, 0.1, ...), "
            f"got {step!r}"
        )
    return elements, max_elements, steps


def _enumerate_site(
    elements: tuple[str, ...],
    max_elements: int,
    steps: int,
    states: Mapping[str, tuple[float, float]] | None,
) -> _SiteMixings:
    """Every mixing: subsets of up to max_elements elements × positive counts summing to steps."""
    n = len(elements)
    if states is None:
        lo_el = hi_el = np.zeros(n)
    else:
        ranges = np.array([_site_states(el, states) for el in elements], dtype=np.float64)
        lo_el, hi_el = ranges[:, 0], ranges[:, 1]
    groups = []
    lows, highs = [], []
    for k in range(1, min(max_elements, n, steps) + 1):
        subsets = np.array(list(itertools.combinations(range(n), k)), dtype=np.intp)
        cuts = np.array(list(itertools.combinations(range(1, steps), k - 1)), dtype=np.intp)
        cuts = cuts.reshape(math.comb(steps - 1, k - 1), k - 1)
        edges = np.concatenate(
            [np.zeros((len(cuts), 1), np.intp), cuts, np.full((len(cuts), 1), steps, np.intp)],
            axis=1,
        )
        counts = np.diff(edges, axis=1)  # (C, k), each row positive, summing to steps
        index = np.repeat(subsets, len(counts), axis=0)
        count = np.tile(counts, (len(subsets), 1))
        groups.append((index, count))
        fraction = count / steps
        lows.append((fraction * lo_el[index]).sum(axis=1))
        highs.append((fraction * hi_el[index]).sum(axis=1))
    return _SiteMixings(
        elements=elements,
        steps=steps,
        groups=tuple(groups),
        low=np.concatenate(lows),
        high=np.concatenate(highs),
    )


def _framework_name(framework: Any) -> str:
    name = getattr(framework, "name", None)
    return str(name) if name else str(framework.template)


def _framework_frame(
    index: int,
    framework: Any,
    ions: Sequence[str],
    ion_table: IonTable,
    states: Mapping[str, tuple[float, float]],
    budget: int,
) -> pd.DataFrame:
    """The charge-balanced candidates of one framework (not yet de-duplicated, no ids)."""
    where = f"frameworks[{index}]"
    sites: Mapping[str, Any] = getattr(framework, "sites", None) or {}
    try:
        template = parse_template(framework.template, list(sites))
    except TemplateError as exc:
        raise TemplateError(f"{where}.template: {exc}") from None
    unused = [label for label in sites if label not in template.site_labels]
    if unused:
        raise TemplateError(
            f"{where}.sites: site(s) {', '.join(map(repr, unused))} not used in template "
            f"{template.text!r}"
        )
    xs = [float(x) for x in (getattr(framework, "x", None) or ())]
    if not xs:
        raise TemplateError(f"{where}.x: give at least one insertion amount x > 0")
    for x in xs:
        if not (math.isfinite(x) and 1e-6 <= x <= 1e6):
            raise TemplateError(f"{where}.x: insertion amounts must be in [1e-6, 1e6], got {x!r}")
    xs = list(dict.fromkeys(xs))
    balance = bool(getattr(framework, "charge_balance", True))

    labels = template.site_labels
    site_args = {label: _site_steps(f"{where}.sites.{label}", sites[label]) for label in labels}
    sizes = [
        _count_mixings(e, m, s) for e, m, s in ((len(a[0]), a[1], a[2]) for a in site_args.values())
    ]
    n_frameworks = math.prod(sizes)
    n_rows = n_frameworks * len(ions) * len(xs)
    if n_frameworks > MAX_FRAMEWORK_COMBINATIONS or n_rows > MAX_ENUMERATED:
        raise TemplateError(
            f"{where}: {n_frameworks:,} site mixings × {len(ions)} ion(s) × {len(xs)} x = "
            f"{n_rows:,} candidates before the charge filter, more than can be enumerated "
            f"({MAX_FRAMEWORK_COMBINATIONS:,} mixings, {MAX_ENUMERATED:,} candidates); use fewer "
            "elements per site, a coarser fraction_step or a smaller max_elements"
        )
    mixings = {}
    for label in labels:
        try:
            mixings[label] = _enumerate_site(*site_args[label], states if balance else None)
        except TemplateError as exc:
            raise TemplateError(f"{where}.sites.{label}.elements: {exc}") from None

    # Charge range of every framework combination, shape (n_frameworks,).
    shape = tuple(len(mixings[label]) for label in labels)
    low = np.zeros(shape)
    high = np.zeros(shape)
    if balance:
        fixed = template.fixed_composition
        try:
            fixed_states = _fixed_states(fixed, states)
        except TemplateError as exc:
            raise TemplateError(f"{where}.template: {exc}") from None
        for el, (lo, hi) in fixed_states.items():
            low += fixed[el] * lo
            high += fixed[el] * hi
    for axis, label in enumerate(labels):
        view = [1] * len(labels)
        view[axis] = -1
        multiplicity = template.site_multiplicity(label)
        low = low + multiplicity * mixings[label].low.reshape(view)
        high = high + multiplicity * mixings[label].high.reshape(view)
    low, high = low.reshape(-1), high.reshape(-1)

    # (ion, x) pairs and the charge each inserts, shape (n_ions · n_x,).
    valence = np.array([ion_table[ion].valence for ion in ions], dtype=np.float64)
    inserted = (valence[:, None] * np.array(xs)[None, :]).reshape(-1)
    if balance:
        keep = (high >= -_CHARGE_TOL)[:, None] & (low[:, None] <= -inserted[None, :] + _CHARGE_TOL)
    else:
        keep = np.ones((len(low), len(inserted)), dtype=bool)
    fw_rows, pair = np.nonzero(keep)
    if len(fw_rows) > budget:
        raise TemplateError(
            f"{where}: the pool would exceed max_candidates ({len(fw_rows):,} charge-balanced "
            f"candidates from this framework, {budget:,} left); narrow the sites or raise the limit"
        )
    used, fw_code = np.unique(fw_rows, return_inverse=True)
    fw_code = fw_code.reshape(-1)
    combo = np.unravel_index(used, shape)  # mixing index per site, for the used frameworks
    site_tokens = [
        (labels.index(t.label), t.label, t) for t in template.tokens if t.label is not None
    ]

    # Formulas are written token by token ("Li0.5Fe0.5Mn0.5O2", "Na3V2(PO4)3"), except where an
    # element would be written twice (the ion also on a site, one element on two sites): those
    # are written merged and flat, the ion first, so that every formula parses on the fast path.
    symbols = _render_order(
        ions, [*template.fixed_composition, *(el for m in mixings.values() for el in m.elements)]
    )
    column = {el: i for i, el in enumerate(symbols)}
    occurrences = np.zeros((len(used), len(symbols)), dtype=np.int16)
    dense = np.zeros((len(used), len(symbols)))
    for token in template.tokens:
        for el, amount in token.composition:
            occurrences[:, column[el]] += 1
            dense[:, column[el]] += amount
    for axis, label, token in site_tokens:
        fractions = mixings[label].dense(column, len(symbols))[combo[axis]]
        occurrences += fractions > 0
        dense += token.multiplicity * fractions
    repeat_charge: NDArray[np.bool_] = np.any(occurrences > 1, axis=1)
    ion_column = np.array([column[ion] for ion in ions for _ in xs], dtype=np.intp)
    repeat = repeat_charge[fw_code] | (occurrences[fw_code, ion_column[pair]] > 0)

    pieces = {}
    for _, label, token in site_tokens:
        if (label, token.multiplicity) not in pieces:
            pieces[label, token.multiplicity] = mixings[label].pieces(token.multiplicity)

    def concat(tokens: Iterable[TemplateToken]) -> NDArray[np.object_]:
        out = np.full(len(used), "", dtype=object)
        for token in tokens:
            if token.label is not None:
                axis = labels.index(token.label)
                out += pieces[token.label, token.multiplicity][combo[axis]]
            else:
                out += token.text
        return out

    position = template.ion_position
    prefix = concat(template.tokens[:position])
    suffix = concat(template.tokens[position + 1 :])
    charge = prefix + suffix
    charge[repeat_charge] = _render_dense(dense[repeat_charge], symbols)
    ion_names = np.array([ion for ion in ions for _ in xs], dtype=object)
    ion_pieces = np.array([ion + _amount_text(x) for ion in ions for x in xs], dtype=object)
    x_values = np.array([x for _ in ions for x in xs], dtype=np.float64)
    discharge = prefix[fw_code] + ion_pieces[pair] + suffix[fw_code]
    rows = np.flatnonzero(repeat)
    if len(rows):
        merged = dense[fw_code[rows]]
        merged[np.arange(len(rows)), ion_column[pair[rows]]] += x_values[pair[rows]]
        discharge[rows] = _render_dense(merged, symbols)
    return pd.DataFrame(
        {
            "working_ion": ion_names[pair],
            "formula_charge": charge[fw_code],
            "formula_discharge": discharge,
            "framework": _framework_name(framework),
            "x": x_values[pair],
        }
    )


def _render_order(ions: Sequence[str], elements: Iterable[str]) -> list[str]:
    """The order merged formulas write elements in: the ions, then by electronegativity and Z."""
    from discovery.features.magpie import MAGPIE_PROPERTIES, magpie_table

    electronegativity = magpie_table()[:, MAGPIE_PROPERTIES.index("Electronegativity")]
    others = [el for el in dict.fromkeys(elements) if el not in ions]
    others.sort(key=lambda el: (electronegativity[ELEMENTS.index(el)], ELEMENTS.index(el)))
    return [*ions, *others]


def _render_dense(amounts: NDArray[np.float64], symbols: Sequence[str]) -> NDArray[np.object_]:
    """Flat formulas of (r, s) amounts over ``symbols`` (zero amounts left out), shape (r,)."""
    out = np.full(len(amounts), "", dtype=object)
    for c, symbol in enumerate(symbols):
        rows = np.flatnonzero(amounts[:, c] > 0)
        if len(rows):
            values, inverse = np.unique(amounts[rows, c], return_inverse=True)
            text = np.array([symbol + _amount_text(float(v)) for v in values], dtype=object)
            out[rows] = out[rows] + text[inverse.reshape(-1)]
    return out


def generate_pool(
    frameworks: Sequence[FrameworkLike],
    ions: Sequence[str],
    ion_table: IonTable = DEFAULT_IONS,
    max_candidates: int | None = None,
    *,
    oxidation_states: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Every charge-balanced candidate of the frameworks × site mixings × ions × x, de-duplicated.

    Args:
        frameworks: objects with ``template`` (str), ``sites`` (mapping label -> object with
            ``elements`` list[str], ``max_elements`` int, ``fraction_step`` float), ``x``
            (insertion amounts, ions per formula unit) and ``name`` (str or None: the template is
            used). An optional attribute ``charge_balance`` (default True) switches the filter off
            for one framework (e.g. intermetallic hosts).
        ions: working-ion symbols of ``ion_table``.
        ion_table: valences of the ions.
        max_candidates: refuse (:class:`TemplateError`) a pool with more charge-balanced
            candidates than this, counted before de-duplication and before any formula is
            written; None = :data:`DEFAULT_MAX_CANDIDATES`. Independently, a framework with more
            than :data:`MAX_FRAMEWORK_COMBINATIONS` site-mixing combinations or
            :data:`MAX_ENUMERATED` (combination, ion, x) triples is refused.
        oxidation_states: cation ranges that extend or replace entries of
            :data:`OXIDATION_STATES`.

    Returns:
        DataFrame with columns ``candidate_id``, ``working_ion``, ``formula_charge``,
        ``formula_discharge``, ``framework`` (the framework's name), ``x`` (ions per formula
        unit); rows framework by framework, then by site mixing, ion and x; the first of rows with
        the same id kept; a fresh RangeIndex.

    Raises:
        TemplateError: a bad template or site definition (naming ``frameworks[i]`` and the field).
        UnknownIonError: an ion not in ``ion_table``.
    """
    ions = list(dict.fromkeys(ions))
    if not ions:
        raise TemplateError("ions: give at least one working ion")
    for ion in ions:
        _ = ion_table[ion]  # raises UnknownIonError
    states = {**OXIDATION_STATES, **(oxidation_states or {})}
    frames = []
    total = 0
    for index, framework in enumerate(frameworks):
        limit = DEFAULT_MAX_CANDIDATES if max_candidates is None else max_candidates
        budget = limit - total
        frame = _framework_frame(index, framework, ions, ion_table, states, budget)
        total += len(frame)
        frames.append(frame)
    columns = ["working_ion", "formula_charge", "formula_discharge", "framework", "x"]
    pool = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    pool.insert(0, "candidate_id", candidate_ids(pool))
    pool = pool[~pool["candidate_id"].duplicated()].reset_index(drop=True)
    return pool
