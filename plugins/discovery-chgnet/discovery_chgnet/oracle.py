"""The CHGNet oracle: average voltage and volume change of candidate electrodes from CHGNet
relaxations of prototype structures (a DFT proxy that runs offline).

For each request the oracle builds the charged and discharged structures
(:func:`discovery_chgnet.prototypes.plan_pair`) and the working-ion metal, relaxes the three
(cell and positions) with the pretrained CHGNet in a pool of worker processes, and answers

    average_voltage [V] = −[E(discharged) − E(charged) − x·E(ion metal)] / (x·z)

with E in eV per framework formula unit (the ion metal in eV per atom), x the ions inserted per
framework formula unit and z the ion's valence from the campaign's ion table;
``max_delta_volume`` = max(V_c, V_d) / min(V_c, V_d) − 1 with V the relaxed volumes per framework
formula unit (Materials Project's definition, a fraction); ``capacity_grav`` (mAh/g) and
``energy_grav`` (Wh/kg) from the formulas (:mod:`discovery.chemistry`).

Protocol: :meth:`CHGNetOracle.submit` returns at once with job ids derived from the idempotency keys
(``chgnet:<candidate id>:<hash>``), so a repeated submission returns the same job. Each request is
persisted as ``<workdir>/oracle/chgnet/jobs/<job>.json`` (with its result once there is one; JSON,
never a pickle; a candidate id that could not be part of one file name there is refused), so
a new process polling a job it does not know, a resumed campaign, reloads the request and
restarts what is missing. Finished relaxations are cached under ``<workdir>/oracle/chgnet/cache/``
(see :mod:`discovery_chgnet.relax`), so a shared ion metal or charged framework is relaxed once.
:meth:`~CHGNetOracle.poll` and :meth:`~CHGNetOracle.collect` never block. A candidate no prototype
fits, a cell over ``max_atoms``, and a relaxation that raises, does not converge within
``max_steps`` or gives a non-finite energy, are ``failed`` results that say why, never a number.
"""

from __future__ import annotations

__all__ = ["CHGNetOptions", "CHGNetOracle"]

import hashlib
import json
import math
import multiprocessing
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from discovery.chemistry import DEFAULT_IONS, IonTable, insertion_pair
from discovery.errors import DiscoveryError
from discovery.oracles.base import (
    JobStatus,
    OracleContext,
    Request,
    Result,
    parse_options,
    utc_now,
)
from pydantic import BaseModel, ConfigDict, Field

from discovery_chgnet.prototypes import PairPlan, ion_metal_structure, plan_pair
from discovery_chgnet.relax import (
    MODEL_NAME,
    RelaxSettings,
    chgnet_version,
    read_record,
    structure_key,
)

_PREFIX = "chgnet:"
#: A job file's name (before ``.json``): no path separator, no NUL, not starting with a dot.
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
_ROLES = ("charge", "discharge", "metal")
#: A relaxation whose worker process dies is started again this many times before it fails.
_RETRIES = 1


class CHGNetOptions(BaseModel):
    """``oracle.options`` of the CHGNet oracle."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(
        default=2, ge=1, description="Worker processes running relaxations, one torch thread each."
    )
    fmax_ev_per_a: float = Field(
        default=0.1,
        gt=0,
        description="A relaxation has converged when every force (and the cell's stress term) is below this, in eV/Å.",
    )
    max_steps: int = Field(
        default=300,
        ge=1,
        description="Most optimizer steps per relaxation; one not converged by then is a failed result.",
    )
    max_atoms: int = Field(
        default=48,
        ge=1,
        description="Most atoms in a built cell; a candidate whose ordering needs more is a failed result.",
    )
    cache_dir: Path | None = Field(
        default=None,
        description=(
            "Folder of finished relaxations (may be shared between campaigns); a relative path "
            "resolves against the campaign file's folder. Default: <workdir>/oracle/chgnet/cache."
        ),
    )
    max_volume_expansion: float = Field(
        default=0.5,
        gt=0,
        description=(
            "A relaxation whose cell grows by more than this fraction of its starting volume is a "
            "failed result (layers came apart; CHGNet has no dispersion term)."
        ),
    )
    optimizer: Literal["BFGS", "LBFGS", "FIRE"] = Field(
        default="BFGS",
        description="ASE optimizer of CHGNet's StructOptimizer (cell and positions relax together).",
    )
    device: Literal["cpu", "cuda"] = Field(
        default="cpu", description="Where CHGNet runs in the workers."
    )


@dataclass
class _Job:
    """One candidate's calculation: its request, the three relaxations, and its result."""

    job_id: str
    request: dict[str, Any]
    submitted_at: str
    plan: PairPlan | None = None
    tasks: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    result: Result | None = None


class CHGNetOracle:
    """Answers candidates with CHGNet relaxations; see the module docstring."""

    fidelity = "chgnet"

    def __init__(
        self,
        workdir: str | Path,
        ions: IonTable = DEFAULT_IONS,
        options: CHGNetOptions | None = None,
        *,
        cache_dir: str | Path | None = None,
        name: str = "chgnet",
    ) -> None:
        """``workdir``: the campaign's work directory (jobs and, by default, the cache live under
        ``workdir/oracle/chgnet``); ``cache_dir`` overrides ``options.cache_dir``."""
        self.name = name
        self.ions = ions
        self.options = options or CHGNetOptions()
        root = Path(workdir) / "oracle" / "chgnet"
        self.jobs_dir = root / "jobs"
        chosen = cache_dir if cache_dir is not None else self.options.cache_dir
        self.cache_dir = Path(chosen) if chosen is not None else root / "cache"
        self.settings = RelaxSettings(
            self.options.fmax_ev_per_a,
            self.options.max_steps,
            self.options.optimizer,
            self.options.max_volume_expansion,
        )
        self.relaxations_submitted = 0
        self._jobs: dict[str, _Job] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self._futures: dict[str, Future[dict[str, Any]]] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._attempts: dict[str, int] = {}

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: OracleContext) -> CHGNetOracle:
        """The oracle of a campaign file's ``oracle.options`` (errors name the field)."""
        opts = parse_options(CHGNetOptions, options, "chgnet")
        cache_dir = context.path(opts.cache_dir) if opts.cache_dir is not None else None
        return cls(context.workdir, context.ions, opts, cache_dir=cache_dir)

    # ------------------------------------------------------------------ protocol
    def submit(self, requests: Sequence[Request]) -> list[str]:
        """Persist and start one job per request; a known idempotency key returns its job.

        Raises:
            DiscoveryError: a candidate id that cannot be part of a file name (checked for the
                whole batch before any job is saved or started).
        """
        for request in requests:
            self._job_path(_job_id(request.candidate_id, request.idempotency_key))
        out = []
        for request in requests:
            job_id = _job_id(request.candidate_id, request.idempotency_key)
            if job_id not in self._jobs:
                job = self._load(job_id)
                if job is None:
                    job = _Job(
                        job_id,
                        {
                            "candidate_id": request.candidate_id,
                            "working_ion": request.working_ion,
                            "formula_charge": request.formula_charge,
                            "formula_discharge": request.formula_discharge,
                            "idempotency_key": request.idempotency_key,
                            "round": request.round,
                        },
                        utc_now(),
                    )
                    self._save(job)
                self._jobs[job_id] = job
                self._start(job)
            out.append(job_id)
        return out

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """``done`` / ``failed`` once answered, else ``running`` or ``pending``; never blocks."""
        out: dict[str, JobStatus] = {}
        for job_id in job_ids:
            job = self._job(job_id)
            if job is None:
                out[job_id] = "failed"
                continue
            self._refresh(job)
            if job.result is not None:
                out[job_id] = "done" if job.result.status == "ok" else "failed"
            elif any(
                self._futures[k].running() for k, _ in job.tasks.values() if k in self._futures
            ):
                out[job_id] = "running"
            else:
                out[job_id] = "pending"
        return out

    def collect(self, job_ids: Sequence[str]) -> list[Result]:
        """Results of the answered jobs among ``job_ids``; never blocks."""
        out = []
        for job_id in job_ids:
            job = self._job(job_id)
            if job is None:
                now = utc_now()
                out.append(
                    Result(
                        _candidate_of(job_id),
                        job_id,
                        "failed",
                        {},
                        self.name,
                        self.fidelity,
                        now,
                        now,
                        "unknown job id: its request is not in the oracle's jobs folder "
                        "(oracle/chgnet/jobs in the work directory)",
                    )
                )
                continue
            self._refresh(job)
            if job.result is not None:
                out.append(job.result)
        return out

    def close(self) -> None:
        """Stop the workers (a running relaxation is abandoned; its job restarts next time)."""
        self._discard_pool()

    def _discard_pool(self) -> None:
        """Shut the worker pool down, terminating running relaxations; forget their futures."""
        pool, self._pool = self._pool, None
        if pool is not None:
            # the executor's own processes (private, but the only way to stop a running task)
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in procs:
                if process.is_alive():
                    process.terminate()
            for process in procs:
                process.join(timeout=10)
        self._futures.clear()

    # ------------------------------------------------------------------ jobs
    def _job(self, job_id: str) -> _Job | None:
        """A job by id: in memory, else reloaded from its file and restarted (a resumed run)."""
        job = self._jobs.get(job_id)
        if job is None:
            job = self._load(job_id)
            if job is None:
                return None
            self._jobs[job_id] = job
            self._start(job)
        return job

    def _job_path(self, job_id: str) -> Path:
        """``jobs/<job id with ':' as '_'>.json``; a job id that could not be one file name in the
        jobs folder (a path separator, ``..``, a NUL byte, ...) is a :class:`DiscoveryError`."""
        name = job_id.replace(":", "_")
        if not _FILE_NAME.fullmatch(name):
            raise DiscoveryError(
                f"chgnet oracle: job {job_id!r} cannot name a file in {self.jobs_dir}: a candidate "
                "id may hold only letters, digits, '.', '_', '-' and ':'"
            )
        return self.jobs_dir / (name + ".json")

    def _save(self, job: _Job) -> None:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "job_id": job.job_id,
            "request": job.request,
            "submitted_at": job.submitted_at,
            "result": None if job.result is None else _result_dict(job.result),
        }
        path = self._job_path(job.job_id)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)

    def _load(self, job_id: str) -> _Job | None:
        """The job saved in its JSON file, or None (unknown id, no file, or not a job's JSON)."""
        try:
            data = json.loads(self._job_path(job_id).read_text())
            result = data.get("result")
            return _Job(
                job_id,
                dict(data["request"]),
                str(data["submitted_at"]),
                result=None if result is None else Result(**result),
            )
        except (OSError, ValueError, TypeError, KeyError, AttributeError, DiscoveryError):
            # unreadable, not JSON, or JSON of another shape (a damaged or foreign file)
            return None

    def _start(self, job: _Job) -> None:
        """Plan the job's structures and hand the relaxations not yet known to the workers."""
        if job.result is not None:
            return
        if job.plan is None:
            req = job.request
            try:
                plan = plan_pair(
                    req["working_ion"],
                    req["formula_charge"],
                    req["formula_discharge"],
                    self.ions,
                    self.options.max_atoms,
                )
                charged, discharged = plan.structures()
                metal = ion_metal_structure(req["working_ion"])
            except DiscoveryError as exc:
                self._finish(job, "failed", {}, str(exc))
                return
            job.plan = plan
            for role, structure in zip(_ROLES, (charged, discharged, metal)):
                job.tasks[role] = (structure_key(structure, self.settings), structure.as_dict())
        for key, structure in job.tasks.values():
            if key in self._records or key in self._futures:
                continue
            cached = read_record(self.cache_dir, key)
            if cached is not None:
                self._records[key] = cached
                continue
            self._futures[key] = self._executor().submit(
                _relax_task, key, structure, self.settings, str(self.cache_dir), self.options.device
            )
            self.relaxations_submitted += 1

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context(
                "forkserver" if "forkserver" in methods else "spawn"
            )
            self._pool = ProcessPoolExecutor(
                max_workers=self.options.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.options.device,),
            )
        return self._pool

    def _refresh(self, job: _Job) -> None:
        """Take in finished relaxations; answer the job once all three are known."""
        if job.result is not None:
            return
        if not job.tasks:  # a job restored after close(): plan and start it again
            self._start(job)
            if job.result is not None:
                return
        for key, _ in job.tasks.values():
            if key in self._records:
                continue
            future = self._futures.get(key)
            if future is None:
                self._start(job)  # its worker pool was closed: start the relaxation again
                continue
            if future.done():
                del self._futures[key]
                try:
                    self._records[key] = future.result()
                except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                    self._attempts[key] = self._attempts.get(key, 0) + 1
                    self._discard_pool()
                    if self._attempts[key] <= _RETRIES:
                        self._start(job)  # a fresh pool, one more try
                        continue
                    self._records[key] = {
                        "key": key,
                        "status": "failed",
                        "message": f"the worker process died {self._attempts[key]} times ({exc})",
                    }
                except Exception as exc:
                    self._records[key] = {
                        "key": key,
                        "status": "failed",
                        "message": f"the worker failed: {type(exc).__name__}: {exc}",
                    }
        if all(key in self._records for key, _ in job.tasks.values()):
            self._answer(job)

    def _answer(self, job: _Job) -> None:
        plan = job.plan
        assert plan is not None
        records = {role: self._records[job.tasks[role][0]] for role in _ROLES}
        for role in _ROLES:
            rec = records[role]
            if rec.get("status") != "ok":
                what = {
                    "charge": "charged structure",
                    "discharge": "discharged structure",
                    "metal": f"{plan.ion} metal",
                }[role]
                self._finish(
                    job,
                    "failed",
                    {},
                    f"CHGNet relaxation of the {what} ({rec.get('formula', '?')}, "
                    f"{rec.get('n_atoms', '?')} atoms) failed: {rec.get('message', '')}",
                )
                return
        charge, discharge, metal = (records[r] for r in _ROLES)
        e_c = charge["energy_ev"] / plan.charge.formula_units
        e_d = discharge["energy_ev"] / plan.discharge.formula_units
        mu = metal["energy_ev"] / metal["n_atoms"]
        dx = plan.x_inserted
        voltage = -(e_d - e_c - dx * mu) / (dx * plan.valence)
        v_c = charge["volume_a3"] / plan.charge.formula_units
        v_d = discharge["volume_a3"] / plan.discharge.formula_units
        req = job.request
        capacity = insertion_pair(
            req["formula_charge"], req["formula_discharge"], req["working_ion"], self.ions
        ).capacity_grav_mah_g
        values = {
            "average_voltage": voltage,
            "max_delta_volume": max(v_c, v_d) / min(v_c, v_d) - 1.0,
            "capacity_grav": capacity,
            "energy_grav": voltage * capacity,
        }
        if not all(math.isfinite(v) for v in values.values()):
            self._finish(job, "failed", {}, f"non-finite result {values}")
            return
        note = (
            f"CHGNet {MODEL_NAME} (chgnet {chgnet_version()}), {plan.prototype.name}: "
            f"E = {e_c:.4f} eV (charged, {charge['n_atoms']} atoms, {charge['steps']} steps) and "
            f"{e_d:.4f} eV (discharged, {discharge['n_atoms']} atoms, {discharge['steps']} steps) "
            f"per formula unit, {plan.ion} metal {mu:.4f} eV/atom, x = {dx:g}"
        )
        self._finish(job, "ok", values, note)

    def _finish(self, job: _Job, status: str, values: dict[str, float], message: str) -> None:
        job.result = Result(
            candidate_id=job.request["candidate_id"],
            job_id=job.job_id,
            status="ok" if status == "ok" else "failed",
            values=values,
            oracle=self.name,
            fidelity=self.fidelity,
            started_at=job.submitted_at,
            finished_at=utc_now(),
            message=message,
        )
        self._save(job)


def _job_id(candidate_id: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:12]
    return f"{_PREFIX}{candidate_id}:{digest}"


def _candidate_of(job_id: str) -> str:
    parts = job_id.split(":")
    return parts[1] if len(parts) == 3 and parts[0] + ":" == _PREFIX else job_id


def _result_dict(result: Result) -> dict[str, Any]:
    return {
        "candidate_id": result.candidate_id,
        "job_id": result.job_id,
        "status": result.status,
        "values": dict(result.values),
        "oracle": result.oracle,
        "fidelity": result.fidelity,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "message": result.message,
    }


def _init_worker(device: str) -> None:
    from discovery_chgnet._worker import init_worker

    init_worker(device)


def _relax_task(
    key: str, structure: dict[str, Any], settings: RelaxSettings, cache_dir: str, device: str
) -> dict[str, Any]:
    from discovery_chgnet._worker import relax_task

    return relax_task(key, structure, settings, cache_dir, device)
