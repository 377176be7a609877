"""The replay oracle: answers candidates from a labeled electrode table (a retrospective campaign).

A candidate is answered when a row of the table has the same candidate id, i.e. the same working
ion and the same charged and discharged compositions however they are written; when several rows
share an id, the first in table order answers. A candidate the table does not hold gets a
``failed`` result ("not in the replay table"), never a made-up number. Values are replayed as
recorded, negative voltages included (the electrode does not work against the ion metal: a real
answer the campaign should learn from). Answers are immediate and job
ids are derived from candidate ids, so submitting twice returns the same job and a resumed campaign
finds its jobs again.
"""

from __future__ import annotations

__all__ = ["ReplayOptions", "ReplayOracle"]

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from discovery.errors import DiscoveryError
from discovery.oracles.base import (
    JobStatus,
    OracleContext,
    Request,
    Result,
    parse_options,
    utc_now,
)

#: Numeric columns answered by default, when the table has them (Materials Project names and units).
DEFAULT_OUTCOMES = (
    "average_voltage",
    "capacity_grav",
    "capacity_vol",
    "energy_grav",
    "energy_vol",
    "max_delta_volume",
    "stability_charge",
    "stability_discharge",
)
_PREFIX = "replay:"
_UNMATCHABLE = ("unparsable formula", "unknown ion", "frameworks do not match", "no ions inserted")


class ReplayOptions(BaseModel):
    """``oracle.options`` of the replay oracle."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(description="Labeled electrode table (CSV or parquet) that answers.")
    outcomes: list[str] | None = Field(
        default=None,
        description="Columns to answer with; default: those of DEFAULT_OUTCOMES the table has.",
    )
    drop_invalid: bool = Field(
        default=True, description="Skip invalid rows of the table instead of refusing it."
    )
    fidelity: str = Field(
        default="mp-gga",
        min_length=1,
        description="Fidelity of the table's values (Materials Project GGA/GGA+U by default).",
    )


class ReplayOracle:
    """Answers from a labeled table; see the module docstring."""

    def __init__(
        self,
        table: pd.DataFrame,
        outcomes: Sequence[str] | None = None,
        name: str = "replay",
        fidelity: str = "mp-gga",
    ) -> None:
        from discovery.space import candidate_ids

        self.name = name
        self.fidelity = fidelity
        cols = (
            list(outcomes) if outcomes is not None else [c for c in DEFAULT_OUTCOMES if c in table]
        )
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise DiscoveryError(f"replay table has no column(s) {missing}")
        ids = candidate_ids(table)
        first = ~pd.Series(ids).duplicated().to_numpy()
        values = table.loc[first, cols].apply(pd.to_numeric, errors="coerce")
        self.outcomes = cols
        self._rows: dict[str, dict[str, float]] = {
            cid: {c: float(v) for c, v in zip(cols, row) if np.isfinite(v)}
            for cid, row in zip(ids[first], values.to_numpy(dtype=np.float64))
        }

    @classmethod
    def from_options(cls, options: dict[str, Any], context: OracleContext) -> ReplayOracle:
        from discovery.data import read_table, validate_electrodes

        opts = parse_options(ReplayOptions, options, "replay")
        path = context.path(opts.path)
        table = read_table(path)
        report = validate_electrodes(table, source=str(path), ions=context.ions, labeled=False)
        # Rows that cannot be matched (formulas, ion) are refused; recorded values are replayed
        # as they are, negative voltages and energies included.
        unmatched = sorted({p.row for p in report.problems if p.kind in _UNMATCHABLE})
        if unmatched and not opts.drop_invalid:
            raise report.error()
        return cls(
            table.drop(index=table.index[unmatched]).reset_index(drop=True),
            opts.outcomes,
            fidelity=opts.fidelity,
        )

    def __contains__(self, candidate_id: str) -> bool:
        return candidate_id in self._rows

    def submit(self, requests: Sequence[Request]) -> list[str]:
        return [_PREFIX + r.candidate_id for r in requests]

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        return {j: ("done" if j[len(_PREFIX) :] in self._rows else "failed") for j in job_ids}

    def collect(self, job_ids: Sequence[str]) -> list[Result]:
        now = utc_now()
        out = []
        for job in job_ids:
            cid = job[len(_PREFIX) :]
            row = self._rows.get(cid)
            out.append(
                Result(
                    candidate_id=cid,
                    job_id=job,
                    status="ok" if row is not None else "failed",
                    values=row or {},
                    oracle=self.name,
                    fidelity=self.fidelity,
                    started_at=now,
                    finished_at=now,
                    message="" if row is not None else "not in the replay table",
                )
            )
        return out

    def close(self) -> None:
        pass
