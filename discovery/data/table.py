"""Loading and validating insertion-electrode tables that use Materials Project column names.

One row is one voltage pair of an electrode framework: ``battery_id``, ``working_ion``,
``formula_charge``, ``formula_discharge``, ``average_voltage`` (V vs the ion metal) and optionally
``capacity_grav`` (mAh/g), ``capacity_vol`` (mAh/cm3), ``energy_grav`` (Wh/kg), ``energy_vol`` (Wh/L),
``max_delta_volume`` (fraction), ``stability_charge`` / ``stability_discharge`` (eV/atom above hull).
"""

from __future__ import annotations

__all__ = [
    "ELECTRODE_COLUMNS",
    "NUMERIC_COLUMNS",
    "REQUIRED_COLUMNS",
    "ValidationReport",
    "load_electrodes",
    "read_table",
    "validate_electrodes",
    "write_table",
]

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from discovery.chemistry.capacity import insertion_pair
from discovery.chemistry.ions import DEFAULT_IONS, IonTable
from discovery.errors import (
    DataValidationError,
    DiscoveryError,
    FormulaError,
    MissingColumnsError,
    RowProblem,
    UnknownIonError,
)

logger = logging.getLogger(__name__)

#: Columns every electrode table must have.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "battery_id",
    "working_ion",
    "formula_charge",
    "formula_discharge",
)
#: Numeric Materials Project columns, with their units.
NUMERIC_COLUMNS: dict[str, str] = {
    "average_voltage": "V",
    "capacity_grav": "mAh/g",
    "capacity_vol": "mAh/cm3",
    "energy_grav": "Wh/kg",
    "energy_vol": "Wh/L",
    "max_delta_volume": "fraction",
    "stability_charge": "eV/atom",
    "stability_discharge": "eV/atom",
}
#: All Materials Project electrode columns in their usual order.
ELECTRODE_COLUMNS: tuple[str, ...] = (
    "battery_id",
    "formula_charge",
    "id_charge",
    "stability_charge",
    "formula_discharge",
    "id_discharge",
    "stability_discharge",
    "average_voltage",
    "capacity_grav",
    "capacity_vol",
    "energy_grav",
    "energy_vol",
    "max_delta_volume",
    "working_ion",
)
_CANDIDATE_COLUMNS = ("working_ion", "formula_charge", "formula_discharge")
_NONNEGATIVE = ("capacity_grav", "capacity_vol", "energy_vol")
#: Highest average voltage accepted in a labeled table (V vs the ion metal). Materials Project
#: voltages stay below 13 V; a larger value is almost always a value in mV.
MAX_VOLTAGE_V = 20.0
#: The columns that identify a voltage pair: a labeled table may hold each combination once.
_PAIR_KEY = ("battery_id", "working_ion", "formula_charge", "formula_discharge")
_MANGLED = re.compile(r"^(?P<base>.+)\.(?P<n>[1-9][0-9]*)$")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or parquet file into a DataFrame; a missing or unreadable file names the path."""
    path = Path(path)
    if not path.is_file():
        raise DiscoveryError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt", ".gz"):
            frame = pd.read_csv(path, dtype={"battery_id": str, "working_ion": str})
            _refuse_repeated_columns(path, [str(c) for c in frame.columns])
            return frame
    except UnicodeDecodeError as exc:
        raise DiscoveryError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save the table as CSV (UTF-8) or parquet"
        ) from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DiscoveryError(f"{path}: cannot read table: {exc}") from exc
    raise DiscoveryError(f"{path}: unknown table format {suffix!r} (use .csv or .parquet)")


def _refuse_repeated_columns(path: Path, columns: list[str]) -> None:
    """pandas renames a repeated header ``x`` to ``x.1``; a table must name each column once."""
    repeated = sorted(
        {
            m["base"]
            for c in columns
            if (m := _MANGLED.match(c)) is not None and m["base"] in columns
        }
    )
    if repeated:
        raise DiscoveryError(
            f"{path}:1 column(s) {', '.join(map(repr, repeated))} appear more than once in the "
            "header; keep one column of each name"
        )


def write_table(frame: pd.DataFrame, path: str | Path, *, spreadsheet_safe: bool = False) -> Path:
    """Write a DataFrame as CSV or parquet, chosen by the file suffix; returns the path.

    ``spreadsheet_safe``: a CSV file for people to open, written by
    :func:`discovery._csvsafe.write_csv` (text cells that a spreadsheet would run as formulas get a
    leading ``'``, CRLF row ends); tables meant to be read back keep their text as it is.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    elif spreadsheet_safe:
        from discovery._csvsafe import write_csv

        write_csv(frame, path)
    else:
        frame.to_csv(path, index=False)
    return path


@dataclass
class ValidationReport:
    """The outcome of validating a table: every problem, and which rows are invalid."""

    source: str
    rows: int
    problems: list[RowProblem] = field(default_factory=list)
    csv_lines: bool = True

    @property
    def invalid_rows(self) -> list[int]:
        """0-based positions of rows with at least one problem, sorted."""
        return sorted({p.row for p in self.problems})

    def counts(self) -> Counter[str]:
        """Number of invalid rows per problem kind (a row counts once, under its first problem)."""
        first: dict[int, str] = {}
        for p in self.problems:
            first.setdefault(p.row, p.kind)
        return Counter(first.values())

    def summary(self) -> str:
        """One line: rows read, rows invalid, and the counts per kind."""
        bad = len(self.invalid_rows)
        parts = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.counts().items()))
        return f"{self.source}: {self.rows} rows, {self.rows - bad} valid, {bad} invalid" + (
            f" ({parts})" if parts else ""
        )

    def error(self) -> DataValidationError:
        return DataValidationError(self.source, self.problems, csv_lines=self.csv_lines)


def validate_electrodes(
    frame: pd.DataFrame,
    *,
    source: str = "<table>",
    ions: IonTable = DEFAULT_IONS,
    labeled: bool = True,
    csv_lines: bool = True,
) -> ValidationReport:
    """Check every row of an electrode table and report what is wrong where.

    Checked: required columns present; ``battery_id`` not empty; the working ion is known; both
    formulas given and parse; the frameworks of the two formulas match and the discharged formula
    holds more ions than the charged one; numeric columns hold finite numbers; capacities are not
    negative. A ``labeled`` table (training data) also needs ``battery_id`` and a finite
    ``average_voltage`` from 0 to :data:`MAX_VOLTAGE_V` on every row, and each voltage pair
    (``battery_id``, ion, formulas) once; an unlabeled one (candidates to predict) needs neither.
    """
    required = [*REQUIRED_COLUMNS, "average_voltage"] if labeled else list(_CANDIDATE_COLUMNS)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise MissingColumnsError(source, missing, [str(c) for c in frame.columns])

    report = ValidationReport(source=source, rows=len(frame), csv_lines=csv_lines)
    add = report.problems.append

    numeric: dict[str, np.ndarray] = {}
    for column in NUMERIC_COLUMNS:
        if column not in frame.columns:
            continue
        raw = frame[column]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        numeric[column] = values
        text = raw.notna().to_numpy() & np.isnan(values)
        for bad in np.flatnonzero(text).tolist():
            add(RowProblem(bad, column, _not_a_number(raw.iloc[bad]), "non-numeric value"))

    ids = frame["battery_id"].to_numpy(dtype=object) if labeled else None
    ion_col = frame["working_ion"].to_numpy(dtype=object)
    charge_col = frame["formula_charge"].to_numpy(dtype=object)
    discharge_col = frame["formula_discharge"].to_numpy(dtype=object)
    for row in range(len(frame)):
        if ids is not None and (not isinstance(ids[row], str) or not ids[row].strip()):
            add(RowProblem(row, "battery_id", "empty battery_id", "missing battery_id"))
        ion = ion_col[row]
        if not isinstance(ion, str) or ion not in ions:
            add(
                RowProblem(row, "working_ion", str(UnknownIonError(ion, list(ions))), "unknown ion")
            )
            continue
        empty = [
            column
            for column, cells in (
                ("formula_charge", charge_col),
                ("formula_discharge", discharge_col),
            )
            if cells[row] is None or (isinstance(cells[row], float) and np.isnan(cells[row]))
        ]
        if empty:
            for column in empty:
                add(RowProblem(row, column, "empty (a formula is required)", "missing formula"))
            continue
        try:
            insertion_pair(charge_col[row], discharge_col[row], ion, ions)
        except FormulaError as exc:
            column, kind = _classify(exc, charge_col[row], discharge_col[row])
            add(RowProblem(row, column, str(exc), kind))

    if labeled:
        voltage = numeric["average_voltage"]
        for bad in np.flatnonzero(
            np.isnan(voltage) & frame["average_voltage"].isna().to_numpy()
        ).tolist():
            add(RowProblem(bad, "average_voltage", "missing (NaN) voltage", "invalid voltage"))
        for bad in np.flatnonzero(np.isinf(voltage) | (voltage < 0)).tolist():
            add(
                RowProblem(
                    bad,
                    "average_voltage",
                    f"voltage must be finite and >= 0 V, got {voltage[bad]:g} V",
                    "invalid voltage",
                )
            )
        for bad in np.flatnonzero(np.isfinite(voltage) & (voltage > MAX_VOLTAGE_V)).tolist():
            add(
                RowProblem(
                    bad,
                    "average_voltage",
                    f"voltage {voltage[bad]:g} V is above {MAX_VOLTAGE_V:g} V; the column is in V "
                    "(is this value in mV? divide it by 1000)",
                    "invalid voltage",
                )
            )
        if ids is not None:
            key = frame[list(_PAIR_KEY)]
            repeats = np.flatnonzero(key.duplicated(keep="first").to_numpy()).tolist()
            if repeats:
                first_of = {
                    tuple(k): i
                    for i, k in reversed(list(enumerate(key.itertuples(index=False, name=None))))
                }
                for bad in repeats:
                    first = first_of[tuple(key.iloc[bad])]
                    where = f"line {first + 2}" if csv_lines else f"row {first}"
                    add(
                        RowProblem(
                            bad,
                            "battery_id",
                            f"{ids[bad]!r} repeats the voltage pair of {where} (same battery_id, "
                            "working_ion and formulas); keep one row per pair",
                            "duplicate pair",
                        )
                    )
    for column in _NONNEGATIVE:
        if column in numeric:
            for bad in np.flatnonzero(numeric[column] < 0).tolist():
                add(
                    RowProblem(
                        bad,
                        column,
                        f"must be >= 0 {NUMERIC_COLUMNS[column]}, got {numeric[column][bad]:g}",
                        "negative capacity",
                    )
                )
    report.problems.sort(key=lambda p: p.row)
    return report


def _not_a_number(value: object) -> str:
    """Why a numeric cell was refused: text, or a number too large for a float (``1e400``)."""
    try:
        number = float(str(value))
    except ValueError:
        return f"not a number: {value!r}"
    return (
        f"not a finite number: {value!r}" if not np.isfinite(number) else f"not a number: {value!r}"
    )


def _classify(exc: FormulaError, charge: object, discharge: object) -> tuple[str, str]:
    """Map a formula error of a pair to the column at fault and a problem kind."""
    if exc.formula is charge:
        return "formula_charge", "unparsable formula"
    if exc.formula is discharge:
        return "formula_discharge", "unparsable formula"
    if "frameworks do not match" in exc.reason or "no host framework" in exc.reason:
        return "formula_discharge", "frameworks do not match"
    return "formula_discharge", "no ions inserted"


def load_electrodes(
    source: str | Path | pd.DataFrame,
    *,
    drop_invalid: bool = False,
    ions: IonTable = DEFAULT_IONS,
    labeled: bool = True,
) -> pd.DataFrame:
    """Load and validate an electrode table (CSV, parquet or a DataFrame).

    By default any invalid row raises :class:`~discovery.errors.DataValidationError` listing each
    row (CSV line number) and reason. With ``drop_invalid=True`` invalid rows are dropped, the counts
    per reason are logged, and the result's ``attrs["validation"]`` holds the summary line.
    ``labeled=False`` validates a candidate table (no ``battery_id`` or voltage needed).
    The returned frame has a fresh ``RangeIndex``.
    """
    if isinstance(source, pd.DataFrame):
        frame, name, csv_lines = source, "<table>", False
    else:
        frame, name = read_table(source), str(source)
        csv_lines = Path(source).suffix.lower() not in (".parquet", ".pq")
    report = validate_electrodes(
        frame, source=name, ions=ions, labeled=labeled, csv_lines=csv_lines
    )
    if report.problems and not drop_invalid:
        raise report.error()
    if report.problems:
        logger.warning("dropped invalid rows: %s", report.summary())
        frame = frame.drop(frame.index[report.invalid_rows])
    out = frame.reset_index(drop=True)
    out.attrs["validation"] = report.summary()
    return out
