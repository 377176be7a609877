"""The campaign loop: train, propose, submit, collect, retrain, with every step in the ledger.

A round moves through the states ``started -> proposed -> submitted -> complete`` and each move is
one ledger transaction, so :meth:`Campaign.run` can be killed at any moment and run again on the same
work directory: it finds the first unfinished step and continues from there. A round's model is
saved before its proposals are made, so a resumed round reuses it; proposals are recorded before
they are submitted, and submissions carry idempotency keys, so a resumed round never proposes a
different batch or submits a candidate twice.

Budget: ``budget.rounds`` counts rounds (the initial random design, when there is one, is round 0
and counts), ``budget.oracle_calls`` counts candidates handed to the oracle. The campaign stops at
whichever comes first, or when no candidate is left.

Oracle faults: every oracle call (submit, poll, collect) that raises anything but a
:class:`~discovery.errors.DiscoveryError` (a configuration problem the oracle names, which stops
the run as any other), or that takes longer than ``oracle.timeout_s``, is retried
``oracle.attempts`` times in all with a doubling back-off from ``oracle.retry_backoff_s``; after the
last attempt the candidates concerned get a ``failed`` result naming the call and the error, and the
campaign goes on. A timed-out call runs in a daemon thread that is abandoned, not stopped (Python
cannot stop a thread): its late return is ignored, and a retried submit carries the same
idempotency keys, so an idempotent oracle does not start a job twice. Answers that an oracle does
not return yet (partial results) stay pending and are asked for again at the next poll.

Start checks: the work directory must be writable and its file system must have
``compute.min_free_mb`` free before anything is recorded or any oracle is called.
"""

from __future__ import annotations

__all__ = ["Campaign", "RunOutcome"]

import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import pandas as pd

from discovery.campaign.ledger import Ledger, fault_point
from discovery.campaign.lock import WorkdirLock
from discovery.campaign.progress import Reporter
from discovery.errors import DiscoveryError
from discovery.oracles.base import OracleContext, Request, Result, utc_now

if TYPE_CHECKING:
    from discovery.campaign.spec import CampaignSpec
    from discovery.compute import Scorer
    from discovery.oracles.base import Oracle
    from discovery.surrogate import DeepEnsemble

LEDGER_FILE = "ledger.sqlite"
#: Spec sections that may change between runs of one work directory (anything else is refused).
RESUMABLE_CHANGES = ("budget", "compute", "workdir")
#: Oracle settings that may change on resume (how calls are retried, not who answers).
RESUMABLE_ORACLE_SETTINGS = ("attempts", "retry_backoff_s", "timeout_s")
_CORE = ("working_ion", "formula_charge", "formula_discharge")
#: Measured rows reach the surrogate and the acquisition's baseline in this order, not in the
#: order answers arrived (which depends on which jobs a poll found finished): the same answers
#: give the same model and the same proposals on every run.
_ANSWER_ORDER = ("round", "candidate_id", "fidelity")
T = TypeVar("T")


class OracleCallFailed(Exception):
    """Every attempt of an oracle call raised or timed out (the loop marks its candidates failed)."""


@dataclass(frozen=True)
class RunOutcome:
    """How :meth:`Campaign.run` ended.

    Attributes:
        state: ``finished`` (budget spent or no candidate left, nothing outstanding), ``waiting``
            (jobs are out and ``wait=False`` or the wait timed out; run again later) or ``stopped``
            (``max_rounds`` reached with budget left).
        rounds_complete: rounds whose every job is answered.
        oracle_calls: candidates submitted so far.
        message: one line for people.
    """

    state: Literal["finished", "waiting", "stopped"]
    rounds_complete: int
    oracle_calls: int
    message: str


def resolve(path: Path, base_dir: Path) -> Path:
    """``path`` if absolute, else relative to ``base_dir`` (the campaign file's directory)."""
    return path if path.is_absolute() else base_dir / path


class Campaign:
    """One campaign: a validated spec, its work directory and ledger, its oracle."""

    def __init__(
        self,
        spec: CampaignSpec,
        *,
        base_dir: str | Path = ".",
        workdir: str | Path | None = None,
        reporter: Reporter | None = None,
        oracle: Oracle | None = None,
    ) -> None:
        """``oracle``: an oracle object to use instead of creating ``spec.oracle`` (Python API and
        tests; its ``name`` is what the ledger records)."""
        self.spec = spec
        self._given_oracle = oracle
        self.base_dir = Path(base_dir)
        if workdir is not None:
            self.workdir = Path(workdir)
        elif spec.workdir is not None:
            self.workdir = resolve(Path(spec.workdir), self.base_dir)
        else:
            self.workdir = self.base_dir / "runs" / spec.name
        self.report = reporter or Reporter()
        self.ions = spec.ion_table()
        self.targets = list(spec.surrogate.targets)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        workdir: str | Path | None = None,
        reporter: Reporter | None = None,
    ) -> Campaign:
        """Load and validate a campaign file (see :func:`discovery.campaign.load_campaign`)."""
        from discovery.campaign.loader import load_campaign

        path = Path(path)
        return cls(load_campaign(path), base_dir=path.parent, workdir=workdir, reporter=reporter)

    # ================================================================== running
    def run(
        self,
        *,
        wait: bool = True,
        poll_interval_s: float = 2.0,
        wait_timeout_s: float | None = None,
        propose_ahead: bool = False,
        max_rounds: int | None = None,
    ) -> RunOutcome:
        """Run (or resume) the campaign until the budget is spent.

        Args:
            wait: wait for outstanding oracle jobs (polling every ``poll_interval_s`` seconds); with
                ``False`` the call returns ``waiting`` as soon as it would have to wait.
            wait_timeout_s: stop waiting after this many seconds (``waiting``); None: no limit.
            propose_ahead: propose and submit the next round while the previous one still has jobs
                out (those candidates are passed to the acquisition as pending points); at most one
                round ahead.
            max_rounds: start at most this many new rounds in this call (``stopped``).
        """
        _check_writable(self.workdir, self.spec.compute.min_free_mb)
        with WorkdirLock(self.workdir):
            self.ledger = Ledger(self.workdir / LEDGER_FILE)
            self.oracle: Oracle | None = self._given_oracle
            self.scorer: Scorer | None = None
            try:
                self._check_spec()
                from discovery.plugins import CampaignHooks

                # Hook plugins load (and are checked) before any work; the oracle's own hooks
                # join once it exists.
                self.hooks = CampaignHooks.load(
                    self.spec.plugins,
                    campaign=self.spec.name,
                    workdir=self.workdir,
                    log=self.ledger.log,
                )
                self._prepare()
                self._record_resume()
                self.hooks.add_oracle(
                    self.oracle, None if self._given_oracle else self.spec.oracle.name
                )
                return self._loop(wait, poll_interval_s, wait_timeout_s, propose_ahead, max_rounds)
            finally:
                if self.scorer is not None:
                    self.scorer.close()  # Ray: the scoring actors end here
                if self.oracle is not None and self._given_oracle is None:
                    self.oracle.close()
                self.ledger.close()

    def _check_spec(self) -> None:
        """A new work directory records the spec; an existing one must hold the same campaign."""
        current = self.spec.model_dump(mode="json")
        stored = self.ledger.get_meta("spec")
        self._resuming: dict[str, Any] | None = None
        if stored is None:
            self.ledger.set_meta("spec", current)
            self.ledger.log("created", name=self.spec.name)
            return
        stored = _with_new_defaults(stored, self.spec)
        moved, here = _portable(stored), _portable(current)
        changed = sorted(
            k
            for k in set(stored) | set(current)
            if k not in RESUMABLE_CHANGES
            and _who(stored, k) != _who(current, k)
            and _who(moved, k) != _who(here, k)
        )
        if changed:
            details = [
                line for k in changed for line in _differences(_who(moved, k), _who(here, k), k)
            ]
            raise DiscoveryError(
                f"{self.workdir}: this work directory belongs to a campaign with different "
                f"{', '.join(changed)}; only {', '.join(RESUMABLE_CHANGES)} may change on resume "
                "(use a new --workdir for a new campaign): " + "; ".join(details)
            )
        self._resuming = current

    def _record_resume(self) -> None:
        """Record a resume once the data, pool and oracle are ready: a rerun refused because a
        file went bad since (a damaged pool table) leaves the ledger exactly as it was."""
        if self._resuming is not None:
            self.ledger.set_meta("spec", self._resuming)
            self.ledger.log("resumed", rounds=self.ledger.last_round())
            self._resuming = None

    # ------------------------------------------------------------------ data, pool, oracle
    def _prepare(self) -> None:
        from discovery.oracles import make_oracle
        from discovery.space import candidate_ids

        spec = self.spec
        self.known = pd.DataFrame(columns=["battery_id", *_CORE, *self.targets])
        if spec.initial_data is not None:
            from discovery.data import load_electrodes

            init = spec.initial_data
            table = load_electrodes(
                resolve(Path(init.path), self.base_dir),
                drop_invalid=init.drop_invalid,
                ions=self.ions,
            )
            if init.ions is not None:
                table = table[table["working_ion"].isin(init.ions)]
            self.known = table.reset_index(drop=True)
        self.known_ids = candidate_ids(self.known) if len(self.known) else np.array([], dtype=str)
        in_scope = self.known["working_ion"].isin(spec.ions).to_numpy()
        if self.ledger.get_meta("initial_recorded") is None:
            rows = []
            scope = self.known[in_scope]
            values = self._outcomes_of(scope)
            for cid, (_, row), vals in zip(
                self.known_ids[in_scope], scope.iterrows(), values.to_dict("records")
            ):
                rows.append(
                    {
                        "candidate_id": cid,
                        **{c: row[c] for c in _CORE},
                        "values": {k: float(v) for k, v in vals.items() if np.isfinite(v)},
                    }
                )
            self.ledger.set_initial(rows)
            self.ledger.set_meta("initial_recorded", len(rows))

        if self.oracle is None:
            context = OracleContext(
                base_dir=self.base_dir, workdir=self.workdir, ions=self.ions, seed=spec.seed
            )
            self.oracle = make_oracle(spec.oracle.name, spec.oracle.options, context)
        self._fidelities()

        self.space = None
        self.pool: pd.DataFrame | None = None
        if spec.space.kind == "continuous":
            from discovery.space import ContinuousSpace

            self.space = ContinuousSpace(spec.space, ion_table=self.ions)
        else:
            self.report.line("preparing the candidate pool")
            self.pool = self._load_pool()
            from discovery.features import electrode_features

            features = electrode_features(self.pool, self.ions)
            self.pool_features = self._at_target_fidelity(features.values)
            self.pool_exact = features.pairs.capacity_grav_mah_g.reshape(-1, 1).astype(np.float64)
            self.pool_index = {c: i for i, c in enumerate(self.pool["candidate_id"])}
            self.report.line(f"candidate pool: {len(self.pool):,} electrodes")

    def _pool_scorer(self) -> Scorer:
        """The scorer of the pool, made at the first model-based proposal (a run that only
        collects answers never starts Ray)."""
        if self.scorer is None:
            from discovery.compute import make_scorer

            compute = self.spec.compute
            if compute.backend == "ray":
                where = compute.address or "a local Ray instance"
                self.report.line(f"scoring on {compute.workers} Ray worker(s), {where}")
            self.scorer = make_scorer(compute, self._scoring_progress)
        return self.scorer

    def _scoring_progress(self, done: int, total: int) -> None:
        """Rows scored (local) or chunks returned (Ray) of ``total``."""
        self.report.progress("score", "scoring the pool", done, total)

    def _fidelities(self) -> None:
        """The fidelity levels the surrogate takes as input and the one proposals are scored at.

        Declared: ``surrogate.fidelities``, else the initial data's fidelity and the oracle's.
        With one level the model has no fidelity input (``self.levels`` is empty).
        """
        assert self.oracle is not None
        spec = self.spec
        declared = list(spec.surrogate.fidelities or [])
        if not declared:
            if spec.initial_data is not None:
                declared.append(spec.initial_data.fidelity)
            if self.oracle.fidelity not in declared:
                declared.append(self.oracle.fidelity)
        elif self.oracle.fidelity not in declared:
            raise DiscoveryError(
                f"surrogate.fidelities: the oracle {self.oracle.name!r} answers at fidelity "
                f"{self.oracle.fidelity!r}, which is not listed ({', '.join(declared)})"
            )
        self.declared_fidelities = declared
        self.target_fidelity = spec.surrogate.target_fidelity or self.oracle.fidelity
        self.levels = declared if len(declared) > 1 else []

    def _at_target_fidelity(self, features: np.ndarray) -> np.ndarray:
        """Features of candidates with the target fidelity's indicator columns appended."""
        if not self.levels:
            return features
        from discovery.features.fidelity import fidelity_features

        fid = fidelity_features(self.target_fidelity, self.levels, len(features))
        return np.hstack([features, fid])

    def _load_pool(self) -> pd.DataFrame:
        from discovery.campaign.spec import ContinuousSpaceSpec, TableSpace
        from discovery.space import generate_pool, load_pool

        space = self.spec.space
        if isinstance(space, TableSpace):
            pool = load_pool(
                resolve(Path(space.path), self.base_dir),
                self.spec.ions,
                self.ions,
                drop_invalid=space.drop_invalid,
            )
        else:
            assert not isinstance(space, ContinuousSpaceSpec)
            pool = generate_pool(
                space.frameworks, self.spec.ions, self.ions, max_candidates=space.max_candidates
            )
        if len(pool) == 0:
            raise DiscoveryError(f"space: no candidates for the ions {', '.join(self.spec.ions)}")
        return pool.reset_index(drop=True)

    # ------------------------------------------------------------------ the loop
    def _loop(
        self,
        wait: bool,
        poll_interval_s: float,
        wait_timeout_s: float | None,
        propose_ahead: bool,
        max_rounds: int | None,
    ) -> RunOutcome:
        ledger = self.ledger
        started = 0
        waited_since: float | None = None
        exhausted = False
        while True:
            self._collect()
            self._complete_rounds()
            unfinished = [
                r for r in ledger.open_rounds() if ledger.round_state(r) in ("started", "proposed")
            ]
            if unfinished:
                exhausted |= not self._advance(unfinished[0])
                continue
            jobs = ledger.open_jobs()
            rounds_out = set(jobs["round"]) if len(jobs) else set()
            calls_left, rounds_left = self._budget_left()
            can_start = (
                calls_left > 0
                and rounds_left > 0
                and not exhausted
                and len(rounds_out) < (2 if propose_ahead else 1)
                and (max_rounds is None or started < max_rounds)
            )
            if can_start:
                last = ledger.last_round()
                round_ = 0 if last is None else last + 1
                ledger.start_round(round_, self._strategy(round_))
                self.report.line(f"round {round_}: {self._strategy(round_)}")
                started += 1
                waited_since = None
                continue
            if len(jobs) == 0:
                if (
                    max_rounds is not None
                    and started >= max_rounds
                    and calls_left > 0
                    and rounds_left > 0
                    and not exhausted
                ):
                    return self._outcome("stopped", f"stopped after {started} new round(s)")
                reason = "no candidate left" if exhausted else "budget spent"
                return self._outcome("finished", f"campaign finished: {reason}")
            if not wait:
                return self._outcome("waiting", f"waiting for results of {len(jobs)} job(s)")
            now = time.monotonic()
            if waited_since is None:
                # An oracle may say what it waits for (the lab oracle: which file to fill in).
                hint = getattr(self.oracle, "waiting_hint", None)
                if callable(hint) and (text := hint()):
                    self.report.line(text)
            waited_since = waited_since or now
            if wait_timeout_s is not None and now - waited_since > wait_timeout_s:
                return self._outcome(
                    "waiting", f"still waiting for {len(jobs)} job(s) after {wait_timeout_s:g} s"
                )
            self.report.progress(
                "wait",
                "waiting for the oracle",
                ledger.submission_count() - len(jobs),
                ledger.submission_count(),
            )
            time.sleep(poll_interval_s)

    def _outcome(
        self, state: Literal["finished", "waiting", "stopped"], message: str
    ) -> RunOutcome:
        self.report.finish("wait")
        rounds = self.ledger.rounds()
        complete = int((rounds["state"] == "complete").sum()) if len(rounds) else 0
        failed = self.ledger.counts()["results_failed"]
        if failed:
            message += f"; {failed} candidate(s) failed (`discover status` lists why)"
        self.ledger.log(state, message=message)
        return RunOutcome(state, complete, self.ledger.submission_count(), message)

    def _strategy(self, round_: int) -> str:
        return (
            "random"
            if round_ == 0 and self.spec.budget.initial_random > 0
            else self.spec.acquisition.strategy
        )

    def _budget_left(self) -> tuple[float, float]:
        budget = self.spec.budget
        calls = (
            math.inf
            if budget.oracle_calls is None
            else budget.oracle_calls - self.ledger.submission_count()
        )
        last = self.ledger.last_round()
        rounds = (
            math.inf if budget.rounds is None else budget.rounds - (0 if last is None else last + 1)
        )
        return calls, rounds

    # ------------------------------------------------------------------ one round's steps
    def _advance(self, round_: int) -> bool:
        """Propose (state ``started``) or submit (state ``proposed``); False: no candidate left."""
        ledger = self.ledger
        if ledger.round_state(round_) == "started":
            calls_left, _ = self._budget_left()
            size = (
                self.spec.budget.initial_random
                if self._strategy(round_) == "random" and round_ == 0
                else self.spec.batch_size
            )
            size = int(min(size, calls_left))
            rows = self._propose(round_, size)
            if not rows:
                ledger.set_round_state(round_, "complete", {"note": "no candidate left"})
                return False
            fault_point("proposed")
            ledger.add_proposals(round_, rows)
            self.hooks.batch_proposed(round_, ledger.proposals(round_))
            self.report.line(f"round {round_}: proposed {len(rows)} candidate(s)")
        if ledger.round_state(round_) == "proposed":
            self._submit(round_)
        return True

    def _submit(self, round_: int) -> None:
        assert self.oracle is not None
        todo = self.ledger.unsubmitted(round_)
        if len(todo):
            requests = [
                Request(
                    candidate_id=r.candidate_id,
                    working_ion=r.working_ion,
                    formula_charge=r.formula_charge,
                    formula_discharge=r.formula_discharge,
                    round=round_,
                    idempotency_key=f"{self.spec.name}/{r.candidate_id}",
                    predicted=json.loads(r.predicted),
                )
                for r in todo.itertuples()
            ]
            oracle = self.oracle
            try:
                job_ids = self._oracle_call("submit", lambda: list(oracle.submit(requests)))
            except OracleCallFailed as exc:
                self.ledger.add_unsubmitted_failures(
                    [
                        {
                            "candidate_id": q.candidate_id,
                            "idempotency_key": q.idempotency_key,
                            "round": round_,
                        }
                        for q in requests
                    ],
                    oracle.name,
                    oracle.fidelity,
                    str(exc),
                )
                self._report_failed(len(requests), str(exc))
                self.ledger.set_round_state(round_, "submitted")
                return
            if len(job_ids) != len(requests):
                raise DiscoveryError(
                    f"oracle {self.oracle.name!r} returned {len(job_ids)} job ids for "
                    f"{len(requests)} requests"
                )
            fault_point("submit")
            self.ledger.add_submissions(
                [
                    {
                        "candidate_id": q.candidate_id,
                        "job_id": j,
                        "idempotency_key": q.idempotency_key,
                        "round": round_,
                    }
                    for q, j in zip(requests, job_ids)
                ],
                self.oracle.name,
            )
            fault_point("submitted")
        self.ledger.set_round_state(round_, "submitted")

    def _collect(self) -> None:
        """Record the answers of finished jobs (validated; see :meth:`_check_result`)."""
        assert self.oracle is not None
        jobs = self.ledger.open_jobs()
        if len(jobs) == 0:
            return
        by_job = {r.job_id: r for r in jobs.itertuples()}
        oracle = self.oracle
        try:
            states = self._oracle_call("poll", lambda: dict(oracle.poll(list(by_job))))
        except OracleCallFailed as exc:
            self._fail_jobs(list(by_job.values()), str(exc))
            return
        finished = [j for j, s in states.items() if s in ("done", "failed") and j in by_job]
        # collect() runs even when no job finished: an oracle may return answers no open job can
        # take (a lab's row with an unknown candidate id), which are logged and reported below.
        corrections = bool(getattr(self.oracle, "accepts_corrections", False))
        n_new = 0
        try:
            answers = self._oracle_call("collect", lambda: list(oracle.collect(finished)))
        except OracleCallFailed as exc:
            self._fail_jobs([by_job[j] for j in finished], str(exc))
            return
        # A finished job the oracle does not answer yet (partial results) stays open and is
        # polled again.
        answered: set[str] = set()
        for result in answers:
            job = by_job.get(result.job_id)
            problem: str | None = None
            if job is not None and result.job_id in answered and not corrections:
                # A second answer to one job in one collect: the first stands, and this one is
                # kept in the event log (with its values) and reported, not dropped unseen. (An
                # oracle that accepts corrections judges its own repeated rows: the lab inbox
                # rejects a candidate's rows that disagree, each naming its line.)
                self.ledger.log(
                    "duplicate_result",
                    job_id=result.job_id,
                    candidate_id=result.candidate_id,
                    status=result.status,
                    values={k: repr(v) for k, v in result.values.items()},
                    message=result.message,
                )
                self.report.line(
                    f"ignored a second answer for {result.candidate_id!r} (job "
                    f"{result.job_id!r}) in one collect; the first is kept"
                )
                continue
            if job is not None:
                answered.add(result.job_id)
            if job is not None and job.candidate_id != result.candidate_id and not corrections:
                # An open job answered under another candidate's id is an oracle's bug: the job
                # is closed as rejected (a waiting campaign would otherwise poll it for ever).
                problem = (
                    f"the answer to job {result.job_id!r} names candidate "
                    f"{result.candidate_id!r}, not {job.candidate_id!r}"
                )
                result = replace(result.as_rejected(), candidate_id=str(job.candidate_id))
            elif job is None or job.candidate_id != result.candidate_id:
                self.ledger.log(
                    "unknown_result",
                    job_id=result.job_id,
                    candidate_id=result.candidate_id,
                    message=result.message,
                )
                self.report.line(
                    f"ignored an answer for {result.candidate_id!r}, which has no open job"
                    + (f": {result.message}" if result.message else "")
                    if result.candidate_id or not result.message
                    else f"ignored an answer: {result.message}"
                )
                continue
            else:
                result, problem = self._check_result(result)
                if problem is None:
                    n_new += self.ledger.add_result(result, int(job.round))
                    fault_point("result")
                    continue
            if self.ledger.add_result(result, int(job.round), status="rejected", message=problem):
                self.report.line(f"rejected the answer for {result.candidate_id}: {problem}")
            if not corrections:
                self.ledger.close_rejected(
                    result.candidate_id,
                    result.job_id,
                    int(job.round),
                    result.oracle,
                    result.fidelity,
                    f"answer rejected: {problem}",
                )
        if n_new:
            self.report.line(f"{n_new} result(s) recorded")

    # ------------------------------------------------------------------ oracle calls
    def _oracle_call(self, what: str, call: Callable[[], T]) -> T:
        """``call()`` with the spec's timeout and retries; :class:`OracleCallFailed` after the
        last attempt (see the module docstring)."""
        assert self.oracle is not None
        settings = self.spec.oracle
        name, error = self.oracle.name, ""
        for attempt in range(1, settings.attempts + 1):
            try:
                return _call_with_timeout(call, settings.timeout_s, f"oracle-{name}-{what}")
            except DiscoveryError:
                raise
            except Exception as exc:
                error = _describe(exc)
            self.ledger.log(
                "oracle_error", call=what, attempt=attempt, of=settings.attempts, error=error
            )
            if attempt == settings.attempts:
                break
            delay = settings.retry_backoff_s * 2 ** (attempt - 1)
            self.report.line(
                f"oracle {name!r}: {what} failed ({error}); attempt {attempt} of "
                f"{settings.attempts}, retrying in {delay:g} s"
            )
            time.sleep(delay)
        raise OracleCallFailed(
            f"oracle {name!r}: {what} failed {settings.attempts} time(s), last: {error}"
        )

    def _fail_jobs(self, jobs: list[Any], message: str) -> None:
        """Record a ``failed`` result for each open job (rows of :meth:`Ledger.open_jobs`)."""
        assert self.oracle is not None
        now = utc_now()
        n = 0
        for job in jobs:
            failed = Result(
                job.candidate_id,
                job.job_id,
                "failed",
                {},
                self.oracle.name,
                self.oracle.fidelity,
                now,
                now,
                message,
            )
            n += self.ledger.add_result(failed, int(job.round))
        if n:
            self._report_failed(n, message)

    def _report_failed(self, n: int, message: str) -> None:
        self.ledger.log("oracle_failed", candidates=n, message=message)
        self.report.line(f"{n} candidate(s) marked failed: {message}")

    def _check_result(self, result: Result) -> tuple[Result, str | None]:
        """Fill capacity and energy from the formulas; return a reason to reject, if any.

        An ``ok`` answer first goes through the hook plugins (``discovery_result_received``), which
        may replace it (converted units) or reject it."""
        if malformed := result.malformed():  # an oracle's bug: recorded as rejected, never raised
            return result.as_rejected(), "; ".join(malformed)
        if result.status == "ok":
            candidate = {
                "candidate_id": result.candidate_id,
                **self._proposal_row(result.candidate_id),
            }
            answer = self.hooks.result_received(result, candidate)
            if isinstance(answer, str):
                return result, answer
            result = answer
        if result.status == "rejected":
            return result, result.message or f"rejected by the oracle {result.oracle!r}"
        if result.status != "ok":
            return result, None
        problems = result.problems()
        if result.fidelity not in self.declared_fidelities:
            problems.append(
                f"fidelity {result.fidelity!r} is not one of the campaign's "
                f"({', '.join(self.declared_fidelities)}); list it in surrogate.fidelities"
            )
        values = dict(result.values)
        if not problems:
            missing = [t for t in self.targets[:1] if t not in values]
            if missing:
                problems.append(f"missing {missing[0]}")
        if problems:
            return result, "; ".join(problems)
        row = self._proposal_row(result.candidate_id)
        if "capacity_grav" not in values:
            values["capacity_grav"] = _capacity(row, self.ions)
        if values["capacity_grav"] < 0:
            return result, f"capacity_grav: negative ({values['capacity_grav']} mAh/g)"
        if "energy_grav" not in values and "average_voltage" in values:
            values["energy_grav"] = values["average_voltage"] * values["capacity_grav"]
        return Result(**{**result.__dict__, "values": values}), None

    def _proposal_row(self, candidate_id: str) -> dict[str, Any]:
        return self.ledger.proposal_formulas(candidate_id)

    def _complete_rounds(self) -> None:
        """Mark submitted rounds with no open job complete, with their metrics."""
        ledger = self.ledger
        open_rounds = set(ledger.open_jobs()["round"])
        for round_ in ledger.open_rounds():
            if ledger.round_state(round_) != "submitted" or round_ in open_rounds:
                continue
            ledger.set_round_state(round_, "complete", self._round_metrics(round_))
            self.report.line(f"round {round_}: complete")

    def _round_metrics(self, round_: int) -> dict[str, Any]:
        """Results of the round, the surrogate's error on them, and the hypervolume so far."""
        from discovery.campaign.report import history, hypervolume_now

        results = self.ledger.results(("ok", "failed"))
        mine = results[results["round"] == round_]
        ok = mine[mine["status"] == "ok"]
        metrics: dict[str, Any] = {
            "results_ok": len(ok),
            "results_failed": int((mine["status"] == "failed").sum()),
        }
        pred = "predicted_average_voltage_mean"
        if len(ok) and pred in ok and "average_voltage" in ok:
            err = ok["average_voltage"] - ok[pred]
            metrics["voltage_mae_v"] = float(err.abs().mean())
            std = ok.get("predicted_average_voltage_std")
            if std is not None:
                metrics["coverage_95"] = float((err.abs() <= 1.96 * std).mean())
        hv = hypervolume_now(self.spec, self.ledger, history(self.ledger))
        if hv is not None:
            metrics["hypervolume"] = hv
        return metrics

    # ------------------------------------------------------------------ models and proposals
    def _training_frame(self) -> pd.DataFrame:
        results = self.ledger.results(("ok",))
        known = self.known[["battery_id", *_CORE, *[t for t in self.targets if t in self.known]]]
        initial = self.spec.initial_data
        parts = [known.assign(fidelity=initial.fidelity if initial is not None else "")]
        if len(results):
            results = results.sort_values(list(_ANSWER_ORDER), kind="stable")
            answered = results[
                ["candidate_id", *_CORE, "fidelity", *[t for t in self.targets if t in results]]
            ]
            parts.append(answered.rename(columns={"candidate_id": "battery_id"}))
        # An empty part (no initial data) is left out: pandas deprecates letting it set dtypes.
        frame = pd.concat([p for p in parts if len(p)] or parts, ignore_index=True)
        for t in self.targets:
            if t not in frame:
                frame[t] = np.nan
        labeled = frame[self.targets].notna().any(axis=1)
        return frame[labeled].reset_index(drop=True)

    def _model(self, round_: int) -> DeepEnsemble:
        """The round's ensemble: loaded when already trained (a resumed round), else trained."""
        from discovery.surrogate import retrain_electrode_model

        saved = self._saved_model(round_)
        if saved is not None:
            return saved
        frame = self.hooks.before_training(round_, self._training_frame())
        if len(frame) < 10:
            raise DiscoveryError(
                f"round {round_}: only {len(frame)} labeled row(s) to train on; give initial_data "
                "or budget.initial_random (at least 10 rows)"
            )
        config = self.spec.surrogate.to_config(seed=self.spec.seed * 1000 + round_)
        previous = self._previous_model(round_) if self.spec.surrogate.warm_start else None
        how = "fine-tuning" if previous is not None else "training"
        label = f"{how} {config.members} members on {len(frame):,} rows"
        model = retrain_electrode_model(
            frame,
            previous,
            warm_start=self.spec.surrogate.warm_start,
            targets=self.targets,
            config=config,
            ions=self.ions,
            progress=lambda e, n: self._training_progress(label, e, n),
            fidelities=self.levels,
        )
        self.report.finish("train")
        rel = f"models/round-{round_:03d}"
        try:
            model.save(self.workdir / rel)
        except OSError as exc:  # the ledger does not name the model yet: a rerun trains again
            raise DiscoveryError(
                f"{self.workdir / rel}: could not save round {round_}'s model "
                f"({exc.strerror or exc}); nothing of it was recorded. Free disk space or make "
                "the work directory writable, then run again"
            ) from exc
        fault_point("model-saved")
        self.ledger.set_round_model(round_, rel, len(frame))
        self.hooks.after_training(round_, model, frame, self.workdir / rel)
        return model

    def _saved_model(self, round_: int) -> DeepEnsemble | None:
        """The model the ledger records for ``round_``, or None when that round trained none."""
        from discovery.surrogate import DeepEnsemble

        saved, _ = self.ledger.round_model(round_)
        if saved is not None and (self.workdir / saved / "manifest.json").is_file():
            return DeepEnsemble.load(self.workdir / saved)
        return None

    def _previous_model(self, round_: int) -> DeepEnsemble | None:
        """The model of the latest earlier round that trained one (None: this is the first)."""
        for earlier in range(round_ - 1, -1, -1):
            if (model := self._saved_model(earlier)) is not None:
                return model
        return None

    def _training_progress(self, label: str, epoch: int, epochs: int) -> None:
        self.report.progress("train", label, epoch, epochs)
        fault_point("train-epoch")

    def _measured_in_scope(self) -> pd.DataFrame:
        """In-scope initial rows and ok results: formulas and measured outcome values."""
        from discovery.campaign.report import history

        frame = history(self.ledger)
        ok = frame[frame["status"] == "ok"].sort_values(list(_ANSWER_ORDER), kind="stable")
        return ok.reset_index(drop=True)

    def _propose(self, round_: int, size: int) -> list[dict[str, Any]]:
        if size <= 0:
            return []
        strategy = self._strategy(round_)
        proposed = self.ledger.proposed_ids()
        if round_ == 0 and strategy == "random" and self.spec.budget.initial_random > 0:
            return self._random_design(size, proposed)
        model = self._model(round_)
        from discovery.features import electrode_features
        from discovery.propose import Objective, OutcomeConstraint

        measured = self._measured_in_scope()
        if len(measured):
            base = electrode_features(measured, self.ions)
            base_x = self._at_target_fidelity(base.values)
            base_exact = base.pairs.capacity_grav_mah_g.reshape(-1, 1).astype(np.float64)
        else:
            n_features = len(model.feature_names)
            base_x, base_exact = np.zeros((0, n_features), np.float32), np.zeros((0, 1))
        outcome_cols = [c for c in self.spec.outcome_names() if c in measured]
        base_values = (
            measured[outcome_cols].apply(pd.to_numeric, errors="coerce").reset_index(drop=True)
        )
        objectives = [Objective(o.name, o.direction) for o in self.spec.objectives]
        constraints = [OutcomeConstraint(c.name, c.min, c.max) for c in self.spec.constraints]
        ref = self.spec.reference_point
        ref_point = list(ref) if isinstance(ref, list) else self.ledger.get_meta("reference_point")
        acq = self.spec.acquisition
        common: dict[str, Any] = {
            "strategy": strategy,
            "ensemble": model,
            "baseline_features": base_x,
            "baseline_exact": base_exact,
            "baseline_values": base_values,
            "objectives": objectives,
            "constraints": constraints,
            "ref_point": ref_point,
            "batch_size": size,
            "mc_samples": acq.mc_samples,
            "seed": self.spec.seed * 1000 + round_,
        }
        open_ids = set(self.ledger.open_jobs()["candidate_id"])
        self.report.line(f"round {round_}: choosing {size} candidate(s) by {strategy}")
        if self.space is None:
            assert self.pool is not None
            available = self._available(proposed)
            if len(available) == 0:
                return []
            pending = np.array(
                [self.pool_index[c] for c in open_ids if c in self.pool_index], dtype=np.int64
            )
            from discovery.propose import propose_pool

            proposal = propose_pool(
                pool_features=self.pool_features,
                pool_exact=self.pool_exact,
                available=available,
                pending=pending,
                shortlist=acq.shortlist,
                chunk_rows=self.spec.compute.chunk_rows,
                scorer=_ScoringCheckpoints(self._pool_scorer()),
                **common,
            )
            self.report.finish("score")
            chosen = self.pool.iloc[proposal.indices]
            xs: list[Any] = [None] * len(chosen)
        else:
            props = self.ledger.proposals()
            pending_x = np.array(
                [
                    x
                    for c, x in zip(props["candidate_id"], props["x"])
                    if c in open_ids and x is not None
                ]
            )
            from discovery.propose import propose_continuous
            from discovery.propose.continuous import ContinuousSpaceLike, with_fixed_features

            space: ContinuousSpaceLike = self.space
            if self.levels:
                from discovery.features.fidelity import fidelity_feature_names, fidelity_features

                space = with_fixed_features(
                    self.space,
                    fidelity_feature_names(self.levels),
                    fidelity_features(self.target_fidelity, self.levels)[0],
                )
            proposal = propose_continuous(
                space=space,
                pending_X=pending_x.reshape(-1, self.space.dim),
                num_restarts=acq.num_restarts,
                raw_samples=acq.raw_samples,
                **common,
            )
            assert proposal.X is not None
            chosen = self.space.to_frame(np.asarray(proposal.X))
            xs = [list(map(float, x)) for x in np.asarray(proposal.X)]
        if not isinstance(ref, list) and self.ledger.get_meta("reference_point") is None:
            self.ledger.set_meta("reference_point", [float(v) for v in proposal.ref_point])
        seen = set(proposed) | self._known_at_target()
        predicted = proposal.predicted.reset_index(drop=True)
        rows = self._new_rows(
            chosen,
            xs,
            seen,
            strategy,
            size,
            acquisition=[_finite_or_none(v) for v in proposal.acquisition_value],
            predicted=[
                {k: _finite_or_none(v) for k, v in predicted.iloc[i].items()}
                for i in range(len(predicted))
            ],
        )
        if self.space is not None and len(rows) < size:
            # Continuous optima can coincide (two points of the batch on one vertex of the
            # polytope) or round onto a known composition; the batch is topped up with seeded
            # random feasible compositions, recorded as such.
            for fill in self._random_design(
                size - len(rows), seen, seed=self.spec.seed * 1000 + round_
            ):
                rows.append({**fill, "strategy": "random-fill"})
        return rows

    def _known_at_target(self) -> set[str]:
        """Initial-data candidates whose value at the target fidelity is known: never proposed.

        Initial data at another fidelity (DFT rows in a campaign answered by a proxy such as CHGNet)
        do not count: the target-fidelity value of those candidates is still unknown, and answers
        for candidates measured at both fidelities are what pins down the offset between them.
        """
        init = self.spec.initial_data
        if init is not None and init.fidelity != self.target_fidelity:
            return set()
        return set(self.known_ids)

    def _available(self, proposed: set[str]) -> np.ndarray:
        """Pool rows never proposed and not known at the target fidelity."""
        assert self.pool is not None
        taken = self.pool["candidate_id"].isin(proposed | self._known_at_target()).to_numpy()
        return np.flatnonzero(~taken).astype(np.int64)

    def _random_design(
        self, size: int, proposed: set[str], seed: int | None = None
    ) -> list[dict[str, Any]]:
        """``size`` candidates uniformly at random (seeded; the campaign seed by default)."""
        seed = self.spec.seed if seed is None else seed
        rng = np.random.default_rng(seed)
        if self.space is None:
            assert self.pool is not None
            available = self._available(proposed)
            if len(available) == 0:
                return []
            chosen = self.pool.iloc[
                rng.choice(available, size=min(size, len(available)), replace=False)
            ]
            xs: list[Any] = [None] * len(chosen)
        else:
            points = self.space.sample(size + len(proposed), seed)  # spares for collisions
            chosen = self.space.to_frame(points)
            xs = [list(map(float, x)) for x in points]
        return self._new_rows(chosen, xs, set(proposed) | self._known_at_target(), "random", size)

    @staticmethod
    def _new_rows(
        chosen: pd.DataFrame,
        xs: list[Any],
        seen: set[str],
        strategy: str,
        limit: int,
        acquisition: list[float | None] | None = None,
        predicted: list[dict[str, float | None]] | None = None,
    ) -> list[dict[str, Any]]:
        """Ledger rows for the chosen candidates not in ``seen`` (which gains them), at most
        ``limit``; a continuous optimum can round onto a known composition and is skipped."""
        rows: list[dict[str, Any]] = []
        for i, (row, x) in enumerate(zip(chosen.itertuples(), xs)):
            if row.candidate_id in seen:
                continue
            seen.add(row.candidate_id)
            rows.append(
                {
                    "candidate_id": row.candidate_id,
                    **{c: getattr(row, c) for c in _CORE},
                    "strategy": strategy,
                    "acquisition_value": None if acquisition is None else acquisition[i],
                    "predicted": {} if predicted is None else predicted[i],
                    "x": x,
                }
            )
            if len(rows) == limit:
                break
        return rows

    def _outcomes_of(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Measured outcome values of table rows: targets, exact capacity, energy = V·C."""
        out = pd.DataFrame(index=frame.index)
        for t in self.targets:
            if t in frame:
                out[t] = pd.to_numeric(frame[t], errors="coerce")
        if len(frame):
            from discovery.chemistry.pairs import insertion_pairs

            pairs = insertion_pairs(
                frame["formula_charge"], frame["formula_discharge"], frame["working_ion"], self.ions
            )
            out["capacity_grav"] = pairs.capacity_grav_mah_g
        else:
            out["capacity_grav"] = pd.Series(dtype=float)
        if "average_voltage" in out:
            out["energy_grav"] = out["average_voltage"] * out["capacity_grav"]
        return out


class _ScoringCheckpoints:
    """A pool scorer with the ``score`` fault checkpoint (:func:`fault_point`) before and after
    each scoring pass; otherwise the scorer itself."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer

    def predict(
        self, ensemble: DeepEnsemble, features: np.ndarray, rows: np.ndarray, chunk_rows: int
    ) -> tuple[np.ndarray, np.ndarray]:
        fault_point("score")
        out = self.scorer.predict(ensemble, features, rows, chunk_rows)
        fault_point("score")
        return out

    def close(self) -> None:
        self.scorer.close()


#: Spec fields added after work directories existed whose value then was not today's default: a
#: stored spec without them ran with these values (standard members before ``input_encoding`` was
#: a field; quantile bins before ``bin_edges`` was one and target-aware bins became the default).
_VALUES_BEFORE_RECORDED: dict[tuple[str, ...], Any] = {
    ("surrogate", "input_encoding"): "standard",
    ("surrogate", "bin_edges"): "quantile",
}


def _with_new_defaults(
    stored: dict[str, Any], model: Any, path: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A stored spec dump with the values of fields added since it was written.

    A work directory made by an older discovery lacks the newer fields. Most behaved as their
    defaults then, so a campaign file that leaves them at their defaults is the same campaign;
    those whose default is not what the older version did get that older value
    (:data:`_VALUES_BEFORE_RECORDED`), so resuming with today's default is refused, naming the
    field.
    """
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined, to_jsonable_python

    out = dict(stored)
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if name not in out:
            default = _VALUES_BEFORE_RECORDED.get(
                (*path, name), field.get_default(call_default_factory=True)
            )
            if default is not PydanticUndefined:
                out[name] = to_jsonable_python(default)
        elif isinstance(value, BaseModel) and isinstance(out[name], dict):
            out[name] = _with_new_defaults(out[name], value, (*path, name))
    return out


def _differences(stored: Any, current: Any, path: str) -> list[str]:
    """Dotted paths at which two spec dumps differ, with both values (the resume error)."""
    if isinstance(stored, dict) and isinstance(current, dict):
        return [
            line
            for key in sorted(set(stored) | set(current), key=str)
            for line in _differences(stored.get(key), current.get(key), f"{path}.{key}")
        ]
    if stored == current:
        return []
    return [f"{path}: {json.dumps(stored)} in the work directory, {json.dumps(current)} now"]


def _capacity(row: dict[str, Any], ions: Any) -> float:
    from discovery.chemistry.capacity import insertion_pair

    pair = insertion_pair(row["formula_charge"], row["formula_discharge"], row["working_ion"], ions)
    return float(pair.capacity_grav_mah_g)


def _finite_or_none(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _check_writable(workdir: Path, min_free_mb: float = 0.0) -> None:
    """Fail before anything is recorded or any oracle is called when the work directory cannot be
    written or its file system has less than ``min_free_mb`` MB free."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise DiscoveryError(
            f"{workdir}: work directory is not writable ({exc.strerror or exc})"
        ) from exc
    free_mb = shutil.disk_usage(workdir).free / 1e6
    if free_mb < min_free_mb:
        raise DiscoveryError(
            f"{workdir}: only {free_mb:,.1f} MB free on its file system, the campaign needs "
            f"compute.min_free_mb = {min_free_mb:g} MB; free space or lower the setting"
        )


def _portable(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec dump whose file paths are relative to its work directory.

    Loaded specs hold absolute paths, so a project folder moved or copied whole (campaign file,
    tables and work directory together) changes every path but none of these relative ones.
    Resume accepts a section that matches either way.
    """
    workdir = spec.get("workdir")
    if not isinstance(workdir, str):
        return spec

    def rel(section: Any, key: str) -> Any:
        if isinstance(section, dict) and isinstance(section.get(key), str):
            return {**section, key: os.path.relpath(section[key], workdir)}
        return section

    out = dict(spec)
    out["space"] = rel(out.get("space"), "path")
    out["initial_data"] = rel(out.get("initial_data"), "path")
    oracle = out.get("oracle")
    if isinstance(oracle, dict):
        out["oracle"] = {**oracle, "options": rel(oracle.get("options"), "path")}
    return out


def _who(spec: dict[str, Any], key: str) -> Any:
    """A spec section as compared on resume: the oracle without its retry settings."""
    value = spec.get(key)
    if key == "oracle" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in RESUMABLE_ORACLE_SETTINGS}
    return value


def _call_with_timeout(call: Callable[[], T], timeout_s: float | None, name: str) -> T:
    """``call()``, in a daemon thread when there is a timeout; :class:`TimeoutError` when it has
    not returned after ``timeout_s`` seconds (the thread is abandoned, see the module docstring)."""
    if timeout_s is None:
        return call()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"no answer within timeout_s = {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return type(exc).__name__ + (f": {text[0][:300]}" if text else "")
