"""The campaign ledger: one SQLite file in the work directory that records every step.

Tables (all times ISO 8601 UTC):

``meta``         key/value facts: schema version, the campaign spec (JSON) and its hash, the
                 reference point once fixed.
``rounds``       one row per round: state (``started`` -> ``proposed`` -> ``submitted`` ->
                 ``complete``), the model checkpoint, the strategy, per-round metrics (JSON).
``proposals``    one row per proposed candidate (the primary key makes proposing a candidate twice
                 impossible): formulas, ion, acquisition value, the surrogate's prediction at
                 proposal time (JSON), the continuous decision vector when there is one.
``submissions``  one row per candidate handed to the oracle: job id and idempotency key.
``results``      append-only: every answer as it arrived (``ok``, ``failed`` or ``rejected`` with the
                 reason), values (JSON, in the units of :class:`discovery.oracles.Result`) and
                 provenance (oracle, fidelity, timestamps).
``initial``      the measured in-scope rows of the initial data (the front a campaign starts from),
                 copied once so status and exports never need the original file.
``events``       a log of what the engine did (resume, lock, waiting), for ``discover status``.

Durability: write-ahead logging with ``synchronous=FULL`` and one transaction per step, so a process
killed at any moment leaves the ledger as it was after the last completed step. Nothing is ever
updated in place except a round's state and metrics; results are only appended.

A file that is not a usable ledger (not SQLite, damaged pages, a table missing, a newer schema, an
emptied ledger in a work directory that holds a campaign's files) raises :class:`LedgerError`
naming the file and is never rewritten; a write the disk refuses (full, read-only) raises
:class:`LedgerError` too, with the step rolled back.

Fault injection (tests only): :func:`fault_point` SIGKILLs the process at a named checkpoint when
the environment variable ``DISCOVERY_FAULT`` asks for it (see :data:`FAULT_STAGES`); unset, a
checkpoint is one dictionary lookup.
"""

from __future__ import annotations

__all__ = ["FAULT_STAGES", "SCHEMA_VERSION", "Ledger", "LedgerError", "fault_point"]

import json
import os
import signal
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from discovery.errors import DiscoveryError
from discovery.oracles.base import Result, utc_now

SCHEMA_VERSION = 1
_FINAL = ("ok", "failed")
_TABLES = ("meta", "rounds", "proposals", "submissions", "results", "initial", "events")
#: Files a work directory holds before its ledger has recorded anything.
_BEFORE_FIRST_STEP = {".lock", ".write-test"}

#: Checkpoints :func:`fault_point` knows, in the order a round meets them.
FAULT_STAGES = {
    "train-epoch": "after each training epoch of a round's ensemble",
    "model-saved": "after a round's model is written, before the ledger records it",
    "score": "before and after the candidate pool is scored by a round's model",
    "proposed": "after a batch is chosen, before the ledger records it",
    "submit": "after the oracle accepted a batch, before the ledger records the job ids",
    "submitted": "after the ledger records the job ids, before any result is collected",
    "result": "after each result is recorded",
    "ledger-write": "inside a ledger transaction, after its statements and before COMMIT",
}
_fault_passes: dict[str, int] = {}


def fault_point(stage: str) -> None:
    """SIGKILL this process on its n-th pass through ``stage`` when ``DISCOVERY_FAULT=stage:n``.

    For crash tests only: the process dies as a power cut or ``kill -9`` would take it, with no
    cleanup. Unset (always, outside tests) this costs one environment lookup. A malformed value or
    an unknown stage raises :class:`~discovery.errors.DiscoveryError`, so a typo cannot make a
    crash test pass without crashing.
    """
    wanted = os.environ.get("DISCOVERY_FAULT")
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name not in FAULT_STAGES or not count.isdigit() or int(count) < 1:
        raise DiscoveryError(
            f"DISCOVERY_FAULT={wanted!r}: expected <stage>:<n> with n >= 1 and a stage among "
            f"{', '.join(FAULT_STAGES)}"
        )
    if name != stage:
        return
    _fault_passes[stage] = _fault_passes.get(stage, 0) + 1
    if _fault_passes[stage] == int(count):
        os.kill(os.getpid(), signal.SIGKILL)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('started', 'proposed', 'submitted', 'complete')),
    strategy TEXT,
    started_at TEXT NOT NULL,
    completed_at TEXT,
    model_dir TEXT,
    n_train INTEGER,
    metrics TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS proposals (
    candidate_id TEXT PRIMARY KEY,
    round INTEGER NOT NULL REFERENCES rounds(round),
    rank INTEGER NOT NULL,
    working_ion TEXT NOT NULL,
    formula_charge TEXT NOT NULL,
    formula_discharge TEXT NOT NULL,
    strategy TEXT NOT NULL,
    acquisition_value REAL,
    predicted TEXT NOT NULL DEFAULT '{}',
    x TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    candidate_id TEXT PRIMARY KEY REFERENCES proposals(candidate_id),
    job_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    oracle TEXT NOT NULL,
    round INTEGER NOT NULL,
    submitted_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    candidate_id TEXT NOT NULL REFERENCES proposals(candidate_id),
    job_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'rejected')),
    outcome_values TEXT NOT NULL,
    oracle TEXT NOT NULL,
    fidelity TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    received_at TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS one_final_result ON results(candidate_id)
    WHERE status IN ('ok', 'failed');
CREATE TABLE IF NOT EXISTS initial (
    candidate_id TEXT PRIMARY KEY,
    working_ion TEXT NOT NULL,
    formula_charge TEXT NOT NULL,
    formula_discharge TEXT NOT NULL,
    outcome_values TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
"""


class LedgerError(DiscoveryError):
    """A ledger file that cannot be used (corrupted, from another program, a newer schema)."""


def _storage_error(exc: sqlite3.Error) -> bool:
    """Whether SQLite failed because the file system refused a write (full, read-only, I/O)."""
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN"))


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else {}


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


class Ledger:
    """The SQLite ledger of one campaign; see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        existed = self.path.exists()
        # An emptied ledger next to a campaign's files is refused before SQLite opens it (opening
        # an empty file writes a fresh header, which would reset it); one next to nothing is a
        # run killed while creating it, and is created again.
        if existed and self.path.stat().st_size < 100 and self._campaign_files():
            raise self._emptied()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from exc
        try:
            self._open(existed)
        except BaseException:  # a ledger refused or not created: no connection stays open
            self._db.close()
            raise

    def _open(self, existed: bool) -> None:
        """Check an existing ledger (before anything can write to it) or create the schema."""
        try:
            tables: set[str] = set()
            if existed:  # checked before any pragma can write to the file
                check = self._db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    detail = "; ".join(check.replace("***", "").split())
                    raise sqlite3.DatabaseError(f"integrity check failed: {detail}")
                tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
            if not (existed and tables and "meta" not in tables):
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from exc
        if existed and tables and "meta" not in tables:
            raise LedgerError(
                f"{self.path}: an SQLite file but not a discovery ledger (no meta table); the "
                "file was left untouched"
            )
        if existed and not tables and self._campaign_files():
            raise self._emptied()
        if existed and "meta" in tables:
            version = self.get_meta("schema_version")
            if version != SCHEMA_VERSION:
                raise LedgerError(
                    f"{self.path}: ledger schema version {version!r}, this discovery reads "
                    f"{SCHEMA_VERSION}"
                )
            missing = [t for t in _TABLES if t not in tables]
            if missing:
                raise LedgerError(
                    f"{self.path}: damaged campaign ledger, table(s) {', '.join(missing)} missing; "
                    "the file was left untouched, restore it from a backup or use a new work "
                    "directory"
                )
            return
        try:  # the schema and its version in one transaction: a half-made ledger cannot exist
            self._db.executescript(
                f"BEGIN IMMEDIATE;\n{_SCHEMA}\nINSERT OR REPLACE INTO meta VALUES "
                f"('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;"
            )
        except sqlite3.OperationalError as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if not _storage_error(exc):
                raise
            raise self._write_error(exc) from exc

    def _unusable(self, exc: sqlite3.Error) -> LedgerError:
        return LedgerError(
            f"{self.path}: not a usable campaign ledger ({exc}); the file was left untouched, "
            "restore it from a backup or use a new work directory"
        )

    def _emptied(self) -> LedgerError:
        return LedgerError(
            f"{self.path}: the ledger is empty ({self.path.stat().st_size} bytes) but the work "
            f"directory holds a campaign's files ({', '.join(self._campaign_files()[:3])}); it was "
            "truncated or replaced. The file was left untouched: restore it from a backup or use "
            "a new work directory"
        )

    def _campaign_files(self) -> list[str]:
        """Names in the ledger's folder that only a campaign that recorded steps leaves."""
        ledger = {self.path.name, f"{self.path.name}-wal", f"{self.path.name}-shm"}
        return sorted(
            p.name
            for p in self.path.parent.iterdir()
            if p.name not in ledger and p.name not in _BEFORE_FIRST_STEP
        )

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic step: everything inside commits together or not at all.

        A write the file system refuses (disk full, read-only, file size limit) rolls the step
        back and raises :class:`LedgerError` naming the ledger.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                fault_point("ledger-write")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if not _storage_error(exc):
                raise
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise self._write_error(exc) from exc

    def _write_error(self, exc: sqlite3.Error) -> LedgerError:
        return LedgerError(
            f"{self.path}: could not record this step ({exc}); nothing of it was written. "
            "Free disk space or make the work directory writable, then run again"
        )

    # ------------------------------------------------------------------ meta and events
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        if self._db.in_transaction:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _dumps(value)))
            return
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _dumps(value)))

    def log(self, kind: str, **detail: Any) -> None:
        """Append an event (its own transaction unless inside one)."""
        row = (utc_now(), kind, _dumps(detail))
        if self._db.in_transaction:
            self._db.execute("INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)", row)
            return
        with self.transaction() as db:
            db.execute("INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)", row)

    def events(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM events ORDER BY id", self._db)

    # ------------------------------------------------------------------ initial data
    def set_initial(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record the in-scope initial rows once (later calls change nothing)."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO initial VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        r["candidate_id"],
                        r["working_ion"],
                        r["formula_charge"],
                        r["formula_discharge"],
                        _dumps(r["values"]),
                    )
                    for r in rows
                ],
            )

    def initial(self) -> pd.DataFrame:
        """The in-scope initial rows with their values as columns."""
        frame = pd.read_sql_query("SELECT * FROM initial ORDER BY rowid", self._db)
        values = pd.DataFrame([json.loads(v) for v in frame["outcome_values"]], index=frame.index)
        return pd.concat([frame.drop(columns=["outcome_values"]), values], axis=1)

    # ------------------------------------------------------------------ rounds
    def rounds(self) -> pd.DataFrame:
        frame = pd.read_sql_query("SELECT * FROM rounds ORDER BY round", self._db)
        frame["metrics"] = [_loads(m) for m in frame["metrics"]]
        return frame

    def round_state(self, round_: int) -> str | None:
        row = self._db.execute("SELECT state FROM rounds WHERE round = ?", (round_,)).fetchone()
        return row[0] if row else None

    def last_round(self) -> int | None:
        row = self._db.execute("SELECT MAX(round) FROM rounds").fetchone()
        return None if row[0] is None else int(row[0])

    def start_round(self, round_: int, strategy: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO rounds (round, state, strategy, started_at) VALUES (?, 'started', ?, ?)",
                (round_, strategy, utc_now()),
            )

    def set_round_model(self, round_: int, model_dir: str, n_train: int) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE rounds SET model_dir = ?, n_train = ? WHERE round = ?",
                (model_dir, n_train, round_),
            )

    def round_model(self, round_: int) -> tuple[str | None, int | None]:
        row = self._db.execute(
            "SELECT model_dir, n_train FROM rounds WHERE round = ?", (round_,)
        ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def set_round_state(
        self, round_: int, state: str, metrics: Mapping[str, Any] | None = None
    ) -> None:
        with self.transaction() as db:
            db.execute("UPDATE rounds SET state = ? WHERE round = ?", (state, round_))
            if state == "complete":
                db.execute(
                    "UPDATE rounds SET completed_at = ? WHERE round = ?", (utc_now(), round_)
                )
            if metrics is not None:
                db.execute(
                    "UPDATE rounds SET metrics = ? WHERE round = ?", (_dumps(metrics), round_)
                )

    # ------------------------------------------------------------------ proposals
    def add_proposals(self, round_: int, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record a round's proposals and mark the round ``proposed``, atomically."""
        now = utc_now()
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO proposals (candidate_id, round, rank, working_ion, formula_charge, "
                "formula_discharge, strategy, acquisition_value, predicted, x, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r["candidate_id"],
                        round_,
                        rank,
                        r["working_ion"],
                        r["formula_charge"],
                        r["formula_discharge"],
                        r["strategy"],
                        r.get("acquisition_value"),
                        _dumps(r.get("predicted", {})),
                        None if r.get("x") is None else _dumps(r["x"]),
                        now,
                    )
                    for rank, r in enumerate(rows)
                ],
            )
            db.execute("UPDATE rounds SET state = 'proposed' WHERE round = ?", (round_,))

    def proposals(self, round_: int | None = None) -> pd.DataFrame:
        query = "SELECT * FROM proposals"
        params: tuple[Any, ...] = ()
        if round_ is not None:
            query, params = query + " WHERE round = ?", (round_,)
        frame = pd.read_sql_query(query + " ORDER BY round, rank", self._db, params=params)
        frame["predicted"] = [_loads(p) for p in frame["predicted"]]
        frame["x"] = [None if x is None else json.loads(x) for x in frame["x"]]
        return frame

    def proposal_formulas(self, candidate_id: str) -> dict[str, str]:
        """``working_ion``, ``formula_charge`` and ``formula_discharge`` of a proposed candidate."""
        row = self._db.execute(
            "SELECT working_ion, formula_charge, formula_discharge FROM proposals "
            "WHERE candidate_id = ?",
            (candidate_id,),
        ).fetchone()
        if row is None:
            raise KeyError(candidate_id)
        return dict(zip(("working_ion", "formula_charge", "formula_discharge"), row))

    def proposed_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT candidate_id FROM proposals")}

    # ------------------------------------------------------------------ submissions
    def add_submissions(self, rows: Sequence[Mapping[str, Any]], oracle: str) -> None:
        """Record job ids for submitted candidates (one transaction)."""
        now = utc_now()
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO submissions VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r["candidate_id"], r["job_id"], r["idempotency_key"], oracle, r["round"], now)
                    for r in rows
                ],
            )

    def add_unsubmitted_failures(
        self, rows: Sequence[Mapping[str, Any]], oracle: str, fidelity: str, message: str
    ) -> None:
        """Close candidates the oracle never accepted (every submit attempt failed): a submission
        without a job id (``job_id`` ``""``) and a ``failed`` result saying why, in one
        transaction, so they count against the budget and never stay open."""
        now = utc_now()
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO submissions VALUES (?, '', ?, ?, ?, ?)",
                [(r["candidate_id"], r["idempotency_key"], oracle, r["round"], now) for r in rows],
            )
            db.executemany(
                "INSERT INTO results (candidate_id, job_id, round, status, outcome_values, oracle, "
                "fidelity, started_at, finished_at, received_at, message) "
                "VALUES (?, '', ?, 'failed', '{}', ?, ?, ?, ?, ?, ?)",
                [
                    (r["candidate_id"], r["round"], oracle, fidelity, now, now, now, message)
                    for r in rows
                ],
            )

    def unsubmitted(self, round_: int) -> pd.DataFrame:
        """Proposals of a round that have no submission yet (in rank order)."""
        return pd.read_sql_query(
            "SELECT p.* FROM proposals p LEFT JOIN submissions s USING (candidate_id) "
            "WHERE p.round = ? AND s.candidate_id IS NULL ORDER BY p.rank",
            self._db,
            params=(round_,),
        )

    def submission_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM submissions").fetchone()[0])

    def open_jobs(self) -> pd.DataFrame:
        """Submissions without a final (``ok`` or ``failed``) result."""
        return pd.read_sql_query(
            "SELECT s.* FROM submissions s WHERE NOT EXISTS (SELECT 1 FROM results r WHERE "
            "r.candidate_id = s.candidate_id AND r.status IN ('ok', 'failed')) "
            "ORDER BY s.round, s.rowid",
            self._db,
        )

    def open_rounds(self) -> list[int]:
        """Rounds that are not complete, oldest first."""
        return [
            int(r[0])
            for r in self._db.execute(
                "SELECT round FROM rounds WHERE state != 'complete' ORDER BY round"
            )
        ]

    # ------------------------------------------------------------------ results
    def add_result(
        self, result: Result, round_: int, status: str | None = None, message: str | None = None
    ) -> bool:
        """Append one answer; ``status``/``message`` override the oracle's (``rejected``).

        Returns False (and writes nothing) when the candidate already has a final result or the
        same answer was already recorded, so collecting twice never duplicates a row.
        """
        status = status or result.status
        message = result.message if message is None else message
        values = (
            _dumps({k: v for k, v in result.values.items()})
            if status != "rejected"
            else json.dumps({k: repr(v) for k, v in result.values.items()}, sort_keys=True)
        )
        with self.transaction() as db:
            final = db.execute(
                "SELECT 1 FROM results WHERE candidate_id = ? AND status IN ('ok', 'failed')",
                (result.candidate_id,),
            ).fetchone()
            same = db.execute(
                "SELECT 1 FROM results WHERE candidate_id = ? AND job_id = ? AND status = ? "
                "AND outcome_values = ? AND message = ?",
                (result.candidate_id, result.job_id, status, values, message),
            ).fetchone()
            if final or same:
                return False
            db.execute(
                "INSERT INTO results (candidate_id, job_id, round, status, outcome_values, oracle, "
                "fidelity, started_at, finished_at, received_at, message) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    result.candidate_id,
                    result.job_id,
                    round_,
                    status,
                    values,
                    result.oracle,
                    result.fidelity,
                    result.started_at,
                    result.finished_at,
                    utc_now(),
                    message,
                ),
            )
        return True

    def close_rejected(
        self, candidate_id: str, job_id: str, round_: int, oracle: str, fidelity: str, message: str
    ) -> None:
        """Close a job whose answers were rejected with a ``failed`` result naming why."""
        now = utc_now()
        self.add_result(
            Result(candidate_id, job_id, "failed", {}, oracle, fidelity, now, now, message), round_
        )

    def results(self, statuses: Sequence[str] = ("ok", "failed", "rejected")) -> pd.DataFrame:
        """Results joined with their proposals, one row per answer, values as columns."""
        marks = ",".join("?" * len(statuses))
        frame = pd.read_sql_query(
            "SELECT r.id, r.candidate_id, r.job_id, r.round, r.status, r.outcome_values, r.oracle, "
            "r.fidelity, r.started_at, r.finished_at, r.received_at, r.message, p.working_ion, "
            "p.formula_charge, p.formula_discharge, p.strategy, p.acquisition_value, p.predicted "
            f"FROM results r JOIN proposals p USING (candidate_id) WHERE r.status IN ({marks}) "
            "ORDER BY r.id",
            self._db,
            params=tuple(statuses),
        )
        values = [
            json.loads(v) if s != "rejected" else {}
            for v, s in zip(frame["outcome_values"], frame["status"])
        ]
        predicted = [_loads(p) for p in frame["predicted"]]
        frame = frame.drop(columns=["outcome_values", "predicted"])
        extra = pd.DataFrame(values, index=frame.index)
        pred = pd.DataFrame(predicted, index=frame.index).add_prefix("predicted_")
        return pd.concat([frame, extra, pred], axis=1)

    def counts(self) -> dict[str, int]:
        """Numbers of proposals, submissions, open jobs and results by status."""
        out = {
            "proposals": int(self._db.execute("SELECT COUNT(*) FROM proposals").fetchone()[0]),
            "submissions": self.submission_count(),
            "open_jobs": len(self.open_jobs()),
        }
        for status in ("ok", "failed", "rejected"):
            out[f"results_{status}"] = int(
                self._db.execute(
                    "SELECT COUNT(*) FROM results WHERE status = ?", (status,)
                ).fetchone()[0]
            )
        return out
