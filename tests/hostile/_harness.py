"""What the hostile-input tests share: the corpus and its manifest, the command line, small
campaigns that leave a finished ledger behind, and snapshots of a ledger to compare with.

The corpus lives next to this file:

- ``campaigns/``: campaign files (YAML, and bytes that are not YAML at all);
- ``formulas.csv``: formula strings, one a row, with the message each must produce;
- ``tables/``: electrode and candidate tables;
- ``results/``: results files a lab saves for the ``lab`` oracle (``{c1}`` stands for the id of an
  open candidate, ``{c1_cyrillic}`` for the same id written with a Cyrillic 'с');
- ``python_results.yaml``: broken :class:`~discovery.oracles.Result` objects a Python oracle
  returns;
- ``expected.yaml``: for every input, the entry points it goes through and what must come out.
"""

from __future__ import annotations

import csv
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from discovery.cli import app
from tests.conftest import synthetic_electrodes

CORPUS = Path(__file__).resolve().parent

#: A small replay campaign (no training: one random round of 4) whose finished ledger the
#: hostile campaign files are pointed at.
REPLAY_CAMPAIGN = """\
name: hostile
seed: 0
ions: [Na, Mg]
space: {kind: table, path: pool.csv, drop_invalid: false}
initial_data: {path: electrodes.csv, ions: [Li]}
objectives:
  - {name: average_voltage, direction: maximize}
  - {name: capacity_grav, direction: maximize}
surrogate: {members: 2, max_epochs: 8, hidden: [16, 16]}
acquisition: {strategy: qlognehvi, mc_samples: 16, shortlist: 12}
batch_size: 3
budget: {rounds: 1, initial_random: 4}
oracle: {name: replay, options: {path: electrodes.csv}}
"""

#: The same campaign answered by a laboratory through the CSV inbox (``lab`` oracle).
LAB_CAMPAIGN = REPLAY_CAMPAIGN.replace(
    "oracle: {name: replay, options: {path: electrodes.csv}}",
    "oracle: {name: lab, options: {fidelity: experiment}}",
)

_runner = CliRunner()


def manifest() -> dict[str, Any]:
    """``expected.yaml``: the corpus inputs and what each must produce."""
    with open(CORPUS / "expected.yaml", encoding="utf-8") as f:
        data: dict[str, Any] = yaml.safe_load(f)
    return data


def formulas() -> list[dict[str, str]]:
    """``formulas.csv``: name, formula, the message of the parser, the message of a table."""
    with open(CORPUS / "formulas.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def invoke(*args: str) -> tuple[int, str]:
    """Run ``discover`` in this process; the exit status and stdout and stderr together."""
    result = _runner.invoke(app, list(args))
    return result.exit_code, result.output


def write_campaign(folder: Path, text: str = REPLAY_CAMPAIGN) -> Path:
    """A campaign file with its data next to it: the synthetic table, and a pool of its rows."""
    folder.mkdir(parents=True, exist_ok=True)
    table = synthetic_electrodes(n_frameworks=30)
    table.to_csv(folder / "electrodes.csv", index=False)
    pool = table[["working_ion", "formula_charge", "formula_discharge"]]
    pool.to_csv(folder / "pool.csv", index=False)
    path = folder / "campaign.yaml"
    path.write_text(text)
    return path


def finished_run(folder: Path) -> tuple[Path, Path]:
    """A campaign file and its finished work directory (run by the command line)."""
    path = write_campaign(folder)
    workdir = folder / "run"
    code, output = invoke("run", str(path), "--workdir", str(workdir), "--no-export")
    assert code == 0 and "campaign finished" in output, output
    return path, workdir


TABLES = ("meta", "rounds", "proposals", "submissions", "results", "initial", "events")


@contextmanager
def _reading(workdir: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a copy of the ledger (with its write-ahead log, if any): reading the
    ledger itself would leave SQLite's -shm and -wal files in the work directory."""
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("", "-wal"):
            source = workdir / f"ledger.sqlite{suffix}"
            if source.exists():
                shutil.copy(source, Path(tmp) / source.name)
        db = sqlite3.connect(Path(tmp) / "ledger.sqlite")
        try:
            yield db
        finally:
            db.close()


def ledger_rows(workdir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every ledger table, in insertion order."""
    with _reading(workdir) as db:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in TABLES}


def ledger_table(workdir: Path, table: str) -> list[dict[str, Any]]:
    """The rows of one ledger table as mappings of column names."""
    with _reading(workdir) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY rowid")]


def workdir_state(workdir: Path) -> tuple[bytes, dict[str, list[tuple[Any, ...]]], list[str]]:
    """The ledger's bytes, its rows and the files of the work directory."""
    files = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    return (workdir / "ledger.sqlite").read_bytes(), ledger_rows(workdir), files


def copy_workdir(source: Path, target: Path) -> Path:
    """A copy of a work directory next to the same campaign file (the campaign resumes there)."""
    shutil.copytree(source, target)
    return target
