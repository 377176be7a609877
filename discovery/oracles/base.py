"""The oracle protocol: what a campaign asks (requests) and what comes back (results).

An oracle is asynchronous by nature (a DFT job or a lab experiment takes hours): :meth:`Oracle.submit`
hands over a batch and returns one job id per request, :meth:`Oracle.poll` says which jobs are done,
and :meth:`Oracle.collect` returns the results of finished jobs. A synchronous oracle is the special
case whose jobs are done as soon as they are submitted.

Submission is idempotent: every request carries an ``idempotency_key`` (campaign name and candidate
id), and submitting the same key again must return the same job id without starting a second
calculation. The campaign relies on this when it resumes after a crash between handing a batch to
the oracle and recording the job ids.

Faults: the campaign retries a call that raises (anything but a
:class:`~discovery.errors.DiscoveryError`, which stops the run as a configuration error) or that
runs past the campaign's ``oracle.timeout_s``, so ``poll`` and ``collect`` must be safe to repeat
and ``submit`` must honour the idempotency keys. With a timeout the calls run in a worker thread,
and a call that timed out may still be running when the retry starts. After the last attempt the
candidates concerned are recorded as ``failed``. ``collect`` may answer only some of the finished
jobs; the others stay pending and are asked for again.
"""

from __future__ import annotations

__all__ = [
    "JobStatus",
    "Oracle",
    "OracleContext",
    "Request",
    "Result",
    "parse_options",
    "utc_now",
]

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from discovery.chemistry.ions import DEFAULT_IONS, IonTable
from discovery.errors import DiscoveryError

if TYPE_CHECKING:
    from pydantic import BaseModel

#: A job's state as :meth:`Oracle.poll` reports it.
JobStatus = Literal["pending", "running", "done", "failed"]


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC with second resolution."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Request:
    """One candidate electrode sent to an oracle.

    Attributes:
        candidate_id: stable id of the (ion, charged formula, discharged formula) triple.
        working_ion: the inserted ion's symbol.
        formula_charge: the charged (ion-poor) formula.
        formula_discharge: the discharged (ion-rich) formula.
        round: the campaign round that proposed it.
        idempotency_key: submitting the same key twice must not start a second job.
        predicted: the surrogate's prediction at proposal time (``average_voltage_mean`` in V, ...).
    """

    candidate_id: str
    working_ion: str
    formula_charge: str
    formula_discharge: str
    round: int
    idempotency_key: str
    predicted: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """An oracle's answer for one job.

    Attributes:
        candidate_id: the request's candidate id.
        job_id: the id :meth:`Oracle.submit` returned.
        status: ``"ok"`` (values are measurements), ``"failed"`` (the oracle could not answer;
            ``message`` says why, and the candidate is not retried) or ``"rejected"`` (the oracle
            received an answer it cannot vouch for, e.g. a lab's row with a non-numeric voltage;
            ``message`` names where and why; it is recorded and kept out of training, and an oracle
            with ``accepts_corrections`` may send a corrected answer later).
        values: measured outcomes in their units: ``average_voltage`` (V vs the ion metal),
            ``capacity_grav`` (mAh/g), ``energy_grav`` (Wh/kg), ``max_delta_volume`` (fraction),
            ... Missing capacity and energy are filled in from the formulas by the campaign.
        oracle: the oracle's name; ``fidelity``: its fidelity label (``"dft"``, ``"experiment"``,
            ``"replay"``, ...).
        started_at / finished_at: ISO 8601 UTC times of the calculation or experiment.
        message: free text (why it failed, a lab note).
    """

    candidate_id: str
    job_id: str
    status: Literal["ok", "failed", "rejected"]
    values: Mapping[str, float]
    oracle: str
    fidelity: str
    started_at: str
    finished_at: str
    message: str = ""

    def problems(self) -> list[str]:
        """Reasons to reject this result (a malformed result, non-finite or non-numeric values,
        values outside :data:`PLAUSIBLE`); empty when sound."""
        out = self.malformed()
        if not isinstance(self.values, Mapping):
            return out
        for name, value in self.values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                out.append(f"{name}: not a number ({value!r})")
            elif not math.isfinite(value):
                out.append(f"{name}: {value} is not a finite number")
            elif name in PLAUSIBLE and not PLAUSIBLE[name][0] <= value <= PLAUSIBLE[name][1]:
                low, high, unit = PLAUSIBLE[name]
                out.append(f"{name}: {value:g} is out of range ({low:g} to {high:g} {unit})")
        return out

    def malformed(self) -> list[str]:
        """What makes this object no result at all (an oracle plugin's bug): a status other than
        ok/failed/rejected, ``values`` that is not a mapping of names, fields that are not text."""
        out: list[str] = []
        if self.status not in ("ok", "failed", "rejected"):
            out.append(f"status: {self.status!r} is not 'ok', 'failed' or 'rejected'")
        if not isinstance(self.values, Mapping):
            out.append(
                f"values: expected a mapping of outcome names to numbers, got {type(self.values).__name__}"
            )
        elif any(not isinstance(k, str) for k in self.values):
            out.append("values: outcome names must be text")
        for name in ("candidate_id", "job_id", "oracle", "fidelity", "message"):
            value = getattr(self, name)
            if not isinstance(value, str):
                out.append(f"{name}: expected text, got {type(value).__name__}")
        return out

    def as_rejected(self) -> Result:
        """A copy that can be recorded as a rejected answer whatever this one holds (the ledger
        keeps a rejected answer's values as their ``repr``): values as a mapping with text keys,
        text fields as text, status ``rejected``."""
        values = (
            {str(k): v for k, v in self.values.items()}
            if isinstance(self.values, Mapping)
            else {"values": self.values}
        )
        return Result(
            candidate_id=str(self.candidate_id),
            job_id=str(self.job_id),
            status="rejected",
            values=values,
            oracle=str(self.oracle),
            fidelity=str(self.fidelity),
            started_at=str(self.started_at),
            finished_at=str(self.finished_at),
            message=self.message if isinstance(self.message, str) else "",
        )


#: Plausible ranges of outcomes an oracle returns, (low, high, unit): a value outside is a broken
#: calculation or a unit slip (mV for V) and is rejected before it reaches the ledger or training.
PLAUSIBLE: dict[str, tuple[float, float, str]] = {
    "average_voltage": (-20.0, 20.0, "V"),
    "capacity_grav": (0.0, 10000.0, "mAh/g"),
    "energy_grav": (-2.0e5, 2.0e5, "Wh/kg"),
}


@dataclass(frozen=True)
class OracleContext:
    """What an oracle may need from the campaign that creates it.

    Attributes:
        base_dir: the directory of the campaign file (relative option paths resolve against it).
        workdir: the campaign's work directory (an oracle may keep files under ``workdir/oracle``).
        ions: the campaign's ion table.
        seed: the campaign seed.
    """

    base_dir: Path
    workdir: Path
    ions: IonTable = field(default_factory=lambda: DEFAULT_IONS)
    seed: int = 0

    def path(self, path: Path) -> Path:
        """An option path: as given if absolute, else relative to the campaign file's folder."""
        return path if path.is_absolute() else self.base_dir / path


@runtime_checkable
class Oracle(Protocol):
    """What the campaign needs from an oracle (built in or brought by a plugin)."""

    name: str
    fidelity: str

    def submit(self, requests: Sequence[Request]) -> list[str]:
        """Start one job per request (idempotently, see the module docstring); return job ids."""
        ...

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """The state of each job id."""
        ...

    def collect(self, job_ids: Sequence[str]) -> list[Result]:
        """Results of the finished (done or failed) jobs among ``job_ids``; never blocks."""
        ...

    def close(self) -> None:
        """Release resources (processes, files); called once when the campaign stops."""
        ...


M = TypeVar("M", bound="BaseModel")


def parse_options(model: type[M], options: Mapping[str, Any], oracle: str) -> M:
    """Validate an oracle's ``options`` with its pydantic model; errors name ``oracle.options.<field>``."""
    from pydantic import ValidationError

    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        parts = [
            ".".join(["oracle.options", *(str(p) for p in err["loc"])]) + f": {err['msg']}"
            for err in exc.errors()
        ]
        raise DiscoveryError(f"oracle {oracle!r}: " + "; ".join(parts)) from exc
