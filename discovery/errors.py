"""Domain exceptions: one module, each message names what is at fault and how to fix it.

Every error raised on bad user input derives from :class:`DiscoveryError`; the CLI turns it into
a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

__all__ = [
    "DataValidationError",
    "DiscoveryError",
    "FeatureMismatchError",
    "FetchError",
    "FormulaError",
    "MissingColumnsError",
    "ModelFileError",
    "RowProblem",
    "UnknownIonError",
]

from dataclasses import dataclass


class DiscoveryError(Exception):
    """Base class of every error discovery raises on bad input or a bad environment."""


class FormulaError(DiscoveryError, ValueError):
    """A chemical formula that cannot be parsed (empty, unknown element, bad amount, unbalanced brackets)."""

    def __init__(self, formula: object, reason: str) -> None:
        self.formula = formula
        self.reason = reason
        super().__init__(f"cannot parse formula {_short(formula)}: {reason}")


def _short(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters with the full length noted (a formula cell of
    megabytes must not become a message of megabytes)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[: limit - 4]}...{text[-1]}{size}"


class UnknownIonError(DiscoveryError, KeyError):
    """A working ion that is not in the ion table."""

    def __init__(self, ion: object, known: list[str]) -> None:
        self.ion = ion
        self.known = known
        super().__init__(ion)

    def __str__(self) -> str:
        return (
            f"unknown working ion {self.ion!r}; known ions: {', '.join(self.known)} "
            "(add it to the ion table to use it)"
        )


@dataclass(frozen=True)
class RowProblem:
    """One problem in a table row.

    Attributes:
        row: 0-based position of the data row (a CSV file's line number is ``row + 2``).
        column: the column at fault.
        reason: what is wrong, in words.
        kind: a short category for counting ("unparsable formula", "unknown ion", ...).
    """

    row: int
    column: str
    reason: str
    kind: str

    def where(self, source: str, csv_lines: bool) -> str:
        """``file.csv:14`` for a CSV file (line numbers), ``source row 12`` otherwise."""
        return f"{source}:{self.row + 2}" if csv_lines else f"{source} row {self.row}"


class DataValidationError(DiscoveryError):
    """A table with invalid rows or missing columns; lists each problem with its line or row."""

    def __init__(
        self,
        source: str,
        problems: list[RowProblem],
        *,
        csv_lines: bool = True,
        max_listed: int = 20,
    ) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s)"]
        lines += [
            f"  {p.where(source, csv_lines)} {p.column}: {p.reason}" for p in problems[:max_listed]
        ]
        if len(problems) > max_listed:
            lines.append(f"  ... and {len(problems) - max_listed} more")
        lines.append(
            "  (fix these rows, or load with drop_invalid=True / --drop-invalid to skip them)"
        )
        super().__init__("\n".join(lines))


class MissingColumnsError(DiscoveryError):
    """A table without the columns a step needs."""

    def __init__(self, source: str, missing: list[str], present: list[str]) -> None:
        self.source = source
        self.missing = missing
        super().__init__(
            f"{source}: missing column(s) {', '.join(missing)} "
            f"(found: {', '.join(present) or 'none'}; use Materials Project column names)"
        )


class FeatureMismatchError(DiscoveryError):
    """A saved model used with features that differ from the ones it was trained on."""


class ModelFileError(DiscoveryError):
    """A model directory that is missing, incomplete or written by an incompatible version."""


class FetchError(DiscoveryError):
    """Downloading data from the Materials Project failed (missing key, HTTP error)."""
