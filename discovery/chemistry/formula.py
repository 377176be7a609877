"""Fast chemical-formula parsing, compatible with pymatgen's ``Composition`` for electrode formulas.

Parsing is the bottleneck of featurizing large candidate pools, so this module parses with two
regular expressions (a flat fast path and a bracket-aware path) instead of building pymatgen objects.
``tests/test_formula.py`` checks it against ``pymatgen.core.Composition`` on every formula of the
shared data and on generated formulas.
"""

from __future__ import annotations

__all__ = ["ELEMENTS", "MAX_AMOUNT", "framework", "parse_formula"]

import math
import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache

from discovery.errors import FormulaError

# Symbols of elements 1-103 (H to Lr): the elements with tabulated Magpie properties.
ELEMENTS: tuple[str, ...] = tuple(
    """H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br
    Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er
    Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md
    No Lr""".split()
)
_ELEMENT_SET = frozenset(ELEMENTS)

#: Largest amount of one element accepted in a formula (guards against absurd coefficients).
MAX_AMOUNT = 1.0e6

# ASCII only (re.ASCII): Python's \d and \s also match fullwidth and other Unicode digits and
# spaces, which float() would then accept; a formula is ASCII letters, digits, '.', brackets and
# spaces, and anything else is named in the error.
_NUM = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_FLAT = re.compile(rf"(?:[A-Z][a-z]?{_NUM}?)+", re.ASCII)
_FLAT_TOKEN = re.compile(rf"([A-Z][a-z]?)({_NUM})?", re.ASCII)
_TOKEN = re.compile(rf"([A-Z][a-z]?)({_NUM})?|([(\[])|([)\]])({_NUM})?|([ \t]+)", re.ASCII)
_CLOSE_FOR = {")": "(", "]": "["}
#: Letters of other scripts that look like the Latin letters of element symbols.
_LOOKALIKES = dict(
    zip(
        "АВЕКМНОРСТХаеорсхукіІјЈ" + "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧοκν",
        "ABEKMHOPCTXaeopcxykiIjJ" + "ABEZHIKMNOPTYXokv",
    )
)


def _unexpected(formula: str, pos: int) -> FormulaError:
    """The error for a character no token starts with, naming it by code point when it is not
    plain ASCII (a Cyrillic 'О' prints exactly like the letter O)."""
    char = formula[pos]
    if char.isascii() and char.isprintable():
        return FormulaError(formula, f"unexpected character {char!r} at position {pos}")
    name = unicodedata.name(char, "") or (
        "a control character" if unicodedata.category(char).startswith("C") else "unnamed"
    )
    like = _LOOKALIKES.get(char)
    if like is None:
        folded = unicodedata.normalize("NFKC", char)
        like = folded if folded.isascii() and folded.isprintable() and folded.strip() else None
    hint = f", which looks like {like!r}" if like else ""
    return FormulaError(
        formula,
        f"unexpected character {char!r} (U+{ord(char):04X} {name}{hint}) at position {pos}; "
        "formulas are written in ASCII letters, digits, '.', brackets and spaces",
    )


def _amount(text: str | None, formula: str) -> float:
    if not text:
        return 1.0
    value = float(text)
    if not math.isfinite(value) or value > MAX_AMOUNT:
        shown = text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"
        raise FormulaError(formula, f"amount {shown} is out of range (at most {MAX_AMOUNT:g})")
    return value


def _add(out: dict[str, float], symbol: str, amount: float, formula: str) -> None:
    if symbol not in _ELEMENT_SET:
        raise FormulaError(formula, f"unknown element {symbol!r}")
    total = out.get(symbol, 0.0) + amount
    if total > MAX_AMOUNT:
        raise FormulaError(formula, f"amount of {symbol} exceeds {MAX_AMOUNT:g}")
    out[symbol] = total


def _parse_nested(formula: str) -> dict[str, float]:
    stack: list[tuple[str, dict[str, float]]] = [("", {})]
    pos = 0
    end = len(formula)
    while pos < end:
        match = _TOKEN.match(formula, pos)
        if match is None:
            raise _unexpected(formula, pos)
        pos = match.end()
        symbol, amount, opening, closing, group_amount, _space = match.groups()
        if symbol is not None:
            _add(stack[-1][1], symbol, _amount(amount, formula), formula)
        elif opening is not None:
            stack.append((opening, {}))
        elif closing is not None:
            if len(stack) == 1 or stack[-1][0] != _CLOSE_FOR[closing]:
                raise FormulaError(formula, f"unbalanced {closing!r} at position {match.start()}")
            _, group = stack.pop()
            if not group:
                raise FormulaError(formula, f"empty group before position {match.start()}")
            factor = _amount(group_amount, formula)
            for el, amt in group.items():
                _add(stack[-1][1], el, amt * factor, formula)
    if len(stack) != 1:
        raise FormulaError(formula, f"unclosed {stack[-1][0]!r}")
    return stack[0][1]


@lru_cache(maxsize=65536)
def _parse_cached(formula: str) -> tuple[tuple[str, float], ...]:
    out: dict[str, float] = {}
    if _FLAT.fullmatch(formula):
        for symbol, amount in _FLAT_TOKEN.findall(formula):
            _add(out, symbol, _amount(amount, formula), formula)
    else:
        out = _parse_nested(formula)
    out = {el: amt for el, amt in out.items() if amt > 0.0}
    if not out:
        raise FormulaError(formula, "no element with a positive amount")
    return tuple(out.items())


def parse_formula(formula: str) -> dict[str, float]:
    """Parse a formula such as ``"Li5Fe4(PO4)4"`` into ``{element: amount}`` (atoms per formula unit).

    Amounts of repeated elements are summed and bracket groups multiplied out, as pymatgen does;
    elements keep their first-appearance order. Raises :class:`~discovery.errors.FormulaError`
    naming the formula and the reason (empty string, unknown element, unbalanced brackets, an amount
    that is not a finite number up to :data:`MAX_AMOUNT`).
    """
    if not isinstance(formula, str):
        raise FormulaError(formula, f"expected a string, got {type(formula).__name__}")
    text = formula.strip()
    if not text:
        raise FormulaError(formula, "empty formula")
    if not (text.isascii() and text.isprintable()):
        # Named first, whatever else is wrong: 'Rоb' with a Cyrillic 'о' is not "unknown element R".
        for pos, char in enumerate(text):
            if char != "\t" and not (char.isascii() and char.isprintable()):
                raise _unexpected(text, pos)
    return dict(_parse_cached(text))


def framework(amounts: Mapping[str, float], ion: str) -> dict[str, float]:
    """The amounts of a parsed formula without the working ``ion``: its host framework."""
    return {el: a for el, a in amounts.items() if el != ion}
