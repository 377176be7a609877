"""Injected faults: ``discover run`` SIGKILLed at chosen and at random moments and resumed, oracles
that raise, hang or answer in part, and work directories that cannot take a campaign.

Crash runs: every run is the real command line (``discovery.cli.main`` with ``run ...``) in a
process of its own, forked from a forkserver that has already imported torch and BoTorch, so a
run costs its work and not the 5-10 s import. A run dies by SIGKILL in one of two ways:

* deterministic: the environment variable ``DISCOVERY_FAULT=<stage>:<n>`` makes the process
  SIGKILL itself on its n-th pass through a checkpoint of the loop or the ledger
  (:data:`discovery.campaign.ledger.FAULT_STAGES`: ``train-epoch``, ``model-saved``, ``score``,
  ``proposed``, ``submit``, ``submitted``, ``result``, ``ledger-write``). The checkpoints are
  :func:`discovery.campaign.ledger.fault_point` calls; unset, each costs one environment lookup.
* at random: the test sends SIGKILL after a delay drawn from a seeded generator.

After the kills the campaign is run to the end, and its ledger must equal the ledger of an
uninterrupted run with the same seed (rounds, proposals with their predictions and acquisition
values, submissions, results; times aside), no result recorded before a kill may be missing
after it, and the oracle's own journal (a replay oracle installed as a plugin that fsyncs every
submitted idempotency key before answering) must show no key that started two jobs.

Figures (printed with ``-s``; the counts go to docs/reliability.md) come from these tests:
``.venv/bin/python -m pytest tests/test_faults.py -q``.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from discovery.campaign.ledger import FAULT_STAGES
from tests.conftest import synthetic_electrodes

# --------------------------------------------------------------------------- the oracle plugin
PLUGIN = '''\
"""Oracles for tests/test_faults.py (installed as the distribution faultlab)."""
import json
import os
import threading
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from discovery.oracles.base import parse_options
from discovery.oracles.replay import ReplayOracle


class JournaledReplay(ReplayOracle):
    """Replay whose job store is a journal (``<workdir>/journal.jsonl``): every submitted key is
    appended and fsynced before the job ids are returned, as a job server commits before it
    answers; a key already in the journal returns its job and starts nothing."""

    @classmethod
    def from_options(cls, options, context):
        oracle = super().from_options(options, context)
        oracle.journal = Path(context.workdir) / "journal.jsonl"
        return oracle

    def submit(self, requests):
        known = set()
        if self.journal.is_file():
            known = {json.loads(line)["key"] for line in self.journal.read_text().splitlines()}
        jobs = super().submit(requests)
        with open(self.journal, "a") as f:
            for request, job in zip(requests, jobs):
                key = request.idempotency_key
                f.write(json.dumps({"key": key, "job": job, "new": key not in known}) + "\\n")
                known.add(key)
            f.flush()
            os.fsync(f.fileno())
        return jobs


class FaultOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Path
    fault: Literal["raise", "hang", "partial"]
    call: Literal["submit", "poll", "collect"] = "collect"
    times: int = 1000000
    hang_s: float = 60.0


class FaultyReplay(ReplayOracle):
    """Replay that misbehaves on purpose: ``raise`` (RuntimeError) or ``hang`` (up to ``hang_s``,
    released by close()) in its first ``times`` calls of ``call``; ``partial``: collect answers
    only the first finished job of each call."""

    @classmethod
    def from_options(cls, options, context):
        opts = parse_options(FaultOptions, options, "faulty")
        oracle = super().from_options({"path": str(opts.path)}, context)
        oracle.name = "faulty"
        oracle.opts = opts
        oracle.calls = {"submit": 0, "poll": 0, "collect": 0}
        oracle.faults = 0
        oracle.release = threading.Event()
        return oracle

    def _misbehave(self, call):
        self.calls[call] += 1
        if self.opts.call != call or self.opts.fault == "partial" or self.faults >= self.opts.times:
            return
        self.faults += 1
        if self.opts.fault == "raise":
            raise RuntimeError(f"injected {call} failure {self.faults}")
        self.release.wait(self.opts.hang_s)

    def submit(self, requests):
        self._misbehave("submit")
        return super().submit(requests)

    def poll(self, job_ids):
        self._misbehave("poll")
        return super().poll(job_ids)

    def collect(self, job_ids):
        self._misbehave("collect")
        results = super().collect(job_ids)
        if self.opts.fault == "partial" and len(results) > 1:
            self.faults += len(results) - 1
            return results[:1]
        return results

    def close(self):
        self.release.set()
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The faultlab distribution (oracles ``journaled`` and ``faulty``) installed into a folder
    on sys.path, as pip would leave it in site-packages."""
    folder = tmp_path_factory.mktemp("site")
    (folder / "faultlab_oracles.py").write_text(PLUGIN)
    info = folder / "faultlab-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: faultlab\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[discovery.oracles]\n"
        "journaled = faultlab_oracles:JournaledReplay\n"
        "faulty = faultlab_oracles:FaultyReplay\n"
    )
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop("faultlab_oracles", None)


# --------------------------------------------------------------------------- crash runs
@pytest.fixture(scope="module", autouse=True)
def _forkserver_released() -> Iterator[None]:
    """The forkserver these runs start (with this module's preloads) is stopped afterwards, so
    later tests that use one start theirs with their own preloads."""
    yield
    stop = getattr(multiprocessing.forkserver._forkserver, "_stop", None)
    if stop is not None:
        stop()


def test_fault_points_are_inert_unless_asked_and_refuse_typos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from discovery.campaign.ledger import fault_point
    from discovery.errors import DiscoveryError

    monkeypatch.delenv("DISCOVERY_FAULT", raising=False)
    fault_point("submit")  # unset: nothing happens
    monkeypatch.setenv("DISCOVERY_FAULT", "result:1")
    fault_point("submit")  # another stage: nothing happens
    for bad in ("submit", "submit:0", "submit:x", "sumbit:1"):
        monkeypatch.setenv("DISCOVERY_FAULT", bad)
        with pytest.raises(DiscoveryError, match="expected <stage>:<n> with n >= 1"):
            fault_point("submit")


CRASH_CAMPAIGN = """\
name: crashes
seed: 3
ions: [Na, Mg]
space: {kind: table, path: electrodes.csv}
initial_data: {path: electrodes.csv, ions: [Li]}
surrogate: {members: 2, max_epochs: 12, hidden: [16, 16], input_encoding: standard}
acquisition: {strategy: qlognehvi, mc_samples: 16, shortlist: 12}
compute: {chunk_rows: 16}
batch_size: 3
budget: {rounds: 3, initial_random: 4}
oracle: {name: journaled, options: {path: electrodes.csv}}
"""
CRASH_CALLS = 4 + 3 + 3

#: Imported once by the forkserver, so the runs forked from it start warm.
_PRELOAD = [
    "discovery.cli",
    "discovery.campaign.loop",
    "discovery.campaign.report",
    "discovery.data",
    "discovery.export",
    "discovery.features",
    "discovery.oracles.replay",
    "discovery.plugins",
    "discovery.propose",
    "discovery.propose.strategies",
    "discovery.space",
    "discovery.surrogate",
    "torch._dynamo",
    "botorch",
    "botorch.acquisition.multi_objective.logei",
    "botorch.models.ensemble",
    "botorch.optim.optimize",
    "gpytorch",
    "scipy.optimize",
    "pymatgen.core",
]


def _discover_run(
    argv: list[str], fault: str | None, site: str, log: str, file_limit: int | None
) -> None:
    """A child process: ``discover run ...`` with ``DISCOVERY_FAULT`` set or unset, and with files
    capped at ``file_limit`` bytes when given (writes past it fail with EFBIG as on a full disk;
    SIGXFSZ, which would kill the process, is ignored)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if file_limit is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, resource.RLIM_INFINITY))
    os.environ.pop("DISCOVERY_FAULT", None)
    if fault is not None:
        os.environ["DISCOVERY_FAULT"] = fault
    sys.path.insert(0, site)
    sys.argv = ["discover", "run", *argv]
    from discovery.cli import main

    main()


class Runner:
    """Runs ``discover run`` on one work directory in forked processes and keeps count."""

    def __init__(self, campaign: Path, workdir: Path, site: Path) -> None:
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(_PRELOAD)  # used when this starts the forkserver
        self.argv = [str(campaign), "--workdir", str(workdir), "--no-export"]
        self.workdir, self.site = workdir, site
        self.log = workdir.parent / f"{workdir.name}.log"
        self.runs = 0
        self.kills: Counter[str] = Counter()
        self.landed: Counter[str] = Counter()  # where random kills found the ledger
        self.recorded: set[tuple[Any, ...]] = set()

    def run(
        self,
        fault: str | None = None,
        kill_after_s: float | None = None,
        file_limit: int | None = None,
        expect: int = 0,
    ) -> int:
        """One run; its exit code (-9: killed, else ``expect``). Checks that no result recorded
        before went missing."""
        args = (self.argv, fault, str(self.site), str(self.log), file_limit)
        proc = self.ctx.Process(target=_discover_run, args=args)
        proc.start()
        self.runs += 1
        proc.join(kill_after_s)
        if proc.exitcode is None and kill_after_s is not None:
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGKILL)
        proc.join(120)
        assert proc.exitcode is not None, "a run did not end within 120 s"
        if proc.exitcode == -signal.SIGKILL:
            self.kills[fault.split(":")[0] if fault else "random"] += 1
            if fault is None:
                self.landed[_landing(self.workdir)] += 1
        else:
            assert proc.exitcode == expect, self.log.read_text()[-3000:]
        if "results" in _tables(self.workdir):
            now = set(_rows(self.workdir, "results", "id, candidate_id, status, outcome_values"))
            assert self.recorded <= now, "a result recorded before a kill is gone"
            self.recorded = now
        return proc.exitcode

    def finish(self) -> None:
        """Run without faults until the campaign says it is finished."""
        for _ in range(3):
            self.run()
            if _finished(self.workdir):
                return
        raise AssertionError(f"{self.workdir}: not finished after 3 clean runs")


def _tables(workdir: Path) -> set[str]:
    """The tables of the work directory's ledger: none before the file exists, and none while a
    run killed early had created the file but not yet its schema."""
    if not (workdir / "ledger.sqlite").exists():
        return set()
    db = sqlite3.connect(workdir / "ledger.sqlite")
    try:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def _rows(workdir: Path, table: str, columns: str, order: str = "rowid") -> list[tuple[Any, ...]]:
    db = sqlite3.connect(workdir / "ledger.sqlite")
    try:
        return db.execute(f"SELECT {columns} FROM {table} ORDER BY {order}").fetchall()
    finally:
        db.close()


def _landing(workdir: Path) -> str:
    """Where a kill found the campaign: the last round's state in the ledger (``started``: its
    model training or the pool being scored; ``proposed``: being submitted; ``submitted``: its
    results being collected)."""
    if "rounds" not in _tables(workdir):
        return "no ledger yet"
    rounds = _rows(workdir, "rounds", "round, state", "round")
    return f"round {rounds[-1][0]} {rounds[-1][1]}" if rounds else "no round yet"


def _finished(workdir: Path) -> bool:
    if "events" not in _tables(workdir):
        return False
    events = _rows(workdir, "events", "kind", "id")
    return bool(events) and events[-1][0] == "finished"


#: What must be equal between a resumed and an uninterrupted run (times and event logs aside).
LEDGER_VIEW = {
    "rounds": "round, state, strategy, model_dir, n_train, metrics",
    "proposals": "candidate_id, round, rank, working_ion, formula_charge, formula_discharge, "
    "strategy, acquisition_value, predicted, x",
    "submissions": "candidate_id, job_id, idempotency_key, oracle, round",
    "results": "candidate_id, job_id, round, status, outcome_values, oracle, fidelity, message",
    "initial": "*",
    "meta": "key, value",
}


def ledger_view(workdir: Path) -> dict[str, list[tuple[Any, ...]]]:
    # meta rows are replaced in place (INSERT OR REPLACE), which moves their rowid
    return {
        table: _rows(workdir, table, cols, "key" if table == "meta" else "rowid")
        for table, cols in LEDGER_VIEW.items()
    }


def journal(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.fixture(scope="module")
def crash_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crashes")
    synthetic_electrodes(n_frameworks=40).to_csv(folder / "electrodes.csv", index=False)
    (folder / "campaign.yaml").write_text(CRASH_CAMPAIGN)
    return folder


@dataclass(frozen=True)
class Reference:
    """The uninterrupted run: its ledger and how long it took (s, the forkserver already up)."""

    view: dict[str, list[tuple[Any, ...]]]
    seconds: float


@pytest.fixture(scope="module")
def reference(crash_dir: Path, site: Path) -> Reference:
    runner = Runner(crash_dir / "campaign.yaml", crash_dir / "reference", site)
    warm_up = runner.ctx.Process(target=time.sleep, args=(0,))  # the forkserver's imports
    warm_up.start()  # (its preloads) are not the run's time
    warm_up.join()
    start = time.monotonic()
    assert runner.run() == 0
    seconds = time.monotonic() - start
    assert _finished(crash_dir / "reference")
    return Reference(ledger_view(crash_dir / "reference"), seconds)


#: Deterministic kills, in order, on one work directory: each resumes from the previous one.
PLANNED = [
    "ledger-write:6",  # recording round 0's proposals (the random design)
    "proposed:1",  # round 0 chosen, not recorded
    "submit:1",  # the oracle has the batch, the ledger not the job ids
    "submitted:1",  # job ids recorded, no result yet
    "result:2",  # in the middle of collecting round 0
    "train-epoch:3",  # round 1's ensemble a quarter trained
    "train-epoch:9",
    "model-saved:1",  # round 1's model on disk, not in the ledger
    "score:1",  # round 1 about to score the pool with its saved model
    "score:2",  # the pool scored, the batch being chosen
    "proposed:1",
    "ledger-write:3",  # a resumed run's first step: recording round 1's proposals
    "submit:1",
    "submitted:1",
    "result:1",
    "ledger-write:4",  # round 1's last results or its completion
    "train-epoch:1",  # round 2
    "score:2",
    "proposed:1",
    "submit:1",
    "ledger-write:5",
    "result:2",
]


def _check_against_reference(runner: Runner, reference: Reference) -> dict[str, int]:
    """Equal ledgers, nothing lost, no key that started two jobs; returns the oracle figures."""
    view = ledger_view(runner.workdir)
    for table, rows in reference.view.items():
        assert view[table] == rows, f"{table} differs from the uninterrupted run"
    submissions = view["submissions"]
    assert len(submissions) == CRASH_CALLS
    final = [r for r in view["results"] if r[3] in ("ok", "failed")]
    assert sorted(r[0] for r in final) == sorted(s[0] for s in submissions)  # none lost
    entries = journal(runner.workdir)
    started = Counter(e["key"] for e in entries if e["new"])
    assert set(started) == {s[2] for s in submissions}
    assert max(started.values()) == 1, "an idempotency key started two jobs"
    jobs = {(e["key"], e["job"]) for e in entries}
    assert len(jobs) == len(started), "a re-sent key got another job id"
    return {
        "keys_sent": len(entries),
        "keys_resent": sum(not e["new"] for e in entries),
        "jobs_started_twice": sum(n > 1 for n in started.values()),
    }


@pytest.mark.slow
def test_planned_kills_resume_to_the_uninterrupted_ledger(
    crash_dir: Path, site: Path, reference: Reference
) -> None:
    workdir = crash_dir / "planned"
    runner = Runner(crash_dir / "campaign.yaml", workdir, site)
    missed = []
    for fault in PLANNED:
        if runner.run(fault) != -signal.SIGKILL:
            missed.append(fault)
        if _finished(workdir):
            break
    runner.finish()
    figures = _check_against_reference(runner, reference)
    print(f"\nplanned: {runner.runs} runs, kills {dict(runner.kills)}, missed {missed}, {figures}")
    assert set(runner.kills) >= {"train-epoch", "score", "submitted", "ledger-write"}
    assert sum(runner.kills.values()) == len(PLANNED) and not missed
    # a kill between the oracle's answer and the ledger's record re-sends those keys, and the
    # oracle answers them with the jobs it already has (checked above)
    assert figures["keys_resent"] >= 3 * runner.kills["submit"]
    assert set(runner.kills) <= set(FAULT_STAGES)


@pytest.mark.slow
def test_random_kills_resume_to_the_uninterrupted_ledger(
    crash_dir: Path, site: Path, reference: Reference
) -> None:
    """SIGKILL after a seeded random delay, again and again, until 8 runs were killed; a
    campaign that finishes meanwhile is checked and the next kills go to a fresh one."""
    rng = np.random.default_rng(20261122)
    delays: list[float] = []
    runners: list[Runner] = []
    figures: Counter[str] = Counter()
    while sum(r.kills["random"] for r in runners) < 8:
        assert len(runners) < 10, f"8 random kills not reached, delays {delays} s"
        runner = Runner(crash_dir / "campaign.yaml", crash_dir / f"random-{len(runners)}", site)
        runners.append(runner)
        while not _finished(runner.workdir) and sum(r.kills["random"] for r in runners) < 8:
            # within the first 5-60 % of an uninterrupted run's time (a resumed run has less to
            # do, and the machine's load varies: a late kill may find it finished, and the next
            # kills then go to a fresh campaign)
            delays.append(float(rng.uniform(0.05, 0.6)) * reference.seconds)
            runner.run(kill_after_s=delays[-1])
        runner.finish()
        figures.update(_check_against_reference(runner, reference))
    landed = sum((r.landed for r in runners), Counter[str]())
    print(
        f"\nrandom: {sum(r.runs for r in runners)} runs in {len(runners)} campaign(s), delays "
        f"{[round(d, 2) for d in delays]} s, kills {dict(landed)}, {dict(figures)}"
    )
    assert sum(landed.values()) == 8


# --------------------------------------------------------------------------- oracle faults
ORACLE_CAMPAIGN = """\
name: oracle-faults
seed: 1
ions: [Na, Mg]
space: {kind: table, path: electrodes.csv}
initial_data: {path: electrodes.csv, ions: [Li]}
surrogate: {members: 2, max_epochs: 5, hidden: [16, 16]}
acquisition: {strategy: greedy, shortlist: 8}
batch_size: 2
budget: {rounds: 2, initial_random: 3}
oracle:
  name: faulty
  attempts: ATTEMPTS
  retry_backoff_s: 0.05
  timeout_s: 0.5
  options: {path: electrodes.csv, fault: FAULT, call: CALL, times: TIMES, hang_s: 60}
"""
ROUND_0, ROUND_1 = 3, 2


def oracle_campaign(folder: Path, fault: str, call: str, times: int, attempts: int = 2) -> Path:
    if not (folder / "electrodes.csv").exists():
        synthetic_electrodes(n_frameworks=40).to_csv(folder / "electrodes.csv", index=False)
    text = ORACLE_CAMPAIGN.replace("FAULT", fault).replace("CALL", call)
    path = folder / "campaign.yaml"
    path.write_text(text.replace("TIMES", str(times)).replace("ATTEMPTS", str(attempts)))
    return path


def _events(workdir: Path, kind: str) -> list[dict[str, Any]]:
    return [json.loads(d) for k, d in _rows(workdir, "events", "kind, detail", "id") if k == kind]


@pytest.mark.parametrize("call", ["submit", "poll", "collect"])
@pytest.mark.parametrize("fault", ["raise", "hang"])
def test_an_oracle_call_that_keeps_failing_fails_its_candidates_and_the_campaign_goes_on(
    tmp_path: Path, site: Path, fault: str, call: str
) -> None:
    """Round 0's call raises or hangs on both attempts: its 3 candidates are recorded as failed
    with the reason, round 1 runs as usual, and the run's summary counts the failures."""
    from discovery.campaign import Campaign

    campaign = oracle_campaign(tmp_path, fault, call, times=2, attempts=2)
    workdir = tmp_path / "run"
    start = time.monotonic()
    outcome = Campaign.from_file(campaign, workdir=workdir).run(poll_interval_s=0.02)
    elapsed = time.monotonic() - start
    assert outcome.state == "finished" and outcome.rounds_complete == 2
    assert f"{ROUND_0} candidate(s) failed" in outcome.message
    results = _rows(workdir, "results", "round, status, message, job_id")
    failed = [r for r in results if r[1] == "failed"]
    assert [r[0] for r in failed] == [0] * ROUND_0
    last = "RuntimeError: injected" if fault == "raise" else "TimeoutError: no answer within"
    for r in failed:
        assert r[2].startswith(f"oracle 'faulty': {call} failed 2 time(s), last: {last}")
    assert [r[:2] for r in results if r[1] != "failed"] == [(1, "ok")] * ROUND_1
    if call == "submit":  # never accepted: no job id, but counted against the budget
        assert {r[3] for r in failed} == {""}
    assert len(_rows(workdir, "submissions", "candidate_id")) == ROUND_0 + ROUND_1
    errors = _events(workdir, "oracle_error")
    assert [(e["call"], e["attempt"]) for e in errors] == [(call, 1), (call, 2)]
    assert elapsed < 30  # a hang of 60 s per call did not hold the campaign


@pytest.mark.parametrize(("fault", "call"), [("raise", "collect"), ("hang", "submit")])
def test_a_transient_oracle_fault_is_retried_and_nothing_fails(
    tmp_path: Path, site: Path, fault: str, call: str
) -> None:
    from discovery.campaign import Campaign

    campaign = oracle_campaign(tmp_path, fault, call, times=1, attempts=3)
    workdir = tmp_path / "run"
    outcome = Campaign.from_file(campaign, workdir=workdir).run(poll_interval_s=0.02)
    assert outcome.state == "finished" and "failed" not in outcome.message
    statuses = [r[0] for r in _rows(workdir, "results", "status")]
    assert statuses == ["ok"] * (ROUND_0 + ROUND_1)
    assert [(e["call"], e["attempt"]) for e in _events(workdir, "oracle_error")] == [(call, 1)]
    if call == "submit":  # the abandoned submit and its retry started one job each key
        keys = _rows(workdir, "submissions", "idempotency_key")
        assert len(keys) == len(set(keys)) == ROUND_0 + ROUND_1


def test_partial_results_are_recorded_and_the_rest_polled_again(tmp_path: Path, site: Path) -> None:
    """collect answers one finished job per call: every answer is recorded as it comes, the
    others stay pending, and the campaign ends with every candidate answered once."""
    from discovery.campaign import Campaign
    from discovery.oracles import make_oracle
    from discovery.oracles.base import OracleContext

    campaign = oracle_campaign(tmp_path, "partial", "collect", times=0)
    workdir = tmp_path / "run"
    camp = Campaign.from_file(campaign, workdir=workdir)
    oracle = make_oracle(
        "faulty",
        camp.spec.oracle.options,
        OracleContext(base_dir=tmp_path, workdir=workdir, ions=camp.ions),
    )
    outcome = Campaign(camp.spec, base_dir=tmp_path, workdir=workdir, oracle=oracle).run(
        poll_interval_s=0.02
    )
    assert outcome.state == "finished" and outcome.oracle_calls == ROUND_0 + ROUND_1
    results = _rows(workdir, "results", "candidate_id, status")
    assert [r[1] for r in results] == ["ok"] * (ROUND_0 + ROUND_1)
    assert len({r[0] for r in results}) == ROUND_0 + ROUND_1
    # n finished jobs come back one per collect call: n - 1, then n - 2, ... are held back
    plugin: Any = oracle  # the plugin's own counters
    assert plugin.faults == sum(n * (n - 1) // 2 for n in (ROUND_0, ROUND_1))
    assert plugin.calls["collect"] >= ROUND_0 + ROUND_1
    waits = [k for (k,) in _rows(workdir, "events", "kind") if k == "oracle_error"]
    assert waits == []  # partial answers are not errors


def test_status_and_run_summary_report_oracle_failures(tmp_path: Path, site: Path) -> None:
    from typer.testing import CliRunner

    from discovery.cli import app

    campaign = oracle_campaign(tmp_path, "raise", "poll", times=2, attempts=2)
    workdir = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(
        app, ["run", str(campaign), "--workdir", str(workdir), "--poll-interval", "0.02"]
    )
    assert result.exit_code == 0, result.output
    assert f"{ROUND_0} candidate(s) failed (`discover status` lists why)" in result.output
    status = runner.invoke(app, ["status", str(workdir)])
    assert status.exit_code == 0, status.output
    lines = [line for line in status.output.splitlines() if line.startswith("failed: ")]
    assert len(lines) == ROUND_0
    assert all("(round 0): oracle 'faulty': poll failed 2 time(s)" in line for line in lines)


def test_retry_settings_may_change_on_resume_and_old_workdirs_resume(
    tmp_path: Path, site: Path
) -> None:
    """A work directory whose stored spec predates the retry settings and compute.min_free_mb
    resumes; the retry settings may change between runs, the oracle's options may not."""
    from discovery.campaign import Campaign, Ledger
    from discovery.errors import DiscoveryError

    campaign = oracle_campaign(tmp_path, "raise", "collect", times=0)
    workdir = tmp_path / "run"
    assert Campaign.from_file(campaign, workdir=workdir).run(max_rounds=1).oracle_calls == 3
    ledger = Ledger(workdir / "ledger.sqlite")
    old = ledger.get_meta("spec")
    for key in ("attempts", "retry_backoff_s", "timeout_s"):
        del old["oracle"][key]
    del old["compute"]["min_free_mb"]
    ledger.set_meta("spec", old)
    ledger.close()
    retried = campaign.read_text().replace("timeout_s: 0.5", "timeout_s: 5")
    campaign.write_text(retried.replace("times: 0", "times: 1"))  # another oracle
    with pytest.raises(DiscoveryError, match="different oracle"):
        Campaign.from_file(campaign, workdir=workdir).run()
    campaign.write_text(retried.replace("attempts: 2", "attempts: 4"))
    outcome = Campaign.from_file(campaign, workdir=workdir).run(poll_interval_s=0.02)
    assert outcome.state == "finished" and outcome.oracle_calls == ROUND_0 + ROUND_1


# --------------------------------------------------------------------------- work directories
def _discover(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``discover ...`` in a new process (the command line as a user runs it)."""
    cmd = [sys.executable, "-m", "discovery.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)


def _snapshot(workdir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(workdir.iterdir()) if p.is_file()}


def _without_dac_override() -> None:
    """A preexec function: as root, drop the capabilities that let root write through permission
    bits (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from the bounding set, so a read-only folder is
    read-only for the command too."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused")


def test_a_read_only_workdir_is_refused_before_any_oracle_call(
    crash_dir: Path, site: Path, tmp_path: Path
) -> None:
    """A work directory the command cannot write: exit 2 naming it, before the ledger is opened
    or the oracle created (the oracle's journal would show a call), everything left as it was."""
    workdir = tmp_path / "run"
    argv = ["run", str(crash_dir / "campaign.yaml"), "--workdir", str(workdir), "--max-rounds"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    done = _discover([*argv, "1"], env=env)
    assert done.returncode == 0, done.stderr
    before = _snapshot(workdir)
    assert {"ledger.sqlite", "journal.jsonl"} <= set(before)
    workdir.chmod(0o555)
    try:
        try:
            as_user = {"preexec_fn": _without_dac_override} if os.geteuid() == 0 else {}
            done = _discover([*argv, "2"], env=env, **as_user)
        except subprocess.SubprocessError as exc:
            pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE here ({exc})")
    finally:
        workdir.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert f"error: {workdir}: work directory is not writable (Permission denied)" in done.stderr
    assert "candidate pool" not in done.stderr  # stopped before any preparation
    assert _snapshot(workdir) == before


def test_a_full_workdir_is_refused_before_any_oracle_call(
    crash_dir: Path, site: Path, tmp_path: Path
) -> None:
    """Less free space than ``compute.min_free_mb``: exit 2 naming the directory and the setting,
    nothing recorded, the oracle never created; with the setting met the same run goes ahead."""
    from typer.testing import CliRunner

    from discovery.cli import app

    free_mb = shutil.disk_usage(tmp_path).free / 1e6
    campaign = tmp_path / "campaign.yaml"
    shutil.copy(crash_dir / "electrodes.csv", tmp_path / "electrodes.csv")
    text = CRASH_CAMPAIGN.replace(
        "{chunk_rows: 16}", f"{{chunk_rows: 16, min_free_mb: {free_mb * 10:.0f}}}"
    )
    campaign.write_text(text)
    workdir = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(campaign), "--workdir", str(workdir)])
    assert result.exit_code == 2, result.output
    assert f"{workdir}: only " in result.output
    assert f"compute.min_free_mb = {free_mb * 10:.0f} MB" in result.output
    assert sorted(p.name for p in workdir.iterdir()) == []  # no ledger, no oracle journal
    campaign.write_text(text.replace(f"min_free_mb: {free_mb * 10:.0f}", "min_free_mb: 1"))
    result = runner.invoke(
        app, ["run", str(campaign), "--workdir", str(workdir), "--max-rounds", "1"]
    )
    assert result.exit_code == 0, result.output
    assert len(journal(workdir)) == 4


def _no_file_growth() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))


def test_a_disk_that_fills_up_stops_the_run_cleanly_and_the_resume_loses_nothing(
    crash_dir: Path, site: Path, reference: Reference
) -> None:
    """Files capped at 0 bytes: the start check refuses the work directory. Capped at 200 kB: the
    ledger cannot grow in the middle of the campaign; the step is rolled back, the run stops with
    exit 2 naming the ledger, and the resume (no cap) ends with the uninterrupted run's ledger."""
    workdir = crash_dir / "full"
    argv = ["run", str(crash_dir / "campaign.yaml"), "--workdir", str(workdir)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    done = _discover(argv, env=env, preexec_fn=_no_file_growth)  # stderr is a pipe: uncapped
    assert done.returncode == 2, done.stderr
    assert f"{workdir}: work directory is not writable (File too large)" in done.stderr
    assert not (workdir / "ledger.sqlite").exists()
    runner = Runner(crash_dir / "campaign.yaml", workdir, site)
    runner.run(file_limit=200_000, expect=2)
    log = runner.log.read_text()
    assert f"error: {workdir / 'ledger.sqlite'}: could not record this step" in log
    assert "Traceback" not in log
    assert len(runner.recorded) >= 4  # round 0 was recorded before the disk filled
    runner.finish()
    assert ledger_view(workdir) == reference.view


def test_a_model_that_does_not_fit_on_the_disk_stops_the_run_cleanly(
    crash_dir: Path, site: Path
) -> None:
    """Files capped at 500 kB: the ledger fits, round 1's model (the default mixed encoding's
    shared 256-unit layer, about 1.7 MB) does not. The run stops with exit 2 naming the model's
    directory, the ledger names no model for that round, and the resume (no cap) finishes."""
    campaign = crash_dir / "default-encoding.yaml"
    campaign.write_text(CRASH_CAMPAIGN.replace(", input_encoding: standard", ""))
    workdir = crash_dir / "model-too-large"
    runner = Runner(campaign, workdir, site)
    runner.run(file_limit=500_000, expect=2)
    log = runner.log.read_text()
    model_dir = workdir / "models" / "round-001"
    assert f"error: {model_dir}: could not save round 1's model (File too large)" in log
    assert "Traceback" not in log
    assert len(runner.recorded) >= 4  # round 0's results stay recorded
    assert {dir_ for (dir_,) in _rows(workdir, "rounds", "model_dir")} == {None}
    runner.finish()
    assert (model_dir / "weights.pt").stat().st_size > 500_000
