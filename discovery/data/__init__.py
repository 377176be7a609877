"""Electrode tables: loading, validation with row-level messages, and Materials Project downloads."""

from __future__ import annotations

from discovery.data.fetch import fetch_insertion_electrodes
from discovery.data.splits import framework_labels, group_split, random_split
from discovery.data.table import (
    ELECTRODE_COLUMNS,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
    ValidationReport,
    load_electrodes,
    read_table,
    validate_electrodes,
    write_table,
)

__all__ = [
    "ELECTRODE_COLUMNS",
    "NUMERIC_COLUMNS",
    "REQUIRED_COLUMNS",
    "ValidationReport",
    "fetch_insertion_electrodes",
    "framework_labels",
    "group_split",
    "load_electrodes",
    "random_split",
    "read_table",
    "validate_electrodes",
    "write_table",
]
