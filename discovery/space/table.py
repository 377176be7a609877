"""Candidate pools read from a table: CSV or parquet rows of (working_ion, formula_charge,
formula_discharge), validated with file:line messages, given ids and de-duplicated."""

from __future__ import annotations

__all__ = ["load_pool"]

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from discovery.chemistry.ions import DEFAULT_IONS, IonTable
from discovery.chemistry.pairs import insertion_pairs
from discovery.data.table import read_table, validate_electrodes
from discovery.errors import DataValidationError, DiscoveryError, MissingColumnsError
from discovery.space.ids import candidate_ids

logger = logging.getLogger(__name__)

_COLUMNS = ("working_ion", "formula_charge", "formula_discharge")


def load_pool(
    path: str | Path,
    ions: Sequence[str] | None = None,
    ion_table: IonTable = DEFAULT_IONS,
    *,
    drop_invalid: bool = False,
) -> pd.DataFrame:
    """Read a candidate table, keep the rows of ``ions``, add ids and drop duplicates.

    Every kept row must be a valid insertion pair (known ion, formulas that parse, matching
    frameworks, ions inserted). A valid table is checked in bulk; when any kept row is invalid,
    :func:`~discovery.data.validate_electrodes` lists every problem with its CSV line (parquet:
    row) and :class:`~discovery.errors.DataValidationError` is raised, or, with
    ``drop_invalid``, the invalid rows are dropped and counted in a logged warning and in
    ``attrs["validation"]``.

    Args:
        path: a ``.csv`` or ``.parquet`` file with columns ``working_ion``, ``formula_charge``,
            ``formula_discharge`` (others are kept; a ``candidate_id`` column is recomputed).
        ions: working ions to keep (rows of other ions are dropped unchecked; a row without an ion
            is an error); None keeps every ion.
        ion_table: the ion table.
        drop_invalid: drop invalid rows instead of raising.

    Returns:
        DataFrame with ``candidate_id`` first, then the file's columns; the first row of each id
        kept (``attrs["duplicates"]`` counts the others); a fresh RangeIndex.

    Raises:
        DiscoveryError: unreadable file; MissingColumnsError: a column is missing;
        UnknownIonError: an ion of ``ions`` is not in ``ion_table``;
        DataValidationError: invalid rows, each named by line.
    """
    path = Path(path)
    frame = read_table(path)
    source = str(path)
    csv_lines = path.suffix.lower() not in (".parquet", ".pq")
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise MissingColumnsError(source, missing, [str(c) for c in frame.columns])
    wanted = list(ion_table) if ions is None else list(dict.fromkeys(ions))
    for ion in wanted:
        _ = ion_table[ion]  # raises UnknownIonError
    symbols = frame["working_ion"].to_numpy(dtype=object)
    keep = np.array([not isinstance(s, str) or not s.strip() or s in wanted for s in symbols])
    kept = frame[keep]
    summary = f"{source}: {len(kept)} rows of ions {', '.join(wanted)}, all valid"
    try:
        insertion_pairs(
            kept["formula_charge"], kept["formula_discharge"], kept["working_ion"], ion_table
        )
    except DiscoveryError:
        report = validate_electrodes(
            frame, source=source, ions=ion_table, labeled=False, csv_lines=csv_lines
        )
        problems = [p for p in report.problems if keep[p.row]]
        if not problems:  # not expected: both checks follow insertion_pair
            raise
        if not drop_invalid:
            raise DataValidationError(source, problems, csv_lines=csv_lines) from None
        bad = np.zeros(len(frame), dtype=bool)
        bad[[p.row for p in problems]] = True
        kinds: dict[str, int] = {}
        for row in np.flatnonzero(bad).tolist():
            kind = next(p.kind for p in problems if p.row == row)
            kinds[kind] = kinds.get(kind, 0) + 1
        counts = ", ".join(f"{kind}: {n}" for kind, n in sorted(kinds.items()))
        summary = f"{source}: dropped {int(bad.sum())} invalid of {len(kept)} rows ({counts})"
        logger.warning("%s", summary)
        kept = frame[keep & ~bad]
    if len(kept) < len(frame):
        logger.info("%s: kept %d of %d rows (ions %s)", source, len(kept), len(frame), wanted)
    kept = kept.drop(columns=["candidate_id"], errors="ignore").reset_index(drop=True)
    kept.insert(0, "candidate_id", candidate_ids(kept))
    duplicated = kept["candidate_id"].duplicated()
    pool = kept[~duplicated].reset_index(drop=True)
    pool.attrs["duplicates"] = int(duplicated.sum())
    pool.attrs["validation"] = summary
    if duplicated.any():
        logger.info("%s: dropped %d duplicate candidate(s)", source, int(duplicated.sum()))
    return pool
