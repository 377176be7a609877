"""Every input of the hostile corpus through the real entry points (see ``expected.yaml``).

Each must be refused with exit status 2 (or recorded as a rejected answer), with a message that
names the file, line, field or row at fault, without a traceback, and without changing anything a
ledger already holds: the ledger file's bytes and every row of every table are compared, not only
the modification time.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from discovery.campaign import Campaign, load_campaign
from discovery.chemistry import parse_formula
from discovery.errors import FormulaError
from discovery.oracles import Result
from discovery.oracles.replay import ReplayOracle
from tests.conftest import synthetic_electrodes
from tests.hostile._harness import (
    CORPUS,
    LAB_CAMPAIGN,
    REPLAY_CAMPAIGN,
    copy_workdir,
    finished_run,
    formulas,
    invoke,
    ledger_rows,
    ledger_table,
    manifest,
    workdir_state,
    write_campaign,
)

MANIFEST = manifest()
CAMPAIGNS = MANIFEST["campaigns"]
TABLES = MANIFEST["tables"]
RESULTS = MANIFEST["results"]
FORMULAS = formulas()
PYTHON_RESULTS: list[dict[str, Any]] = yaml.safe_load(
    (CORPUS / "python_results.yaml").read_text(encoding="utf-8")
)


def _ids(entries: Sequence[dict[str, Any]], key: str = "input") -> list[str]:
    return [str(e[key]) for e in entries]


def _no_traceback(output: str) -> None:
    assert "Traceback" not in output, output


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A folder holding a campaign's data and the work directory of its finished run, with the
    state hostile inputs must leave as it is."""
    folder = tmp_path_factory.mktemp("finished")
    path, workdir = finished_run(folder)
    return {"folder": folder, "campaign": path, "workdir": workdir, "state": workdir_state(workdir)}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained model for `discover predict`."""
    root = tmp_path_factory.mktemp("model")
    synthetic_electrodes(n_frameworks=30).to_csv(root / "train.csv", index=False)
    code, output = invoke(
        "train", "--data", str(root / "train.csv"), "--out", str(root / "model"),
        "--members", "2", "--max-epochs", "5",
    )  # fmt: skip
    assert code == 0, output
    return root / "model"


# ------------------------------------------------------------------------------ campaign files
def _campaign_input(entry: dict[str, Any], folder: Path) -> Path:
    """The corpus file copied next to the campaign data (its relative paths resolve there)."""
    source = CORPUS / entry["input"]
    target = folder / "hostile" / source.name
    target.parent.mkdir(exist_ok=True)
    if not entry.get("absent"):
        shutil.copy(source, target)
        for name in ("electrodes.csv", "pool.csv"):
            if not (target.parent / name).exists():
                shutil.copy(folder / name, target.parent / name)
    else:
        assert not source.exists()
    return target


def test_the_corpus_is_complete() -> None:
    """Every file of the corpus has an expectation, and there are at least 60 inputs."""
    listed = {e["input"] for e in [*CAMPAIGNS, *TABLES, *RESULTS]}
    for folder in ("campaigns", "tables", "results"):
        for path in (CORPUS / folder).iterdir():
            assert f"{folder}/{path.name}" in listed, f"{folder}/{path.name} has no expectation"
    total = len(CAMPAIGNS) + len(TABLES) + len(RESULTS) + len(FORMULAS) + len(PYTHON_RESULTS)
    assert total >= 60


@pytest.mark.parametrize("entry", CAMPAIGNS, ids=_ids(CAMPAIGNS))
def test_campaign_file_is_refused(entry: dict[str, Any], finished: dict[str, Any]) -> None:
    path = _campaign_input(entry, finished["folder"])
    expected = entry["expect"].replace("{file}", str(path))
    workdir = finished["workdir"]

    code, output = invoke("validate", str(path))
    _no_traceback(output)
    assert code == 2, output
    assert expected in output
    assert output.startswith("error: ")

    code, output = invoke("run", str(path), "--workdir", str(workdir))
    _no_traceback(output)
    assert code == 2, output
    assert expected in output
    assert workdir_state(workdir) == finished["state"]  # bytes, rows and files


@pytest.mark.parametrize(
    "entry",
    [e for e in CAMPAIGNS if e.get("subprocess")],
    ids=_ids([e for e in CAMPAIGNS if e.get("subprocess")]),
)
def test_campaign_file_is_refused_by_a_real_process(
    entry: dict[str, Any], finished: dict[str, Any]
) -> None:
    """The same through ``python -m discovery.cli`` in its own process, run in the campaign's
    folder (a ``!!python/object/apply:os.system ["touch pwned"]`` must not create ``pwned``)."""
    path = _campaign_input(entry, finished["folder"])
    expected = entry["expect"].replace("{file}", str(path))
    workdir = finished["workdir"]
    commands = [["validate", str(path)]]
    if "python" in path.name:  # the whole `run` too, where code would run if anything did
        commands.append(["run", str(path), "--workdir", str(workdir)])
    for args in commands:
        done = subprocess.run(
            [sys.executable, "-m", "discovery.cli", *args],
            capture_output=True,
            text=True,
            cwd=path.parent,
            timeout=120,
        )
        _no_traceback(done.stderr)
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr
        assert done.stdout == ""
    assert not (path.parent / "pwned").exists()
    assert workdir_state(workdir) == finished["state"]


def test_alias_bomb_and_deep_nesting_cost_no_memory_or_time(finished: dict[str, Any]) -> None:
    """The billion-laughs document (10^9 strings once expanded) and 10,000 nested lists are
    refused while the YAML is streamed: in a process allowed 1 GiB more than the interpreter
    needs, in well under a second, growing by a few MB at most."""
    child = """\
import resource, sys, time
from discovery.campaign import load_campaign
from discovery.campaign.loader import CampaignError
used = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
limit = used * 1024 + (1 << 30)
resource.setrlimit(resource.RLIMIT_AS, (limit * 4, limit * 4))
start = time.perf_counter()
try:
    load_campaign(sys.argv[1])
except CampaignError as exc:
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - used
    print(exc.line, time.perf_counter() - start, grown)
"""
    for name in ("alias-billion-laughs.yaml", "deep-nesting-flow-10000.yaml"):
        path = _campaign_input({"input": f"campaigns/{name}"}, finished["folder"])
        done = subprocess.run(
            [sys.executable, "-c", child, str(path)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        line, seconds, grown_kib = done.stdout.split()
        assert int(line) >= 1
        assert float(seconds) < 5.0
        assert int(grown_kib) < 100_000


# -------------------------------------------------------------------------------------- formulas
@pytest.mark.parametrize("row", FORMULAS, ids=_ids(FORMULAS, "name"))
def test_formula_is_refused(row: dict[str, str], tmp_path: Path, model_dir: Path) -> None:
    formula = row["formula"]
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    assert row["parser_message"] in str(info.value)
    assert len(str(info.value)) < 500  # a long formula is cut in the message

    table = tmp_path / "candidates.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["working_ion", "formula_charge", "formula_discharge"])
        writer.writerow(["Li", "CoO2", "LiCoO2"])
        writer.writerow(["Li", formula, "LiCoO2"])
    message = row["table_message"] or row["parser_message"]
    for args in (
        ["data", "check", str(table), "--unlabeled"],
        [
            "predict",
            "--model",
            str(model_dir),
            "--input",
            str(table),
            "--out",
            str(tmp_path / "p.csv"),
        ],
    ):
        code, output = invoke(*args)
        _no_traceback(output)
        assert code == 2, output
        assert f"{table}:3 formula_charge: " in output
        assert message in output
    assert not (tmp_path / "p.csv").exists()


# ---------------------------------------------------------------------------------------- tables
def _expected(entry: dict[str, Any], key: str, path: Path) -> str | None:
    text = entry.get(key)
    return None if text in (None, "accepted") else str(text).replace("{file}", str(path))


@pytest.mark.parametrize("entry", TABLES, ids=_ids(TABLES))
def test_table_is_refused(entry: dict[str, Any], tmp_path: Path, model_dir: Path) -> None:
    path = CORPUS / entry["input"]
    labeled = _expected(entry, "labeled", path)
    candidates = _expected(entry, "candidates", path)
    train = _expected(entry, "train", path) or labeled
    assert labeled or candidates or train, "a hostile table must be refused somewhere"
    out = tmp_path / "out"
    runs: list[tuple[list[str], str | None]] = [
        (["data", "check", str(path)], labeled),
        (["data", "check", str(path), "--unlabeled"], candidates),
        (["train", "--data", str(path), "--out", str(out), "--members", "2", "--max-epochs", "2"], train),
        (["predict", "--model", str(model_dir), "--input", str(path), "--out", str(out / "p.csv")], candidates),
    ]  # fmt: skip
    for args, expected in runs:
        if expected is None:
            continue
        code, output = invoke(*args)
        _no_traceback(output)
        assert code == 2, f"{args}: {output}"
        assert expected in output, args
        assert not out.exists()  # nothing written


@pytest.mark.parametrize(
    "entry",
    [e for e in TABLES if e.get("campaign")],
    ids=_ids([e for e in TABLES if e.get("campaign")]),
)
def test_table_as_the_pool_of_a_finished_campaign(entry: dict[str, Any], tmp_path: Path) -> None:
    """The pool file of a finished campaign replaced by a hostile table: the rerun exits 2 naming
    the pool file and line, and the recorded rows stay as they were."""
    path, workdir = finished_run(tmp_path)
    before = ledger_rows(workdir)
    pool = tmp_path / "pool.csv"
    shutil.copy(CORPUS / entry["input"], pool)
    code, output = invoke("run", str(path), "--workdir", str(workdir))
    _no_traceback(output)
    assert code == 2, output
    assert str(entry["candidates"]).replace("{file}", str(pool)) in output
    assert ledger_rows(workdir) == before  # not even a "resumed" event


# ------------------------------------------------------------------------ lab oracle results files
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A lab campaign waiting for three of its four candidates (one answer recorded)."""
    folder = tmp_path_factory.mktemp("lab")
    path = write_campaign(folder, LAB_CAMPAIGN)
    base = folder / "base"
    code, output = invoke("run", str(path), "--workdir", str(base), "--no-wait")
    assert code == 0 and "waiting" in output, output
    with open(base / "requests" / "round-000.csv", newline="") as f:
        ids = [r["candidate_id"] for r in csv.DictReader(f)]
    (base / "results" / "round-000.csv").write_text(
        f"candidate_id,average_voltage_V\n{ids[0]},3.5\n"
    )
    code, output = invoke("run", str(path), "--workdir", str(base), "--no-wait")
    assert code == 0 and "1 result(s) recorded" in output, output
    rows = ledger_rows(base)
    assert [(r[1], r[4]) for r in rows["results"]] == [(ids[0], "ok")]
    return {"folder": folder, "campaign": path, "base": base, "ids": ids, "rows": rows}


def _fill(text: str, ids: list[str]) -> str:
    """Candidate ids in place of ``{c1}`` and ``{c1_cyrillic}`` (the id with a Cyrillic 'с')."""
    return text.replace("{c1_cyrillic}", "\u0441" + ids[1][1:]).replace("{c1}", ids[1])


@pytest.mark.parametrize("entry", RESULTS, ids=_ids(RESULTS))
def test_lab_results_file_is_rejected(entry: dict[str, Any], lab: dict[str, Any]) -> None:
    source = CORPUS / entry["input"]
    name = f"round-000-{source.stem}"
    workdir = copy_workdir(lab["base"], lab["folder"] / name)
    rel = f"results/{name}.csv"
    ids = lab["ids"]
    data = source.read_bytes()  # not all text: placeholders are replaced byte for byte
    for placeholder in ("{c1_cyrillic}", "{c1}"):
        data = data.replace(placeholder.encode(), _fill(placeholder, ids).encode())
    (workdir / rel).write_bytes(data)
    expected = _fill(entry["expect"].replace("{file}", rel), ids)

    code, output = invoke("run", str(lab["campaign"]), "--workdir", str(workdir), "--no-wait")
    _no_traceback(output)
    assert code == 0, output  # a bad answer is the lab's to correct; the campaign waits
    assert expected in output
    before, after = lab["rows"], ledger_rows(workdir)
    for table in ("meta", "rounds", "proposals", "submissions", "initial"):
        assert after[table] == before[table], table
    assert after["results"][: len(before["results"])] == before["results"]
    assert after["events"][: len(before["events"])] == before["events"]
    new = ledger_table(workdir, "results")[len(before["results"]) :]
    events = ledger_table(workdir, "events")[len(before["events"]) :]
    ignored = [json.loads(e["detail"]) for e in events if e["kind"] == "unknown_result"]
    if entry["outcome"] == "rejected":
        assert [(r["candidate_id"], r["status"]) for r in new] == [(ids[1], "rejected")]
        assert expected in new[0]["message"]
    else:
        assert new == []
        assert any(expected in str(e.get("message")) for e in ignored), ignored
    # the job stays open for a corrected row, and nothing of the answer reached training
    answered = {
        r["candidate_id"] for r in ledger_table(workdir, "results") if r["status"] != "rejected"
    }
    assert answered == {ids[0]}
    assert ids[1] in {r["candidate_id"] for r in ledger_table(workdir, "submissions")}


# ----------------------------------------------------------------------- Python oracle's results
class _BrokenOracle(ReplayOracle):
    """Replay answers, each of the first ones replaced by a broken one from the corpus."""

    def __init__(self, table: Any, cases: list[dict[str, Any]]) -> None:
        super().__init__(table, ["average_voltage"], name="broken")
        self.cases = list(cases)
        self.case_of: dict[str, str] = {}

    def collect(self, job_ids: Sequence[str]) -> list[Result]:
        out = []
        for result in super().collect(job_ids):
            if self.cases and result.candidate_id not in self.case_of:
                case = self.cases.pop(0)
                self.case_of[result.candidate_id] = case["name"]
                result = Result(**{**result.__dict__, **case["replace"]})
            out.append(result)
        return out


@pytest.fixture(scope="module")
def python_oracle_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One campaign whose oracle answers every corpus case for one candidate each, plus good
    answers for the rest."""
    folder = tmp_path_factory.mktemp("python-oracle")
    n = len(PYTHON_RESULTS) + 3
    path = write_campaign(
        folder, REPLAY_CAMPAIGN.replace("initial_random: 4", f"initial_random: {n}")
    )
    table = synthetic_electrodes(n_frameworks=30)
    oracle = _BrokenOracle(table, PYTHON_RESULTS)
    workdir = folder / "run"
    outcome = Campaign(load_campaign(path), base_dir=folder, workdir=workdir, oracle=oracle).run(
        wait=False
    )
    return {"workdir": workdir, "outcome": outcome, "case_of": oracle.case_of}


@pytest.mark.parametrize("case", PYTHON_RESULTS, ids=_ids(PYTHON_RESULTS, "name"))
def test_python_oracle_result_is_rejected(
    case: dict[str, Any], python_oracle_run: dict[str, Any]
) -> None:
    workdir = python_oracle_run["workdir"]
    results = ledger_table(workdir, "results")
    by_case = {v: k for k, v in python_oracle_run["case_of"].items()}
    candidate = by_case[case["name"]]
    mine = [(r["status"], r["message"]) for r in results if r["candidate_id"] == candidate]
    if case.get("outcome") == "ignored":
        assert mine == []  # nothing recorded: the answer names no open job
        events = [json.loads(e["detail"]) for e in ledger_table(workdir, "events")]
        assert any(
            e.get("candidate_id") == case["expect"] for e in events if "candidate_id" in e
        ), events
        return
    assert [s for s, _ in mine] == ["rejected", "failed"], mine  # recorded, then the job closed
    assert case["expect"] in mine[0][1]
    assert mine[1][1] == f"answer rejected: {mine[0][1]}"
    # the untouched candidates are answered normally, and no broken value became a measurement
    ok = [json.loads(r["outcome_values"]) for r in results if r["status"] == "ok"]
    assert len(ok) == 3
    assert all(math.isfinite(v["average_voltage"]) and 0 < v["average_voltage"] < 7 for v in ok)
    assert python_oracle_run["outcome"].state == "waiting"  # the ignored answer's job is open
