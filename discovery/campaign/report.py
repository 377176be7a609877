"""Reading a campaign back: its history, hypervolume trace, status and exports, from the ledger alone.

None of this needs the campaign file, the data files or the lock: a running campaign can be
inspected from another terminal (SQLite's write-ahead log lets readers in while the writer works).

The measured set of a campaign is its in-scope initial rows (shown as round -1, oracle
``initial_data``) plus every ``ok`` oracle result; the Pareto front and the hypervolume are computed
over its rows that satisfy the campaign's outcome constraints (column ``feasible``), with the
reference point fixed at the first model-based round (or given in the file).
"""

from __future__ import annotations

__all__ = [
    "CampaignStatus",
    "campaign_status",
    "export_campaign",
    "failures",
    "history",
    "hypervolume_now",
    "hypervolume_table",
    "open_ledger",
]

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from discovery.campaign.ledger import Ledger
from discovery.errors import DiscoveryError
from discovery.export.pareto import ok_rows

_LEDGER_FILE = "ledger.sqlite"


def open_ledger(workdir: str | Path) -> Ledger:
    """The ledger of an existing work directory (an error naming the directory otherwise)."""
    path = Path(workdir) / _LEDGER_FILE
    if not path.is_file():
        raise DiscoveryError(f"{workdir}: not a campaign work directory (no {_LEDGER_FILE})")
    return Ledger(path)


def _objectives(ledger: Ledger) -> list[SimpleNamespace]:
    spec = ledger.get_meta("spec") or {}
    return [
        SimpleNamespace(name=o["name"], direction=o["direction"])
        for o in spec.get("objectives", [])
    ]


def history(ledger: Ledger) -> pd.DataFrame:
    """Every measured point: in-scope initial rows (round -1) and every oracle answer, in order."""
    initial = ledger.initial()
    spec = ledger.get_meta("spec") or {}
    if len(initial):
        fidelity = (spec.get("initial_data") or {}).get("fidelity", "mp-gga")
        initial = initial.assign(
            round=-1, status="ok", oracle="initial_data", fidelity=fidelity, message=""
        )
    results = ledger.results()
    frame = pd.concat([initial, results], ignore_index=True) if len(initial) else results
    frame["feasible"] = _feasible(frame, spec.get("constraints", []))
    front = [
        "candidate_id",
        "round",
        "status",
        "feasible",
        "working_ion",
        "formula_charge",
        "formula_discharge",
    ]
    return frame[[c for c in front if c in frame] + [c for c in frame if c not in front]]


def _feasible(frame: pd.DataFrame, constraints: list[dict[str, Any]]) -> np.ndarray:
    """Ok rows whose measured values satisfy every outcome constraint (a missing value does not)."""
    keep = frame["status"].eq("ok").to_numpy(bool)
    for c in constraints:
        column = frame[c["name"]] if c["name"] in frame else pd.Series(np.nan, index=frame.index)
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        inside = np.isfinite(values)
        if c.get("min") is not None:
            inside &= np.nan_to_num(values, nan=-np.inf) >= c["min"]
        if c.get("max") is not None:
            inside &= np.nan_to_num(values, nan=np.inf) <= c["max"]
        keep &= inside
    return keep


def reference_point_of(ledger: Ledger, hist: pd.DataFrame) -> tuple[float, ...] | None:
    """The campaign's reference point: explicit, fixed at the first model round, or derived now."""
    from discovery.export import reference_point

    spec = ledger.get_meta("spec") or {}
    explicit = spec.get("reference_point")
    if isinstance(explicit, list):
        return tuple(float(v) for v in explicit)
    stored = ledger.get_meta("reference_point")
    if stored is not None:
        return tuple(float(v) for v in stored)
    objectives = _objectives(ledger)
    ok = ok_rows(hist) if len(hist) else hist
    if len(ok) < 2 or not all(o.name in ok for o in objectives):
        return None
    values = ok[[o.name for o in objectives]].to_numpy(dtype=np.float64)
    return tuple(reference_point(values, [o.direction == "maximize" for o in objectives]))


def hypervolume_now(spec: Any, ledger: Ledger, hist: pd.DataFrame) -> float | None:
    """Hypervolume of the measured set (None before a reference point exists)."""
    from discovery.export import hypervolume

    objectives = _objectives(ledger)
    ref = reference_point_of(ledger, hist)
    ok = ok_rows(hist)
    if ref is None or not all(o.name in ok for o in objectives):
        return None
    values = ok[[o.name for o in objectives]].to_numpy(dtype=np.float64)
    return float(hypervolume(values, ref, [o.direction == "maximize" for o in objectives]))


def hypervolume_table(ledger: Ledger, hist: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per round: cumulative hypervolume, results so far, points on the front."""
    from discovery.export import hypervolume_trace

    hist = history(ledger) if hist is None else hist
    objectives = _objectives(ledger)
    ref = reference_point_of(ledger, hist)
    ok = ok_rows(hist) if len(hist) else hist
    if ref is None or len(ok) == 0 or not all(o.name in ok for o in objectives):
        return pd.DataFrame(columns=["round", "n_results", "n_new", "n_pareto", "hypervolume"])
    return hypervolume_trace(ok, objectives, ref)


@dataclass(frozen=True)
class CampaignStatus:
    """What ``discover status`` prints."""

    name: str
    rounds: pd.DataFrame
    counts: dict[str, int]
    open_jobs: pd.DataFrame
    best: pd.DataFrame
    hypervolume: pd.DataFrame
    reference_point: tuple[float, ...] | None
    front: pd.DataFrame
    failures: pd.DataFrame


def campaign_status(workdir: str | Path, top: int = 3) -> CampaignStatus:
    """The state of the campaign in ``workdir``: rounds, pending jobs, best per ion, hypervolume,
    and the Pareto front of everything measured (as exported to ``pareto.csv``)."""
    ledger = open_ledger(workdir)
    try:
        hist = history(ledger)
        spec = ledger.get_meta("spec") or {}
        ok = ok_rows(hist) if len(hist) else hist
        ok = ok[ok["round"] >= 0] if len(ok) else ok
        key = "energy_grav" if "energy_grav" in ok else None
        if key is not None and len(ok):
            best = (
                ok.sort_values(key, ascending=False)
                .groupby("working_ion", sort=True)
                .head(top)
                .sort_values(["working_ion", key], ascending=[True, False])
            )
        else:
            best = ok.head(0)
        from discovery.export.writers import pareto_rows

        objectives = _objectives(ledger)
        front = (
            pareto_rows(hist, objectives)
            if len(hist) and all(o.name in hist for o in objectives)
            else hist.head(0)
        )
        return CampaignStatus(
            name=str(spec.get("name", "?")),
            rounds=ledger.rounds(),
            counts=ledger.counts(),
            open_jobs=ledger.open_jobs(),
            best=best,
            hypervolume=hypervolume_table(ledger, hist),
            reference_point=reference_point_of(ledger, hist),
            front=front,
            failures=failures(ledger),
        )
    finally:
        ledger.close()


def failures(ledger: Ledger) -> pd.DataFrame:
    """Candidates closed with a ``failed`` result: ``candidate_id``, ``round``, ``job_id``,
    ``message`` (why: the oracle's reason, a rejected answer, or an oracle call that failed after
    its attempts), in the order they were recorded."""
    frame = ledger.results(("failed",))
    return frame[["candidate_id", "round", "job_id", "message"]].reset_index(drop=True)


def export_campaign(workdir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write the Pareto front, history and hypervolume trace (CSV, JSON, PNG, HTML) to ``out_dir``."""
    from discovery.export import write_exports

    ledger = open_ledger(workdir)
    try:
        hist = history(ledger)
        trace = hypervolume_table(ledger, hist)
        name = (ledger.get_meta("spec") or {}).get("name")
        return write_exports(
            hist,
            trace,
            objectives=_objectives(ledger),
            out_dir=Path(out_dir),
            title=name,
            ref_point=reference_point_of(ledger, hist),
        )
    finally:
        ledger.close()
