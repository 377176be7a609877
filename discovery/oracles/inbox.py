"""The lab oracle: a CSV inbox in the campaign's work directory (a laboratory answers by file).

For each batch, :meth:`LabInboxOracle.submit` writes ``requests/round-NNN.csv``: one row per
candidate with its formulas, the surrogate's prediction and empty result columns whose units are in
their names (``average_voltage_V``, ``capacity_grav_mAh_g``, ``max_delta_volume_fraction``,
``status``, ``note``). The lab fills in rows (all at once or a few at a time) and saves them as
``results/round-NNN.csv`` (any ``results/round-*.csv`` is read); :meth:`LabInboxOracle.poll` and
:meth:`LabInboxOracle.collect` read those files every time they are called and never block.

Every filled row is validated on its own, and a bad one comes back as a ``rejected`` result whose
message starts with the file and line (``results/round-001.csv:4 average_voltage_V: 'abc' is not a
number``): non-numeric, empty, NaN or infinite values, values out of a sane range, a column whose
unit is not known, a missing voltage column, a candidate id that was never requested, and several
rows with different answers for one candidate. The campaign records rejected rows and keeps them
out of training; the job stays open (``accepts_corrections``), so a corrected row (the file edited,
or a new file) is accepted later. A row whose result cells are all empty is not an answer yet.
Nothing already recorded is overwritten: once a candidate has its result, later rows for it are
not read (the campaign no longer asks for it).

Job ids are ``"lab:" + candidate id``, so resubmitting a request returns the same job id, and a
request already in its round's file is not written twice. File names are built from the round
number only, never from user text. Text cells of request files that a spreadsheet would run as a
formula (starting with ``= + - @``, a tab or a carriage return) are written with a leading ``'``
(:mod:`discovery._csvsafe`); candidate ids are read back with or without it.
"""

from __future__ import annotations

__all__ = ["QUANTITIES", "LabInboxOptions", "LabInboxOracle", "Quantity"]

import csv
import hashlib
import io
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from discovery._csvsafe import escape_cell, unescape_cell
from discovery.chemistry.ions import DEFAULT_IONS, IonTable
from discovery.errors import DiscoveryError
from discovery.oracles.base import (
    JobStatus,
    OracleContext,
    Request,
    Result,
    parse_options,
    utc_now,
)

_PREFIX = "lab:"
REQUESTS_DIR = "requests"
RESULTS_DIR = "results"
_RESULTS_GLOB = "round-*.csv"
_ID = "candidate_id"
_STATUS = "status"
_NOTE = "note"


@dataclass(frozen=True)
class Quantity:
    """A measured outcome the lab may report, with the units its column name may carry.

    Attributes:
        name: the outcome's name in :class:`~discovery.oracles.Result` values.
        unit: the unit written in request files (column ``<name>_<unit>``).
        factors: accepted units and the factor that converts a value in that unit to ``unit``.
        low / high: the sane range in ``unit``; a value outside it is rejected.
        required: a result row must give it (unless its status is ``failed``).
        scale_hint: (threshold, unit): a value whose magnitude exceeds the threshold in the
            column's default unit was probably written in this other unit.
    """

    name: str
    unit: str
    factors: Mapping[str, float]
    low: float
    high: float
    required: bool = False
    scale_hint: tuple[float, str] | None = None

    @property
    def column(self) -> str:
        """The column name written in request files, e.g. ``average_voltage_V``."""
        return f"{self.name}_{self.unit}"


#: Outcomes a lab may report, in request-file column order. Voltages are vs the ion metal.
QUANTITIES: tuple[Quantity, ...] = (
    Quantity(
        "average_voltage",
        "V",
        {"V": 1.0, "mV": 1e-3},
        -1.0,
        7.0,
        required=True,
        scale_hint=(100.0, "mV"),
    ),
    Quantity("capacity_grav", "mAh_g", {"mAh_g": 1.0, "Ah_kg": 1.0}, 0.0, 4000.0),
    Quantity(
        "max_delta_volume",
        "fraction",
        {"fraction": 1.0, "percent": 0.01},
        0.0,
        1.0,
        scale_hint=(1.0, "percent"),
    ),
)
_UNIT_TEXT = {"mAh_g": "mAh/g", "Ah_kg": "Ah/kg", "fraction": "", "percent": "%"}


class LabInboxOptions(BaseModel):
    """``oracle.options`` of the lab oracle."""

    model_config = ConfigDict(extra="forbid")

    fidelity: str = Field(
        default="experiment",
        min_length=1,
        description="Fidelity label of the lab's answers. Default: 'experiment'.",
    )


@dataclass(frozen=True)
class _Answer:
    """What the results files say about one candidate (after combining its rows)."""

    status: Literal["ok", "failed", "rejected"]
    values: dict[str, float]
    message: str
    finished_at: str


@dataclass
class _Row:
    """One filled row of a results file."""

    where: str
    candidate_id: str
    status: Literal["ok", "failed", "rejected"]
    values: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    note: str = ""
    finished_at: str = ""

    @property
    def message(self) -> str:
        if self.problems:
            return f"{self.where} " + "; ".join(self.problems)
        text = self.where + (" failed" if self.status == "failed" else "")
        return text + (f": {self.note}" if self.note else "")


@dataclass
class _Scan:
    """All results files read once: answers by candidate and rows no job can take."""

    answers: dict[str, _Answer]
    orphans: list[tuple[str, str]]  # (candidate id or "", message)


class LabInboxOracle:
    """Requests and results as CSV files in the work directory; see the module docstring."""

    name = "lab"
    #: A rejected row keeps its job open: a corrected row may answer it later.
    accepts_corrections = True

    def __init__(
        self, workdir: Path, fidelity: str = "experiment", ions: IonTable = DEFAULT_IONS
    ) -> None:
        self.workdir = Path(workdir)
        self.fidelity = fidelity
        self.ions = ions
        self._asked: set[str] = set()  # candidate ids of jobs the campaign asked about
        self._open: list[str] = []  # the job ids of the last poll
        self._reported: set[str] = set()  # orphan messages already returned by collect
        self._scan_key: tuple[Any, ...] | None = None
        self._scan_cache: _Scan | None = None
        self._requests_key: tuple[Any, ...] | None = None
        self._requested: dict[str, Path] = {}

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: OracleContext) -> LabInboxOracle:
        opts = parse_options(LabInboxOptions, options, "lab")
        return cls(context.workdir, opts.fidelity, context.ions)

    @property
    def requests_dir(self) -> Path:
        return self.workdir / REQUESTS_DIR

    @property
    def results_dir(self) -> Path:
        return self.workdir / RESULTS_DIR

    # ------------------------------------------------------------------ submit
    def submit(self, requests: Sequence[Request]) -> list[str]:
        """Append each request to its round's file (once per candidate); return the job ids."""
        by_round: dict[int, list[Request]] = {}
        for r in requests:
            if isinstance(r.round, bool) or not isinstance(r.round, int) or r.round < 0:
                raise DiscoveryError(f"lab oracle: round must be an integer >= 0, got {r.round!r}")
            by_round.setdefault(r.round, []).append(r)
        self.requests_dir.mkdir(parents=True, exist_ok=True)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        for round_, batch in sorted(by_round.items()):
            self._write_requests(self.requests_dir / f"round-{round_:03d}.csv", batch)
        return [_PREFIX + r.candidate_id for r in requests]

    def _write_requests(self, path: Path, batch: Sequence[Request]) -> None:
        text = path.read_text(encoding="utf-8-sig") if path.is_file() else ""
        header, present = _request_header_and_ids(text)
        new: list[Request] = []
        for r in batch:
            if r.candidate_id not in present:
                present.add(r.candidate_id)
                new.append(r)
        if not new:
            return
        header = header or _request_columns()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        if not text.strip():
            text = ""
            writer.writeheader()
        elif not text.endswith("\n"):
            text += "\n"
        for r in new:
            writer.writerow(self._request_row(r))
        _write_atomic(path, text + out.getvalue())

    def _request_row(self, r: Request) -> dict[str, str]:
        row = {  # text a spreadsheet would run as a formula gets a leading ' (read back without)
            _ID: escape_cell(r.candidate_id),
            "working_ion": escape_cell(r.working_ion),
            "formula_charge": escape_cell(r.formula_charge),
            "formula_discharge": escape_cell(r.formula_discharge),
            "theoretical_capacity_grav_mAh_g": _number(self._capacity(r)),
        }
        for q in QUANTITIES:
            row[f"predicted_{q.column}"] = _number(r.predicted.get(f"{q.name}_mean"))
            row[f"predicted_{q.name}_std_{q.unit}"] = _number(r.predicted.get(f"{q.name}_std"))
        return row

    def _capacity(self, r: Request) -> float | None:
        from discovery.chemistry import insertion_pair

        try:
            pair = insertion_pair(r.formula_charge, r.formula_discharge, r.working_ion, self.ions)
        except DiscoveryError:
            return None
        return float(pair.capacity_grav_mah_g)

    # ------------------------------------------------------------------ poll and collect
    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """``done`` for jobs with a filled row (good or rejected), ``failed`` when the lab says so,
        ``pending`` otherwise. Reads the results files; never blocks."""
        self._open = list(job_ids)
        self._asked.update(_candidate(j) for j in job_ids if j.startswith(_PREFIX))
        answers = self._scan().answers
        states: dict[str, JobStatus] = {}
        for job in job_ids:
            if not job.startswith(_PREFIX):
                states[job] = "failed"
                continue
            answer = answers.get(_candidate(job))
            if answer is None:
                states[job] = "pending"
            else:
                states[job] = "failed" if answer.status == "failed" else "done"
        return states

    def collect(self, job_ids: Sequence[str]) -> list[Result]:
        """Results of the answered jobs among ``job_ids``, then each row no open job can take
        (unknown candidate id, unreadable file) once per process, with ``job_id`` ``""``."""
        self._asked.update(_candidate(j) for j in job_ids if j.startswith(_PREFIX))
        scan = self._scan()
        out: list[Result] = []
        for job in job_ids:
            if not job.startswith(_PREFIX):
                out.append(self._result("", job, "failed", {}, f"not a lab job id: {job!r}"))
                continue
            cid = _candidate(job)
            answer = scan.answers.get(cid)
            if answer is None:
                continue
            out.append(
                self._result(
                    cid,
                    job,
                    answer.status,
                    answer.values,
                    answer.message,
                    started=self._requested_at(cid),
                    finished=answer.finished_at,
                )
            )
        for cid, message in scan.orphans:
            if message not in self._reported:
                self._reported.add(message)
                out.append(self._result(cid, "", "rejected", {}, message))
        return out

    def close(self) -> None:
        pass

    def waiting_hint(self) -> str:
        """What the lab has to do for the jobs of the last poll: which request file to fill in,
        where to save it, and the rows rejected so far (for the ``discover run`` summary)."""
        scan = self._scan()
        open_ids = [
            cid
            for cid in (_candidate(j) for j in self._open if j.startswith(_PREFIX))
            if cid not in scan.answers or scan.answers[cid].status == "rejected"
        ]
        if not open_ids:
            return ""
        waiting: dict[str, int] = {}
        rejected: list[str] = []
        missing: list[str] = []
        for cid in open_ids:
            answer = scan.answers.get(cid)
            if answer is not None and answer.status == "rejected":
                rejected.append(answer.message)
            path = self._requested.get(cid)
            if path is None:
                missing.append(cid)
            else:
                waiting[path.name] = waiting.get(path.name, 0) + 1
        optional = ", ".join(q.column for q in QUANTITIES if not q.required)
        lines = [
            f"the lab has {len(open_ids)} open request(s); fill in {QUANTITIES[0].column} "
            f"(optionally {optional}; or status 'failed' with a note) and save:"
        ]
        for name, count in sorted(waiting.items()):
            lines.append(
                f"  {self.requests_dir / name} as {self.results_dir / name} "
                f"({count} candidate(s) without an accepted result)"
            )
        if missing:
            lines.append(
                f"  {len(missing)} candidate(s) whose request file is gone (write their rows by "
                f"{_ID}): {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
            )
        lines.append(
            f"partial files are fine and every {RESULTS_DIR}/{_RESULTS_GLOB} is read; "
            "then run `discover run` again"
        )
        if rejected:
            lines.append(
                f"{len(rejected)} answer(s) rejected (correct the row, or add a corrected "
                f"{RESULTS_DIR}/{_RESULTS_GLOB}):"
            )
            lines += [f"  {m}" for m in rejected[:10]]
            if len(rejected) > 10:
                lines.append(f"  ... and {len(rejected) - 10} more (discover status)")
        orphans = [m for _, m in scan.orphans]
        if orphans:
            lines.append(f"{len(orphans)} row(s) ignored:")
            lines += [f"  {m}" for m in orphans[:10]]
        return "\n".join(lines)

    def _result(
        self,
        cid: str,
        job: str,
        status: Literal["ok", "failed", "rejected"],
        values: Mapping[str, float],
        message: str,
        started: str | None = None,
        finished: str | None = None,
    ) -> Result:
        now = utc_now()
        return Result(
            candidate_id=cid,
            job_id=job,
            status=status,
            values=dict(values),
            oracle=self.name,
            fidelity=self.fidelity,
            started_at=started or finished or now,
            finished_at=finished or now,
            message=message,
        )

    # ------------------------------------------------------------------ reading the files
    def _refresh_requests(self) -> None:
        """Candidate ids of every request file (to tell an unknown id from an answered one)."""
        files = sorted(self.requests_dir.glob("round-*.csv")) if self.requests_dir.is_dir() else []
        key = tuple((f.name, *_stamp(f)) for f in files)
        if key == self._requests_key:
            return
        requested: dict[str, Path] = {}
        for path in files:
            try:
                _, ids = _request_header_and_ids(path.read_text(encoding="utf-8-sig"))
            except (OSError, UnicodeDecodeError, csv.Error):
                continue
            for cid in ids:
                requested.setdefault(cid, path)
        self._requested, self._requests_key = requested, key

    def _requested_at(self, cid: str) -> str | None:
        path = self._requested.get(cid)
        try:
            return _iso(path.stat().st_mtime) if path is not None else None
        except OSError:
            return None

    def _scan(self) -> _Scan:
        """Read every results file (again only when one changed) and combine rows by candidate."""
        self._refresh_requests()
        files = sorted(self.results_dir.glob(_RESULTS_GLOB)) if self.results_dir.is_dir() else []
        snapshot: list[tuple[str, bytes | OSError, float]] = []
        for path in files:
            rel = path.relative_to(self.workdir).as_posix()
            try:
                snapshot.append((rel, path.read_bytes(), path.stat().st_mtime))
            except OSError as exc:
                snapshot.append((rel, exc, 0.0))
        key = (
            tuple(
                (rel, hashlib.sha256(d).hexdigest() if isinstance(d, bytes) else str(d))
                for rel, d, _ in snapshot
            ),
            self._requests_key,
            frozenset(self._asked),
        )
        if key == self._scan_key and self._scan_cache is not None:
            return self._scan_cache
        rows: dict[str, list[_Row]] = {}
        orphans: list[tuple[str, str]] = []
        for rel, data, mtime in snapshot:
            for row in _read_results(rel, data, mtime, orphans):
                rows.setdefault(row.candidate_id, []).append(row)
        known = set(self._requested) | self._asked
        answers: dict[str, _Answer] = {}
        for cid, group in rows.items():
            if cid not in known:
                orphans += [
                    (
                        cid,
                        f"{r.where} {_ID}: {cid!r} was never requested (not in "
                        f"{REQUESTS_DIR}/round-*.csv); check the id{_lookalike_hint(cid)}",
                    )
                    for r in group
                ]
                continue
            answers[cid] = _combine(cid, group)
        self._scan_cache = _Scan(answers, orphans)
        self._scan_key = key
        return self._scan_cache


# ====================================================================== helpers
def _lookalike_hint(text: str) -> str:
    """Names the first character of an id that is not ASCII (ids are ASCII; a Cyrillic 'с'
    prints exactly like a Latin 'c')."""
    import unicodedata

    for char in text:
        if not char.isascii():
            name = unicodedata.name(char, "unnamed character")
            return f" (it holds {char!r}, U+{ord(char):04X} {name}; ids are plain ASCII)"
    return ""


def _candidate(job: str) -> str:
    return job[len(_PREFIX) :]


def _request_columns() -> list[str]:
    """Columns of a request file: the candidate, the predictions, then the empty result columns."""
    cols = [_ID, "working_ion", "formula_charge", "formula_discharge"]
    cols.append("theoretical_capacity_grav_mAh_g")
    for q in QUANTITIES:
        cols += [f"predicted_{q.column}", f"predicted_{q.name}_std_{q.unit}"]
    return [*cols, *(q.column for q in QUANTITIES), _STATUS, _NOTE]


#: Request-file columns that describe the candidate; a lab's copy keeps them (they are not read).
_REQUEST_INFO = frozenset(
    c for c in _request_columns() if c not in {_STATUS, _NOTE, *(q.column for q in QUANTITIES)}
)


def _request_header_and_ids(text: str) -> tuple[list[str], set[str]]:
    """The header and the candidate ids of a request file's text (empty when there is none)."""
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        return [], set()
    header = [c.strip() for c in rows[0]]
    if _ID not in header:
        return header, set()
    i = header.index(_ID)
    return header, {unescape_cell(r[i].strip()) for r in rows[1:] if len(r) > i and r[i].strip()}


def _number(value: Any) -> str:
    """A prediction as a CSV cell: 4 significant digits, empty when missing or not finite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    return f"{v:.4g}" if math.isfinite(v) else ""


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half a file)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, -1)
    return (st.st_mtime_ns, st.st_size)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class _Column:
    """A result column of a results file: its index, quantity and unit factor."""

    index: int
    header: str
    quantity: Quantity
    unit: str
    factor: float


def _header_columns(header: list[str]) -> tuple[list[_Column], list[str]]:
    """Result columns of a results file's header, and problems with the header."""
    columns: list[_Column] = []
    problems: list[str] = []
    seen = {h for h in header if h}
    dupes = sorted({h for h in seen if header.count(h) > 1})
    if dupes:
        problems.append(f"column(s) {', '.join(map(repr, dupes))} appear more than once")
    for q in QUANTITIES:
        mine = [(i, h) for i, h in enumerate(header) if h == q.name or h.startswith(q.name + "_")]
        known = " or ".join(f"{q.name}_{u}" for u in q.factors)
        for i, h in mine:
            unit = h[len(q.name) + 1 :]
            if not unit:
                problems.append(f"column {h!r} has no unit; name it {known}")
            elif unit not in q.factors:
                problems.append(f"column {h!r}: unknown unit {unit!r}; name it {known}")
            else:
                columns.append(_Column(i, h, q, unit, q.factors[unit]))
        if len(mine) > 1:
            problems.append(f"{len(mine)} columns for {q.name} ({', '.join(h for _, h in mine)})")
        if q.required and not mine:
            problems.append(
                f"no {q.name} column (the header has: {', '.join(h for h in header if h)}); "
                f"add {q.column}"
            )
    return columns, problems


def _read_results(
    rel: str, data: bytes | OSError, mtime: float, orphans: list[tuple[str, str]]
) -> list[_Row]:
    """The filled rows of one results file (``rel``: its path in the work directory; ``data``: its
    bytes, or why they could not be read), each validated. File-level problems go to ``orphans``
    when no row can be attributed to a candidate, else onto every filled row of the file."""
    if isinstance(data, OSError):
        orphans.append(("", f"{rel}: cannot be read ({data.strerror or data})"))
        return []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        orphans.append(("", f"{rel}: not UTF-8 text; save it as CSV (UTF-8)"))
        return []
    finished = _iso(mtime)
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    header_line = 0
    columns: list[_Column] = []
    file_problems: list[str] = []
    id_index = status_index = note_index = -1
    result_cells: list[int] = []
    out: list[_Row] = []
    try:
        for cells in reader:
            line = reader.line_num
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            if header is None:
                header, header_line = cells, line
                if _ID not in header:
                    orphans.append(
                        ("", f"{rel}:{line} no {_ID} column (the header has: {', '.join(cells)})")
                    )
                    return []
                id_index = header.index(_ID)
                status_index = header.index(_STATUS) if _STATUS in header else -1
                note_index = header.index(_NOTE) if _NOTE in header else -1
                columns, file_problems = _header_columns(header)
                result_cells = [
                    i
                    for i, h in enumerate(header)
                    if any(h == q.name or h.startswith(q.name + "_") for q in QUANTITIES)
                ]
                if status_index >= 0:
                    result_cells.append(status_index)
                if file_problems:  # e.g. a 'voltage' column: any cell but the request's counts
                    result_cells = [
                        i for i, h in enumerate(header) if h not in _REQUEST_INFO and h != _NOTE
                    ]
                continue
            where = f"{rel}:{line}"

            def cell(i: int, cells: list[str] = cells) -> str:
                return cells[i] if 0 <= i < len(cells) else ""

            if not any(cell(i) for i in result_cells):
                continue  # not measured yet
            cid = unescape_cell(cell(id_index))  # as requested, with or without the quote
            if not cid:
                orphans.append(("", f"{where} {_ID}: empty in a filled row"))
                continue
            row = _Row(where, cid, "ok", note=cell(note_index), finished_at=finished)
            if len(cells) > len(header):
                row.problems.append(
                    f"{len(cells)} cells but the header (line {header_line}) has {len(header)} "
                    "columns"
                )
            if file_problems:
                row.problems += [f"{p} (line {header_line})" for p in file_problems]
            else:
                _parse_row(row, cell(status_index), [(c, cell(c.index)) for c in columns])
            if row.problems:
                row.status = "rejected"
            out.append(row)
    except csv.Error as exc:
        orphans.append(("", f"{rel}:{reader.line_num} not valid CSV ({exc})"))
    return out


_NUMBER_START = re.compile(r"^[-+]?(\d|\.\d)")


def _parse_row(row: _Row, status: str, cells: list[tuple[_Column, str]]) -> None:
    """Fill ``row.values``/``row.status`` from its cells, or add the problems found."""
    status = status.lower()
    if status not in ("", "ok", "failed"):
        row.problems.append(f"{_STATUS}: {status!r} is not 'ok' or 'failed' (or empty)")
        return
    if status == "failed":
        row.status = "failed"
        return
    for col, text in cells:
        q = col.quantity
        if not text:
            if q.required:
                row.problems.append(
                    f"{col.header}: empty (a result row needs it; leave the whole row empty until "
                    f"it is measured, or write status 'failed')"
                )
            continue
        try:
            value = float(text)
        except ValueError:
            hint = ""
            if "," in text:
                hint = " (use a decimal point)"
            elif _NUMBER_START.match(text):
                hint = " (write the number only; the unit is in the column name)"
            row.problems.append(f"{col.header}: {text!r} is not a number{hint}")
            continue
        if not math.isfinite(value):
            row.problems.append(f"{col.header}: {text!r} is not a finite number")
            continue
        converted = value * col.factor
        if not q.low <= converted <= q.high:
            unit = _UNIT_TEXT.get(col.unit, col.unit)
            low, high = q.low / col.factor, q.high / col.factor
            problem = f"{col.header}: {text} is out of range ({low:g} to {high:g}{' ' + unit if unit else ''})"
            if q.scale_hint is not None and col.unit == q.unit and abs(value) > q.scale_hint[0]:
                other = q.scale_hint[1]
                problem += f"; is the column in {other}? then name it {q.name}_{other}"
            row.problems.append(problem)
            continue
        row.values[q.name] = converted


def _combine(cid: str, group: list[_Row]) -> _Answer:
    """One answer from all filled rows of a candidate: the single answer its valid rows agree on;
    rejected when they disagree (naming every row) or when no row is valid."""
    valid = [r for r in group if r.status != "rejected"]
    if valid:
        distinct = {(r.status, tuple(sorted(r.values.items()))) for r in valid}
        if len(distinct) == 1:
            first = valid[0]
            assert first.status != "rejected"
            return _Answer(first.status, first.values, first.message, first.finished_at)
        wheres = ", ".join(r.where for r in valid)
        answers = "; ".join(f"{r.where}: {_describe(r)}" for r in valid)
        return _Answer(
            "rejected",
            {},
            f"{wheres} {_ID}: {cid!r} has {len(valid)} different answers ({answers}); "
            "keep one row per candidate",
            valid[-1].finished_at,
        )
    return _Answer("rejected", {}, "; ".join(r.message for r in group), group[-1].finished_at)


def _describe(row: _Row) -> str:
    if row.status == "failed":
        return "failed"
    by_name = {q.name: q for q in QUANTITIES}
    return ", ".join(
        f"{v:g} {_UNIT_TEXT.get(by_name[k].unit, by_name[k].unit)}".strip()
        for k, v in row.values.items()
    )
