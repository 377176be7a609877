"""Vectorized bulk formula parsing: many formulas at once, with exactly the results of ``parse_formula``.

:func:`~discovery.chemistry.formula.parse_formula` costs about 10 µs a formula (regular expressions
and Python dictionaries), which caps featurization at ~100,000 formulas/s. This module tokenizes a
whole batch of formulas at once on a byte array with NumPy (about 1 µs a formula) and returns a
compressed-sparse-row batch ``(counts, elements, amounts)``.

The fast path covers formulas made of element symbols, decimal amounts and round brackets
(``"Li0.5CoO2"``, ``"Li3Fe2(PO4)3"``, ``"Na2Fe(P2O7)0.5"``) without repeated elements. Its results are
bit-for-bit those of ``parse_formula``: amounts are decoded as ``mantissa / 10**k`` with an exact
integer mantissa below 2**53 and an exact power of ten (a correctly rounded division, hence the same
double as ``float(text)``), and group factors are applied innermost first as ``parse_formula`` does.
Every other formula (square brackets, whitespace, a repeated element, a zero or very large amount,
more than 15 digits in a number, anything invalid) goes through ``parse_formula`` itself, which also
raises the errors, so errors and edge cases are exactly those of ``parse_formula``.
"""

from __future__ import annotations

__all__ = ["FormulaBatchError", "ParsedBatch", "parse_distinct", "parse_formulas"]

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.typing import NDArray

from discovery.chemistry.formula import ELEMENTS, MAX_AMOUNT, parse_formula
from discovery.errors import FormulaError

#: Formulas tokenized at once (bounds the temporary byte arrays to a few tens of MB).
_CHUNK = 32768
_MAX_DIGITS = (
    15  # mantissas below 10**15 < 2**53 are exact in float64, and so are their partial sums
)
_POW10 = np.array([10.0**k for k in range(_MAX_DIGITS + 1)])  # exact: 10**k < 2**53 for k <= 15


class FormulaBatchError(FormulaError):
    """A :class:`~discovery.errors.FormulaError` that also says which formula of a batch failed.

    Attributes:
        index: 0-based position of the failing formula in the batch.
    """

    def __init__(self, index: int, error: FormulaError) -> None:
        self.index = index
        super().__init__(error.formula, error.reason)


@dataclass(frozen=True)
class ParsedBatch:
    """Parsed formulas in compressed-sparse-row form.

    Attributes:
        counts: shape (n,), int64: number of distinct elements of each formula (>= 1).
        elements: shape (counts.sum(),), intp: element indices into
            :data:`~discovery.chemistry.formula.ELEMENTS` (0 = H), formula after formula, each in
            first-appearance order (the order of ``parse_formula(f)``).
        amounts: shape (counts.sum(),), float64: atoms per formula unit, aligned with ``elements``.
    """

    counts: NDArray[np.int64]
    elements: NDArray[np.intp]
    amounts: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def offsets(self) -> NDArray[np.int64]:
        """Shape (n + 1,): formula ``i`` is ``elements[offsets[i]:offsets[i + 1]]``."""
        out = np.zeros(len(self.counts) + 1, dtype=np.int64)
        np.cumsum(self.counts, out=out[1:])
        return out

    def as_dicts(self) -> list[dict[str, float]]:
        """The formulas as ``parse_formula`` returns them (slow; for tests and debugging)."""
        offsets = self.offsets
        return [
            {
                ELEMENTS[int(e)]: float(a)
                for e, a in zip(
                    self.elements[offsets[i] : offsets[i + 1]],
                    self.amounts[offsets[i] : offsets[i + 1]],
                    strict=True,
                )
            }
            for i in range(len(self.counts))
        ]


@cache
def _symbol_codes() -> NDArray[np.intp]:
    """Lookup ``128 * first_byte + second_byte_or_0 -> element index`` (-1 for non-elements)."""
    table = np.full(128 * 128, -1, dtype=np.intp)
    for index, symbol in enumerate(ELEMENTS):
        second = ord(symbol[1]) if len(symbol) > 1 else 0
        table[128 * ord(symbol[0]) + second] = index
    return table


def parse_formulas(formulas: Sequence[object] | NDArray[np.object_]) -> ParsedBatch:
    """Parse many formulas at once; the same results as ``[parse_formula(f) for f in formulas]``.

    Args:
        formulas: n formulas (strings; anything else raises as ``parse_formula`` does).

    Returns:
        a :class:`ParsedBatch` of n formulas.

    Raises:
        FormulaBatchError: for the first formula (lowest index) ``parse_formula`` rejects, with the
            same formula and reason, plus its ``index``.
    """
    items = list(formulas)
    parts = [
        _parse_chunk(items[start : start + _CHUNK], start) for start in range(0, len(items), _CHUNK)
    ]
    if not parts:
        return ParsedBatch(
            np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float64)
        )
    if len(parts) == 1:
        return parts[0]
    return ParsedBatch(
        np.concatenate([p.counts for p in parts]),
        np.concatenate([p.elements for p in parts]),
        np.concatenate([p.amounts for p in parts]),
    )


def parse_distinct(
    formulas: Sequence[object] | NDArray[np.object_],
) -> tuple[NDArray[np.intp], ParsedBatch]:
    """Parse each distinct formula once.

    Returns:
        ``(codes, batch)``: formula ``i`` is row ``codes[i]`` of ``batch``.

    Raises:
        FormulaBatchError: for the first formula (lowest position in ``formulas``) that does not
            parse; its ``index`` is that position.
    """
    import pandas as pd

    codes, uniques = pd.factorize(
        np.asarray(formulas, dtype=object).reshape(-1), use_na_sentinel=False
    )
    try:
        batch = parse_formulas(np.asarray(uniques, dtype=object))
    except FormulaBatchError as exc:
        raise FormulaBatchError(int(np.argmax(codes == exc.index)), exc) from None
    return codes.astype(np.intp), batch


def _joined_bytes(items: list[object]) -> tuple[NDArray[np.uint8], int]:
    """The stripped formulas joined by newlines (one after the last) as a byte array.

    A formula that is not an ASCII string without a newline becomes empty, which the fast path
    rejects, so that ``parse_formula`` handles (and usually rejects) it.
    """
    n = len(items)
    try:
        texts = [f.strip() for f in items]  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        texts = [f.strip() if isinstance(f, str) else "" for f in items]
    joined = "\n".join(texts) + "\n"
    if joined.count("\n") != n or not joined.isascii():
        texts = [t if t.isascii() and "\n" not in t else "" for t in texts]
        joined = "\n".join(texts) + "\n"
    return np.frombuffer(joined.encode("ascii"), dtype=np.uint8), n


def _parse_chunk(items: list[object], start: int) -> ParsedBatch:
    b, n = _joined_bytes(items)
    size = len(b)
    upper = (b >= 65) & (b <= 90)
    lower = (b >= 97) & (b <= 122)
    digit = (b >= 48) & (b <= 57)
    dot = b == 46
    opening = b == 40
    closing = b == 41
    sep = b == 10
    num = digit | dot

    def shifted_right(mask: NDArray[np.bool_], first: bool) -> NDArray[np.bool_]:
        """``mask[i - 1]`` at ``i`` (``first`` at 0)."""
        out = np.empty_like(mask)
        out[0] = first
        out[1:] = mask[:-1]
        return out

    def shifted_left(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """``mask[i + 1]`` at ``i`` (False at the end, which is always a newline)."""
        out = np.empty_like(mask)
        out[-1] = False
        out[:-1] = mask[1:]
        return out

    # Formula of each byte: number of newlines strictly before it.
    fid = np.cumsum(sep, dtype=np.int64)
    fid -= sep
    sep_pos = np.flatnonzero(sep)

    bad = ~(upper | lower | num | opening | closing | sep)
    bad |= lower & ~shifted_right(upper, False)  # a lower-case letter continues a symbol only
    bad |= sep & shifted_right(sep, True)  # empty formula
    bad |= opening & ~shifted_left(upper | opening)  # "(" starts a symbol or a group: no "()", "(2"
    run_start = num & ~shifted_right(num, False)
    prev_ok = shifted_right(upper | lower | closing, False)
    bad |= run_start & ~prev_ok  # a number follows a symbol or a ")"

    # Numbers: runs of digits and dots.
    run_id = np.cumsum(run_start, dtype=np.int64) - 1
    n_runs = int(run_id[-1]) + 1 if size else 0
    run_end = num & ~shifted_left(num)
    cum_digits = np.cumsum(digit, dtype=np.int64)
    end_digits = cum_digits[run_end]  # cumulative digit count at the end of each run, run order
    start_digits = cum_digits[run_start] - digit[run_start]
    n_digits = end_digits - start_digits
    dot_pos = np.flatnonzero(dot)
    n_dots = np.bincount(run_id[dot_pos], minlength=n_runs)
    frac_digits = np.zeros(n_runs, dtype=np.int64)
    frac_digits[run_id[dot_pos]] = end_digits[run_id[dot_pos]] - cum_digits[dot_pos]
    run_bad = (n_dots > 1) | (n_digits == 0) | (n_digits > _MAX_DIGITS)
    digit_pos = np.flatnonzero(digit)
    digit_run = run_id[digit_pos]
    place = end_digits[digit_run] - cum_digits[digit_pos]
    place = np.minimum(place, _MAX_DIGITS)  # runs longer than that are rejected anyway
    terms = (b[digit_pos] - 48).astype(np.float64) * _POW10[place]
    mantissa = np.bincount(digit_run, weights=terms, minlength=n_runs)  # exact: integers < 2**53
    run_value = mantissa / _POW10[np.minimum(frac_digits, _MAX_DIGITS)]
    run_bad |= run_value > MAX_AMOUNT
    run_first = np.flatnonzero(run_start)
    bad[run_first[run_bad]] = True
    # A dummy last entry: positions before the first run have run_id -1 (their lookups are masked).
    run_value = np.append(run_value, 1.0)

    # Bracket depth relative to the start of each formula.
    depth = np.cumsum(opening.astype(np.int64) - closing.astype(np.int64))
    base = np.zeros(n, dtype=np.int64)
    base[1:] = depth[sep_pos[:-1]]
    rel = depth - base[fid]
    bad |= rel < 0
    bad |= sep & (rel != 0)

    # Element tokens.
    pos_el = np.flatnonzero(upper)
    has_lower = lower[pos_el + 1]
    code = 128 * b[pos_el].astype(np.intp) + np.where(has_lower, b[pos_el + 1], 0)
    element = _symbol_codes()[code]
    bad[pos_el[element < 0]] = True
    amount_pos = pos_el + 1 + has_lower
    amount = np.where(num[amount_pos], run_value[run_id[amount_pos]], 1.0)

    # Group factors, applied innermost first (as parse_formula multiplies each closed group).
    el_depth = rel[pos_el]
    bound = amount.copy()  # >= every partial amount parse_formula accumulates for this token
    max_depth = int(el_depth.max()) if len(el_depth) else 0
    if max_depth > 0:
        pos_close = np.flatnonzero(closing)
        close_level = rel[pos_close] + 1
        close_factor = np.where(num[pos_close + 1], run_value[run_id[pos_close + 1]], 1.0)
        for level in range(max_depth, 0, -1):
            at_level = close_level == level
            closes = pos_close[at_level]
            if not len(closes):
                continue
            inside = np.flatnonzero(el_depth >= level)
            which = np.minimum(np.searchsorted(closes, pos_el[inside]), len(closes) - 1)
            factor = close_factor[at_level][which]
            amount[inside] *= factor
            bound[inside] *= np.maximum(factor, 1.0)

    bad_formula = np.zeros(n, dtype=bool)
    bad_formula[fid[bad]] = True
    el_fid = fid[pos_el]
    bad_formula[el_fid[(amount <= 0.0) | (bound > MAX_AMOUNT)]] = True
    # A repeated element: parse_formula sums it (possibly inside a group before multiplying).
    key = np.sort(el_fid * 128 + np.maximum(element, 0))
    bad_formula[key[1:][key[1:] == key[:-1]] // 128] = True

    keep = ~bad_formula[el_fid]
    counts = np.bincount(el_fid[keep], minlength=n).astype(np.int64)
    elements = element[keep]
    amounts = amount[keep]
    slow = np.flatnonzero(bad_formula)
    if not len(slow):
        return ParsedBatch(counts, elements, amounts)

    parsed: list[dict[str, float]] = []
    for i in slow:
        try:
            parsed.append(parse_formula(items[i]))  # type: ignore[arg-type]
        except FormulaError as exc:
            raise FormulaBatchError(start + int(i), exc) from None
    counts[slow] = [len(p) for p in parsed]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    out_elements = np.empty(offsets[-1], dtype=np.intp)
    out_amounts = np.empty(offsets[-1], dtype=np.float64)
    fast_fid = el_fid[keep]
    fast_first = np.zeros(n, dtype=np.int64)
    fast_counts = np.where(bad_formula, 0, counts)
    np.cumsum(fast_counts[:-1], out=fast_first[1:])
    dest = offsets[fast_fid] + (np.arange(len(fast_fid)) - fast_first[fast_fid])
    out_elements[dest] = elements
    out_amounts[dest] = amounts
    index = {symbol: k for k, symbol in enumerate(ELEMENTS)}
    for i, p in zip(slow, parsed, strict=True):
        lo = offsets[i]
        out_elements[lo : lo + len(p)] = [index[s] for s in p]
        out_amounts[lo : lo + len(p)] = list(p.values())
    return ParsedBatch(counts, out_elements, out_amounts)
