"""Spreadsheet-safe CSV cells: text that a spreadsheet would run as a formula gets a leading ``'``.

Excel, LibreOffice and Google Sheets treat a cell that begins with ``=``, ``+``, ``-`` or ``@`` (and,
after some imports, a tab or a carriage return) as a formula, which can run commands or send data
away when the CSV file is opened ("CSV injection", OWASP). Every CSV file discovery writes for people
to open (the exports ``history.csv``, ``pareto.csv`` and ``hypervolume.csv``, the lab oracle's
``requests/round-NNN.csv`` and ``discover predict`` output) passes its text cells through
:func:`escape_cell`; numbers are left as numbers, so ``-0.05`` in a numeric column stays ``-0.05``.

A spreadsheet shows an escaped cell without the quote and saves it back without it, so a reader of
such files takes both forms: :func:`unescape_cell` removes the quote that :func:`escape_cell` adds.

Only the start of a cell can make it a formula, as long as every cell stays one cell: Python's csv
writer quotes a cell holding a line feed, but not one holding a bare carriage return unless the
row terminator contains one, and a reader that takes the carriage return for the end of the row
would start a new row, unescaped, with the rest of the cell. :func:`write_csv` therefore ends rows
with CRLF (as RFC 4180 does), so such a cell is quoted. pandas is imported only where it is used.
"""

from __future__ import annotations

__all__ = ["FORMULA_START", "csv_safe_frame", "escape_cell", "unescape_cell", "write_csv"]

import os
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import pandas as pd

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_START: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")

_T = TypeVar("_T")


def escape_cell(value: _T) -> _T | str:
    """``value`` with a leading ``'`` when it is text that begins with :data:`FORMULA_START`;
    any other value (numbers included, negative ones too) is returned as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def unescape_cell(text: str) -> str:
    """The text :func:`escape_cell` was given: ``"'=A1"`` -> ``"=A1"``; other text unchanged."""
    if text.startswith("'") and text[1:].startswith(FORMULA_START):
        return text[1:]
    return text


def csv_safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names pass through :func:`escape_cell`.

    Numeric, boolean and datetime columns are not touched; in a column of mixed values only the
    strings are escaped.
    """
    import pandas as pd

    out = frame.copy()
    for i in range(out.shape[1]):  # by position: column names may repeat
        series = out.iloc[:, i]
        if not (
            pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series)
        ):
            out.isetitem(i, series.astype(object).map(escape_cell))
    out.columns = [str(escape_cell(str(c))) for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``frame`` (without its index) as CSV with escaped text cells (:func:`csv_safe_frame`)
    and CRLF row ends, so that a cell holding a carriage return or a line feed is quoted."""
    csv_safe_frame(frame).to_csv(path, index=False, lineterminator="\r\n")
