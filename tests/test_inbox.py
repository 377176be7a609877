"""The lab oracle (CSV inbox) with real campaigns, a real SQLite ledger and real files: request
files, waiting, partial and bad results files (reported with file and line, kept out of training),
corrections, resume in a new process object, and the CLI's waiting message."""

from __future__ import annotations

import csv
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from discovery.campaign import Campaign, campaign_status
from discovery.campaign.ledger import Ledger
from discovery.campaign.report import history
from discovery.chemistry import capacity_grav_mah_g
from discovery.cli import app
from discovery.errors import DiscoveryError
from discovery.oracles import OracleContext, Request, make_oracle
from discovery.oracles.inbox import LabInboxOracle
from tests.conftest import synthetic_electrodes

CAMPAIGN = """\
name: lab
seed: 0
ions: [Na, Mg]
space: {{kind: table, path: electrodes.csv}}
initial_data: {{path: electrodes.csv, ions: [Li]}}
objectives:
  - {{name: average_voltage, direction: maximize}}
  - {{name: capacity_grav, direction: maximize}}
surrogate: {{members: 2, max_epochs: 8, hidden: [16, 16]}}
acquisition: {{strategy: qlognehvi, mc_samples: 16, shortlist: 12}}
batch_size: 3
budget: {{rounds: {rounds}, initial_random: {first}}}
oracle: {{name: lab, options: {{fidelity: experiment}}}}
"""
HEADER = (
    "candidate_id,working_ion,formula_charge,formula_discharge,theoretical_capacity_grav_mAh_g,"
    "predicted_average_voltage_V,predicted_average_voltage_std_V,predicted_capacity_grav_mAh_g,"
    "predicted_capacity_grav_std_mAh_g,predicted_max_delta_volume_fraction,"
    "predicted_max_delta_volume_std_fraction,average_voltage_V,capacity_grav_mAh_g,"
    "max_delta_volume_fraction,status,note"
)


def _campaign(tmp_path: Path, rounds: int = 1, first: int = 4) -> Path:
    if not (tmp_path / "electrodes.csv").is_file():
        synthetic_electrodes(n_frameworks=90).to_csv(tmp_path / "electrodes.csv", index=False)
    path = tmp_path / "campaign.yaml"
    path.write_text(CAMPAIGN.format(rounds=rounds, first=first))
    return path


def _run(path: Path, workdir: Path, **kwargs: object) -> str:
    kwargs.setdefault("wait", False)
    return Campaign.from_file(path, workdir=workdir).run(**kwargs).state  # type: ignore[arg-type]


def _requests(workdir: Path, round_: int = 0) -> list[dict[str, str]]:
    with open(workdir / "requests" / f"round-{round_:03d}.csv", newline="") as f:
        return list(csv.DictReader(f))


def _results(workdir: Path, name: str, lines: list[str]) -> None:
    """Write a results file line by line (line 1 is the header), as a lab would."""
    (workdir / "results" / name).write_text("\n".join(lines) + "\n")


def _rows(workdir: Path, columns: str = "candidate_id, status, message") -> list[tuple]:
    with sqlite3.connect(workdir / "ledger.sqlite") as db:
        return db.execute(f"SELECT {columns} FROM results ORDER BY id").fetchall()


def _events(workdir: Path, kind: str) -> list[str]:
    with sqlite3.connect(workdir / "ledger.sqlite") as db:
        return [r[0] for r in db.execute("SELECT detail FROM events WHERE kind = ?", (kind,))]


def test_request_file_lists_the_batch_with_units_and_empty_result_columns(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    assert _run(_campaign(tmp_path), workdir) == "waiting"
    text = (workdir / "requests" / "round-000.csv").read_text()
    assert text.splitlines()[0] == HEADER
    rows = _requests(workdir)
    assert len(rows) == 4
    for row in rows:
        assert row["working_ion"] in ("Na", "Mg")
        assert row["average_voltage_V"] == row["capacity_grav_mAh_g"] == row["status"] == ""
        expected = capacity_grav_mah_g(
            row["formula_charge"], row["formula_discharge"], row["working_ion"]
        )
        assert float(row["theoretical_capacity_grav_mAh_g"]) == pytest.approx(expected, rel=1e-3)
    jobs = Ledger(workdir / "ledger.sqlite").open_jobs()
    assert sorted(jobs["job_id"]) == sorted(f"lab:{r['candidate_id']}" for r in rows)
    assert (workdir / "results").is_dir()
    # running again while nothing came back changes nothing and writes no second request
    assert _run(_campaign(tmp_path), workdir) == "waiting"
    assert (workdir / "requests" / "round-000.csv").read_text() == text
    assert _rows(workdir) == []
    # a row for a candidate never requested is reported even while no job has an answer
    _results(workdir, "round-000.csv", ["candidate_id,average_voltage_V", "c-typo,3.5"])
    assert _run(_campaign(tmp_path), workdir) == "waiting"
    assert _rows(workdir) == []
    (ignored,) = _events(workdir, "unknown_result")
    assert "results/round-000.csv:2 candidate_id: 'c-typo' was never requested" in ignored


def test_submit_is_idempotent_and_names_files_by_round_only(tmp_path: Path) -> None:
    context = OracleContext(base_dir=tmp_path, workdir=tmp_path / "run")
    oracle = make_oracle("lab", {}, context)
    assert isinstance(oracle, LabInboxOracle) and oracle.fidelity == "experiment"
    first = [
        Request("c-1", "Na", "MnO2", "NaMnO2", 0, "x/c-1", {"average_voltage_mean": 3.01234}),
        Request("../../escape", "Na", "FePO4", "NaFePO4", 0, "x/e", {"average_voltage_std": 0.2}),
    ]
    ids = oracle.submit(first)
    assert ids == ["lab:c-1", "lab:../../escape"]
    assert oracle.submit(first) == ids  # the same keys: the same jobs, no second row
    later = Request("c-2", "Mg", "CoO2", "Mg0.5CoO2", 7, "x/c-2")
    assert oracle.submit([*first, later]) == [*ids, "lab:c-2"]
    assert sorted(p.name for p in (tmp_path / "run" / "requests").iterdir()) == [
        "round-000.csv",
        "round-007.csv",
    ]
    rows = _requests(tmp_path / "run")
    assert [r["candidate_id"] for r in rows] == ["c-1", "../../escape"]
    assert rows[0]["predicted_average_voltage_V"] == "3.012"
    assert rows[1]["predicted_average_voltage_std_V"] == "0.2"
    assert rows[1]["predicted_average_voltage_V"] == ""
    assert [r["candidate_id"] for r in _requests(tmp_path / "run", 7)] == ["c-2"]
    assert not list((tmp_path / "run" / "requests").glob(".*"))  # no temporary file left
    with pytest.raises(DiscoveryError, match=r"oracle 'lab': oracle.options.bogus: Extra inputs"):
        make_oracle("lab", {"bogus": 1}, context)


def test_partial_results_are_recorded_and_the_rest_waits(tmp_path: Path) -> None:
    path = _campaign(tmp_path)
    workdir = tmp_path / "run"
    assert _run(path, workdir) == "waiting"
    reqs = _requests(workdir)
    ids = [r["candidate_id"] for r in reqs]
    # the lab copies the request file and fills in two rows (with capacity in Ah/kg, volume in %)
    _results(
        workdir,
        "round-000.csv",
        [
            "candidate_id,average_voltage_V,capacity_grav_Ah_kg,max_delta_volume_percent,note",
            f"{ids[0]},3.41,150,4.5,cycled at C/10",
            f"{ids[1]},,,,",
            f"{ids[2]},2.95,,,",
            f"{ids[3]},,,,",
        ],
    )
    assert _run(path, workdir) == "waiting"
    rows = _rows(workdir, "candidate_id, status, message, oracle, fidelity, outcome_values")
    assert [r[:5] for r in rows] == [
        (ids[0], "ok", "results/round-000.csv:2: cycled at C/10", "lab", "experiment"),
        (ids[2], "ok", "results/round-000.csv:4", "lab", "experiment"),
    ]
    ok = Ledger(workdir / "ledger.sqlite").results(("ok",)).set_index("candidate_id")
    assert ok.loc[ids[0], "average_voltage"] == 3.41
    assert ok.loc[ids[0], "capacity_grav"] == 150.0
    assert ok.loc[ids[0], "max_delta_volume"] == pytest.approx(0.045)
    # no capacity given: the campaign fills it in from the formulas
    assert ok.loc[ids[2], "capacity_grav"] == pytest.approx(
        float(reqs[2]["theoretical_capacity_grav_mAh_g"]), rel=1e-3
    )
    assert sorted(Ledger(workdir / "ledger.sqlite").open_jobs()["candidate_id"]) == sorted(
        [ids[1], ids[3]]
    )
    # the rest arrives in a second file; the campaign (budget: one round) finishes
    rest = ["candidate_id,average_voltage_V", f"{ids[1]},3.0", f"{ids[3]},failed?"]
    _results(workdir, "round-000-rest.csv", rest)
    assert _run(path, workdir) == "waiting"  # ids[3] is rejected and stays open
    (workdir / "results" / "round-000-rest.csv").write_text(
        f"candidate_id,average_voltage_V,status,note\n{ids[1]},3.0,,\n"
        f"{ids[3]},,failed,did not crystallize\n"
    )
    assert _run(path, workdir) == "finished"
    final = {r[0]: r[1:] for r in _rows(workdir) if r[1] != "rejected"}
    assert final[ids[3]] == ("failed", "results/round-000-rest.csv:3 failed: did not crystallize")
    assert final[ids[1]][0] == "ok"


def test_bad_rows_are_reported_with_file_and_line_and_kept_out_of_training(
    tmp_path: Path,
) -> None:
    path = _campaign(tmp_path, first=8)
    workdir = tmp_path / "run"
    assert _run(path, workdir) == "waiting"
    a, b, c, d, e, f, g, h = (r["candidate_id"] for r in _requests(workdir))
    _results(
        workdir,
        "round-000.csv",
        [
            "candidate_id,average_voltage_V,capacity_grav_mAh_g",
            f"{a},abc,",
            f"{b},nan,",
            f"{c},3700,",
            "c-0000000000000000,3.5,",
            f"{d},3.5,",
            f"{e},inf,",
            f"{f},3.4,-5",
            f"{g},3.3,",
            f'{h},"3,7",',
            f"{d},3.9,",
        ],
    )
    assert _run(path, workdir) == "waiting"
    rows = _rows(workdir)
    messages = {cid: msg for cid, status, msg in rows if status == "rejected"}
    file = "results/round-000.csv"
    assert messages == {
        a: f"{file}:2 average_voltage_V: 'abc' is not a number",
        b: f"{file}:3 average_voltage_V: 'nan' is not a finite number",
        c: f"{file}:4 average_voltage_V: 3700 is out of range (-1 to 7 V); is the column in mV? "
        "then name it average_voltage_mV",
        d: f"{file}:6, {file}:11 candidate_id: {d!r} has 2 different answers ({file}:6: 3.5 V; "
        f"{file}:11: 3.9 V); keep one row per candidate",
        e: f"{file}:7 average_voltage_V: 'inf' is not a finite number",
        f: f"{file}:8 capacity_grav_mAh_g: -5 is out of range (0 to 4000 mAh/g)",
        h: f"{file}:10 average_voltage_V: '3,7' is not a number (use a decimal point)",
    }
    assert [(cid, status) for cid, status, _ in rows if status != "rejected"] == [(g, "ok")]
    unknown = _events(workdir, "unknown_result")
    assert (
        len(unknown) == 1
        and f"{file}:5 candidate_id: 'c-0000000000000000' was never" in (unknown[0])
    )
    # kept out of training and out of the measured history; their jobs stay open
    ledger = Ledger(workdir / "ledger.sqlite")
    assert list(ledger.results(("ok",))["candidate_id"]) == [g]
    measured = history(ledger)
    assert (
        set(measured.loc[measured["status"] == "ok", "candidate_id"]) & {a, b, c, d, e, f, h}
        == set()
    )
    assert len(ledger.open_jobs()) == 7
    ledger.close()
    # reading the unchanged file again (polls in one process, then a new process) adds nothing
    before = _rows(workdir)
    state = Campaign.from_file(path, workdir=workdir).run(
        wait=True, poll_interval_s=0.01, wait_timeout_s=0.3
    )
    assert state.state == "waiting"
    assert _run(path, workdir) == "waiting"
    assert _rows(workdir) == before
    assert len(_events(workdir, "unknown_result")) == 3  # once per process, not once per poll


def test_header_problems_reject_the_rows_naming_the_column(tmp_path: Path) -> None:
    path = _campaign(tmp_path, first=5)
    workdir = tmp_path / "run"
    assert _run(path, workdir) == "waiting"
    a, b, c, d, e = (r["candidate_id"] for r in _requests(workdir))
    _results(workdir, "round-000-a.csv", ["candidate_id,average_voltage_volts", f"{a},3.5"])
    _results(workdir, "round-000-b.csv", ["candidate_id,average_voltage_mV", f"{b},3650"])
    _results(workdir, "round-000-c.csv", ["candidate_id,voltage", f"{c},3.5"])
    _results(workdir, "round-000-d.csv", ["id,average_voltage_V", f"{d},3.5"])
    _results(workdir, "round-000-e.csv", ["candidate_id,average_voltage_V", f"{e},3.6 V"])
    (workdir / "results" / "round-000-f.csv").write_bytes(b"candidate_id;Spannung \xb5V\n")
    assert _run(path, workdir) == "waiting"
    rows = _rows(workdir)
    messages = {cid: msg for cid, status, msg in rows if status == "rejected"}
    assert messages == {
        a: "results/round-000-a.csv:2 column 'average_voltage_volts': unknown unit 'volts'; "
        "name it average_voltage_V or average_voltage_mV (line 1)",
        c: "results/round-000-c.csv:2 no average_voltage column (the header has: candidate_id, "
        "voltage); add average_voltage_V (line 1)",
        e: "results/round-000-e.csv:2 average_voltage_V: '3.6 V' is not a number (write the "
        "number only; the unit is in the column name)",
    }
    ok = Ledger(workdir / "ledger.sqlite").results(("ok",))
    assert list(ok["candidate_id"]) == [b] and ok["average_voltage"].iloc[0] == pytest.approx(3.65)
    ignored = _events(workdir, "unknown_result")
    assert len(ignored) == 2
    assert "results/round-000-d.csv:1 no candidate_id column" in ignored[0]
    assert "results/round-000-f.csv: not UTF-8 text; save it as CSV (UTF-8)" in ignored[1]


def test_waiting_run_picks_up_a_file_saved_while_it_polls(tmp_path: Path) -> None:
    path = _campaign(tmp_path)
    workdir = tmp_path / "run"
    assert _run(path, workdir) == "waiting"
    ids = [r["candidate_id"] for r in _requests(workdir)]
    lines = ["candidate_id,average_voltage_V", *(f"{cid},3.{i}" for i, cid in enumerate(ids))]

    def lab() -> None:
        time.sleep(0.5)
        tmp = workdir / "results" / "incoming.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        tmp.rename(workdir / "results" / "round-000.csv")

    thread = threading.Thread(target=lab)
    thread.start()
    try:
        state = _run(path, workdir, wait=True, poll_interval_s=0.05, wait_timeout_s=30)
    finally:
        thread.join()
    assert state == "finished"
    assert sorted(r[0] for r in _rows(workdir) if r[1] == "ok") == sorted(ids)


def test_corrections_are_accepted_recorded_answers_kept_and_training_uses_ok_rows_only(
    tmp_path: Path,
) -> None:
    path = _campaign(tmp_path, rounds=2)
    workdir = tmp_path / "run"
    assert _run(path, workdir) == "waiting"
    a, b, c, d = (r["candidate_id"] for r in _requests(workdir))
    header = "candidate_id,average_voltage_V"
    _results(workdir, "round-000.csv", [header, f"{a},3.1", f"{b},3.5", f"{c},3700", f"{d},3.4"])
    _results(workdir, "round-000-repeat.csv", [header, f"{b},3.9"])
    assert _run(path, workdir) == "waiting"
    assert {r[0] for r in _rows(workdir) if r[1] == "rejected"} == {b, c}
    # the lab corrects: c edited in place, b's second file made to agree; a is changed too, but a
    # recorded answer is never overwritten
    _results(workdir, "round-000.csv", [header, f"{a},3.2", f"{b},3.5", f"{c},3.7", f"{d},3.4"])
    _results(workdir, "round-000-repeat.csv", [header, f"{b},3.5"])
    campaign = Campaign.from_file(path, workdir=workdir)  # a new object: the resume path
    assert campaign.run(wait=False).state == "waiting"  # round 1 was proposed and is out
    ledger = Ledger(workdir / "ledger.sqlite")
    ok = ledger.results(("ok",)).set_index("candidate_id")["average_voltage"].to_dict()
    assert ok == {a: 3.1, d: 3.4, b: 3.5, c: 3.7}
    rejected = ledger.results(("rejected",))
    assert sorted(rejected["candidate_id"]) == sorted([b, c])  # the history of bad rows stays
    # round 1 trained on the Li rows plus the four accepted answers, none of the rejected values
    table = synthetic_electrodes(n_frameworks=90)
    assert ledger.round_model(1)[1] == int((table["working_ion"] == "Li").sum()) + 4
    round1 = _requests(workdir, 1)
    assert len(round1) == 3
    predictions = ledger.proposals(1).set_index("candidate_id")["predicted"]
    for row in round1:
        mean = predictions[row["candidate_id"]]["average_voltage_mean"]
        assert float(row["predicted_average_voltage_V"]) == pytest.approx(mean, rel=1e-3)
        assert float(row["predicted_average_voltage_std_V"]) > 0
        assert row["average_voltage_V"] == ""
    ledger.close()


def test_cli_no_wait_then_results_then_run_again(tmp_path: Path) -> None:
    path = _campaign(tmp_path)
    workdir = tmp_path / "run"
    runner = CliRunner()
    args = ["run", str(path), "--workdir", str(workdir), "--no-wait"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "waiting for results of 4 job(s)" in first.stdout
    assert (
        f"{workdir / 'requests' / 'round-000.csv'} as {workdir / 'results' / 'round-000.csv'}"
        in (first.stdout)
    )
    # the lab fills in the request file (one row wrong) and saves it under results/
    with open(workdir / "requests" / "round-000.csv", newline="") as f:
        reader = csv.DictReader(f)
        header, rows = list(reader.fieldnames or []), list(reader)
    for row, value in zip(rows, ["3.2", "x", "3.4", "3.5"]):
        row["average_voltage_V"] = value

    def save() -> None:
        with open(workdir / "results" / "round-000.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)

    save()
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "waiting for results of 1 job(s)" in second.stdout
    assert "results/round-000.csv:3 average_voltage_V: 'x' is not a number" in second.stdout
    assert "rejected the answer for" in second.stderr
    assert "the lab has 1 open request(s)" in second.stdout
    rows[1]["average_voltage_V"] = "3.3"
    save()
    third = runner.invoke(app, args)
    assert third.exit_code == 0, third.output
    assert "campaign finished" in third.stdout and "fill in" not in third.stdout
    st = campaign_status(workdir)
    assert st.counts["results_ok"] == 4 and st.counts["results_rejected"] == 1


def test_results_file_with_bom_crlf_and_extra_cells(tmp_path: Path) -> None:
    """A spreadsheet's CSV (byte-order mark, CRLF line ends, a blank line) is read; a row with more
    cells than the header has columns is rejected naming its line."""
    context = OracleContext(base_dir=tmp_path, workdir=tmp_path / "run")
    oracle = LabInboxOracle.from_options({"fidelity": "xrd-lab"}, context)
    jobs = oracle.submit([Request(f"c-{i}", "Na", "MnO2", "NaMnO2", 0, f"k{i}") for i in range(3)])
    text = "\ufeffcandidate_id,average_voltage_V\r\nc-0,3.1\r\nc-1,3.2,9\r\n\r\nc-2,\r\n"
    (tmp_path / "run" / "results" / "round-000.csv").write_bytes(text.encode())
    assert oracle.poll(jobs) == {"lab:c-0": "done", "lab:c-1": "done", "lab:c-2": "pending"}
    got = {r.candidate_id: r for r in oracle.collect(jobs[:2])}
    assert got["c-0"].status == "ok" and got["c-0"].values == {"average_voltage": 3.1}
    assert got["c-0"].fidelity == "xrd-lab" and got["c-0"].finished_at.endswith("+00:00")
    assert got["c-1"].status == "rejected"
    assert (
        got["c-1"].message
        == "results/round-000.csv:3 3 cells but the header (line 1) has 2 columns"
    )


def test_status_column_and_a_filled_row_without_voltage(tmp_path: Path) -> None:
    context = OracleContext(base_dir=tmp_path, workdir=tmp_path / "run")
    oracle = LabInboxOracle.from_options({}, context)
    jobs = oracle.submit([Request(f"c-{i}", "Na", "MnO2", "NaMnO2", 0, f"k{i}") for i in range(4)])
    _results(
        tmp_path / "run",
        "round-000.csv",
        [
            "candidate_id,average_voltage_V,capacity_grav_mAh_g,status,note",
            "c-0,,120,,",
            "c-1,3.0,,maybe,",
            "c-2,,,FAILED,no single phase",
            "c-3,,,,only a note",
        ],
    )
    assert oracle.poll(jobs) == {
        "lab:c-0": "done",
        "lab:c-1": "done",
        "lab:c-2": "failed",
        "lab:c-3": "pending",
    }
    got = {r.candidate_id: (r.status, r.message) for r in oracle.collect(jobs)}
    assert got == {
        "c-0": (
            "rejected",
            "results/round-000.csv:2 average_voltage_V: empty (a result row needs it; leave the "
            "whole row empty until it is measured, or write status 'failed')",
        ),
        "c-1": (
            "rejected",
            "results/round-000.csv:3 status: 'maybe' is not 'ok' or 'failed' (or empty)",
        ),
        "c-2": ("failed", "results/round-000.csv:4 failed: no single phase"),
    }
    hint = oracle.waiting_hint()
    assert "the lab has 3 open request(s)" in hint  # c-2 failed: closed
    assert "results/round-000.csv:3 status: 'maybe'" in hint
