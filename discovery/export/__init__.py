"""Exports of a campaign's results: Pareto fronts, hypervolume, CSV/JSON tables and plots.

Everything here takes pandas DataFrames (the campaign's result history), never a ledger.
Importing the package costs NumPy and pandas only: BoTorch, matplotlib and plotly are imported
inside the functions that need them.
"""

from __future__ import annotations

from discovery.export.pareto import (
    ObjectiveLike,
    hypervolume,
    hypervolume_trace,
    ok_rows,
    pareto_mask,
    reference_point,
)
from discovery.export.writers import EXPORT_FILES, PARETO_COLUMNS, pareto_rows, write_exports

__all__ = [
    "EXPORT_FILES",
    "PARETO_COLUMNS",
    "ObjectiveLike",
    "hypervolume",
    "hypervolume_trace",
    "ok_rows",
    "pareto_mask",
    "pareto_rows",
    "reference_point",
    "write_exports",
]
