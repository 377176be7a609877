"""The campaign loop end to end on a synthetic table with the real replay oracle and SQLite ledger:
recording, resume, locking, a SIGKILL mid-run, rejected oracle answers, status and exports."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from discovery.campaign import Campaign, campaign_status, export_campaign, load_campaign
from discovery.campaign.ledger import Ledger, LedgerError
from discovery.campaign.lock import CampaignLockedError, WorkdirLock
from discovery.cli import app
from discovery.errors import DiscoveryError
from discovery.oracles import Request, Result
from discovery.oracles.replay import ReplayOracle
from tests.conftest import synthetic_electrodes

CAMPAIGN = """\
name: synthetic
seed: 0
ions: [Na, Mg]
space: {kind: table, path: electrodes.csv}
initial_data: {path: electrodes.csv, ions: [Li]}
objectives:
  - {name: average_voltage, direction: maximize}
  - {name: capacity_grav, direction: maximize}
constraints:
  - {name: average_voltage, min: 3.0}
surrogate: {members: 4, max_epochs: 25, hidden: [32, 32]}
acquisition: {strategy: qlognehvi, mc_samples: 32, shortlist: 24}
batch_size: 4
budget: {rounds: 3, initial_random: 6}
oracle: {name: replay, options: {path: electrodes.csv}}
"""
TOTAL_CALLS = 6 + 4 + 4


@pytest.fixture
def campaign_file(tmp_path: Path) -> Path:
    synthetic_electrodes(n_frameworks=90).to_csv(tmp_path / "electrodes.csv", index=False)
    path = tmp_path / "campaign.yaml"
    path.write_text(CAMPAIGN)
    return path


def _recorded_results(workdir: Path) -> list[tuple[object, ...]]:
    """The results a running campaign has recorded so far (none while its ledger is missing or
    being created)."""
    path = workdir / "ledger.sqlite"
    if not path.exists():
        return []  # connecting would create the file under the campaign's feet
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
            return db.execute("SELECT id, candidate_id, status FROM results").fetchall()
    except sqlite3.Error:
        return []


def _ledger_rows(workdir: Path, table: str, columns: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(workdir / "ledger.sqlite") as db:
        return db.execute(f"SELECT {columns} FROM {table} ORDER BY rowid").fetchall()


def test_run_records_every_step_and_exports(campaign_file: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    outcome = Campaign.from_file(campaign_file, workdir=workdir).run()
    assert outcome.state == "finished"
    assert outcome.oracle_calls == TOTAL_CALLS
    assert outcome.rounds_complete == 3

    proposals = _ledger_rows(workdir, "proposals", "candidate_id, round, strategy, predicted")
    assert len(proposals) == TOTAL_CALLS
    assert len({p[0] for p in proposals}) == TOTAL_CALLS  # nothing proposed twice
    assert [p[2] for p in proposals] == ["random"] * 6 + ["qlognehvi"] * 8
    assert all("average_voltage_mean" in p[3] for p in proposals if p[1] > 0)
    results = _ledger_rows(workdir, "results", "candidate_id, status")
    assert sorted(r[0] for r in results) == sorted(p[0] for p in proposals)
    assert {r[1] for r in results} == {"ok"}
    # every model round left a checkpoint
    assert sorted(p.name for p in (workdir / "models").iterdir()) == ["round-001", "round-002"]

    st = campaign_status(workdir)
    assert st.counts["results_ok"] == TOTAL_CALLS and st.counts["open_jobs"] == 0
    assert set(st.best["working_ion"]) <= {"Na", "Mg"} and len(st.best) > 0
    assert list(st.hypervolume["hypervolume"]) == sorted(st.hypervolume["hypervolume"])

    files = export_campaign(workdir, tmp_path / "out")
    names = {p.name for p in files}
    assert {
        "pareto.csv",
        "pareto.json",
        "history.csv",
        "hypervolume.csv",
        "pareto.png",
        "pareto.html",
    } <= names
    history = pd.read_csv(tmp_path / "out" / "history.csv")
    assert len(history) == TOTAL_CALLS
    # the front counts only results inside the constraint (average_voltage >= 3 V)
    assert (history["feasible"] == (history["average_voltage"] >= 3.0)).all()
    front = pd.read_csv(tmp_path / "out" / "pareto.csv")
    assert len(front) > 0 and (front["average_voltage"] >= 3.0).all()
    assert (
        history["energy_grav"]
        .sub(history["average_voltage"] * history["capacity_grav"])
        .abs()
        .max()
        < 1e-6
    )


def test_resume_continues_where_it_stopped(campaign_file: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    Campaign.from_file(campaign_file, workdir=straight).run()
    stepped = tmp_path / "stepped"
    first = Campaign.from_file(campaign_file, workdir=stepped).run(max_rounds=2)
    assert first.state == "stopped" and first.oracle_calls == 10
    second = Campaign.from_file(campaign_file, workdir=stepped).run()
    assert second.state == "finished" and second.oracle_calls == TOTAL_CALLS
    again = Campaign.from_file(campaign_file, workdir=stepped).run()
    assert again.oracle_calls == TOTAL_CALLS  # a finished campaign stays finished
    # same seed, same data: the stepped campaign made exactly the uninterrupted one's choices
    cols = "candidate_id, round, rank"
    assert _ledger_rows(stepped, "proposals", cols) == _ledger_rows(straight, "proposals", cols)


def test_second_run_on_a_locked_workdir_is_refused(campaign_file: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    workdir.mkdir()
    with WorkdirLock(workdir), pytest.raises(CampaignLockedError, match="already running"):
        Campaign.from_file(campaign_file, workdir=workdir).run()
    assert not (workdir / "ledger.sqlite").exists()  # refused before touching anything
    result = _run_cli_locked(campaign_file, workdir)
    assert result.exit_code == 2 and "already running" in result.output


def _run_cli_locked(campaign_file: Path, workdir: Path):  # type: ignore[no-untyped-def]
    with WorkdirLock(workdir):
        return CliRunner().invoke(app, ["run", str(campaign_file), "--workdir", str(workdir)])


def test_a_changed_campaign_is_refused_on_resume(campaign_file: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    Campaign.from_file(campaign_file, workdir=workdir).run(max_rounds=1)
    campaign_file.write_text(CAMPAIGN.replace("batch_size: 4", "batch_size: 5"))
    with pytest.raises(DiscoveryError, match="batch_size"):
        Campaign.from_file(campaign_file, workdir=workdir).run()
    campaign_file.write_text(CAMPAIGN.replace("rounds: 3", "rounds: 2"))  # budgets may change
    assert Campaign.from_file(campaign_file, workdir=workdir).run().oracle_calls == 10


def test_a_campaign_can_mix_input_encodings(campaign_file: Path, tmp_path: Path) -> None:
    campaign_file.write_text(
        CAMPAIGN.replace("surrogate: {", "surrogate: {input_encoding: mixed, ")
    )
    workdir = tmp_path / "run"
    outcome = Campaign.from_file(campaign_file, workdir=workdir).run(max_rounds=3)
    assert outcome.oracle_calls == TOTAL_CALLS
    for checkpoint in ("round-001", "round-002"):  # the second one fine-tuned from the first
        manifest = json.loads((workdir / "models" / checkpoint / "manifest.json").read_text())
        assert manifest["config"]["input_encoding"] == "mixed"
        assert manifest["config"]["members"] == 4
    assert manifest["metadata"]["retraining"] == "warm-start"


def test_a_project_folder_moved_whole_resumes(campaign_file: Path, tmp_path: Path) -> None:
    # The campaign file, its table and the work directory move together (a renamed project
    # folder, a copy to another machine): the recorded absolute paths all change, their places
    # relative to the work directory do not.
    before, after = tmp_path / "project", tmp_path / "renamed"
    before.mkdir()
    for name in ("campaign.yaml", "electrodes.csv"):
        (tmp_path / name).rename(before / name)
    Campaign.from_file(before / "campaign.yaml", workdir=before / "run").run(max_rounds=1)
    before.rename(after)
    outcome = Campaign.from_file(after / "campaign.yaml", workdir=after / "run").run()
    assert (outcome.state, outcome.oracle_calls) == ("finished", TOTAL_CALLS)
    # A table moved on its own is another campaign's table, moved or not.
    (after / "electrodes.csv").rename(tmp_path / "electrodes.csv")
    (after / "campaign.yaml").write_text(CAMPAIGN.replace("electrodes.csv", "../electrodes.csv"))
    with pytest.raises(DiscoveryError, match="different initial_data, oracle, space"):
        Campaign.from_file(after / "campaign.yaml", workdir=after / "run").run()


def test_a_workdir_from_before_newer_fields_resumes(campaign_file: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    Campaign.from_file(campaign_file, workdir=workdir).run(max_rounds=1)
    # a ledger written before the plugins and fidelity fields existed
    ledger = Ledger(workdir / "ledger.sqlite")
    old = ledger.get_meta("spec")
    del old["plugins"], old["surrogate"]["fidelities"], old["initial_data"]["fidelity"]
    ledger.set_meta("spec", old)
    ledger.close()
    assert Campaign.from_file(campaign_file, workdir=workdir).run(max_rounds=1).oracle_calls == 10
    # a new field set away from its default is a different campaign
    ledger = Ledger(workdir / "ledger.sqlite")
    ledger.set_meta("spec", old)
    ledger.close()
    campaign_file.write_text(CAMPAIGN.replace("ions: [Li]}", "ions: [Li], fidelity: experiment}"))
    with pytest.raises(DiscoveryError, match="different initial_data"):
        Campaign.from_file(campaign_file, workdir=workdir).run()


def test_a_workdir_from_before_target_bins_resumes_only_with_the_bins_it_used(
    campaign_file: Path, tmp_path: Path
) -> None:
    # Work directories made before surrogate.bin_edges was a field ran with quantile bins, not
    # today's default: filling in the default would resume them with another model, silently.
    workdir = tmp_path / "run"
    Campaign.from_file(campaign_file, workdir=workdir).run(max_rounds=1)
    ledger = Ledger(workdir / "ledger.sqlite")
    old = ledger.get_meta("spec")
    del old["surrogate"]["bin_edges"]
    ledger.set_meta("spec", old)
    ledger.close()
    with pytest.raises(
        DiscoveryError,
        match=r'different surrogate; .*surrogate\.bin_edges: "quantile" in the work directory, '
        r'"target" now$',
    ):
        Campaign.from_file(campaign_file, workdir=workdir).run()
    campaign_file.write_text(
        CAMPAIGN.replace("hidden: [32, 32]}", "hidden: [32, 32], bin_edges: quantile}")
    )
    assert Campaign.from_file(campaign_file, workdir=workdir).run(max_rounds=1).oracle_calls == 10


class _FlakyReplay(ReplayOracle):
    """Replay that answers NaN or text for chosen candidates (a broken calculation)."""

    def __init__(self, table: pd.DataFrame, bad: dict[int, object]) -> None:
        super().__init__(table, ["average_voltage"], name="flaky")
        self.bad = bad
        self.seen: list[str] = []

    def collect(self, job_ids: Sequence[str]) -> list[Result]:
        out = []
        for result in super().collect(job_ids):
            self.seen.append(result.candidate_id)
            bad = self.bad.get(len(self.seen) - 1)
            if bad is not None:
                result = Result(**{**result.__dict__, "values": {"average_voltage": bad}})
            out.append(result)
        return out


def test_bad_oracle_answers_are_rejected_and_kept_out_of_training(
    campaign_file: Path, tmp_path: Path
) -> None:
    table = synthetic_electrodes(n_frameworks=90)
    oracle = _FlakyReplay(table, {0: math.nan, 3: "4.1 V"})
    spec = load_campaign(campaign_file)
    workdir = tmp_path / "run"
    outcome = Campaign(spec, base_dir=campaign_file.parent, workdir=workdir, oracle=oracle).run()
    assert outcome.state == "finished"
    rows = _ledger_rows(workdir, "results", "candidate_id, status, message")
    rejected = [r for r in rows if r[1] == "rejected"]
    assert len(rejected) == 2
    assert "not a finite number" in rejected[0][2] and "not a number" in rejected[1][2]
    failed = {r[0] for r in rows if r[1] == "failed"}
    assert failed == {r[0] for r in rejected}  # closed, so the campaign did not hang
    model_rows = Ledger(workdir / "ledger.sqlite").round_model(2)[1]
    n_li = int((table["working_ion"] == "Li").sum())
    assert model_rows == n_li + 6 - 2 + 4  # Li rows + answered (not rejected) results


class _Stuttering(ReplayOracle):
    """Answers every job twice in one collect, the second time with another voltage."""

    def collect(self, job_ids: Sequence[str]) -> list[Result]:
        out = []
        for result in super().collect(job_ids):
            values = {**result.values, "average_voltage": 9.5}
            out += [result, Result(**{**result.__dict__, "values": values})]
        return out


def test_a_second_answer_in_one_collect_is_logged_not_recorded(
    campaign_file: Path, tmp_path: Path
) -> None:
    table = synthetic_electrodes(n_frameworks=90)
    spec = load_campaign(campaign_file)
    workdir = tmp_path / "run"
    campaign = Campaign(
        spec, base_dir=campaign_file.parent, workdir=workdir, oracle=_Stuttering(table)
    )
    assert campaign.run().state == "finished"
    ledger = Ledger(workdir / "ledger.sqlite")
    results, events = ledger.results(), ledger.events()
    ledger.close()
    assert len(results) == TOTAL_CALLS and (results["status"] == "ok").all()
    assert (results["average_voltage"] != 9.5).all()  # the first answers stand
    duplicates = events[events["kind"] == "duplicate_result"]
    assert len(duplicates) == TOTAL_CALLS
    assert duplicates["detail"].str.contains("9.5").all()
    assert set(results["candidate_id"]) == {
        json.loads(d)["candidate_id"] for d in duplicates["detail"]
    }


class _Reversed(ReplayOracle):
    """Hands back each collect's answers in reverse: the same answers, another arrival order."""

    def collect(self, job_ids: Sequence[str]) -> list[Result]:
        return super().collect(job_ids)[::-1]


def test_models_and_proposals_do_not_depend_on_the_order_answers_arrive(
    campaign_file: Path, tmp_path: Path
) -> None:
    table = synthetic_electrodes(n_frameworks=90)
    spec = load_campaign(campaign_file)
    runs = {}
    for name, oracle in (("forward", ReplayOracle(table)), ("reversed", _Reversed(table))):
        workdir = tmp_path / name
        Campaign(spec, base_dir=campaign_file.parent, workdir=workdir, oracle=oracle).run()
        ledger = Ledger(workdir / "ledger.sqlite")
        runs[name] = (ledger.results(("ok",)), ledger.proposals(), workdir)
        ledger.close()
    (forward, proposed, first), (backward, proposed_again, second) = runs.values()
    # The answers did arrive in another order ...
    assert list(forward["candidate_id"]) != list(backward["candidate_id"])
    assert sorted(forward["candidate_id"]) == sorted(backward["candidate_id"])
    # ... yet every round trained the same model and proposed the same candidates.
    assert list(proposed["candidate_id"]) == list(proposed_again["candidate_id"])
    for model_dir in sorted((first / "models").iterdir()):
        a = torch.load(model_dir / "weights.pt", weights_only=True)
        b = torch.load(second / "models" / model_dir.name / "weights.pt", weights_only=True)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), model_dir.name


def test_corrupted_ledger_is_detected_not_reset(campaign_file: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    workdir.mkdir()
    garbage = b"this is not an SQLite database" * 100
    (workdir / "ledger.sqlite").write_bytes(garbage)
    with pytest.raises(LedgerError, match="not a usable campaign ledger"):
        Campaign.from_file(campaign_file, workdir=workdir).run()
    assert (workdir / "ledger.sqlite").read_bytes() == garbage


def test_cli_run_status_export(campaign_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    workdir = tmp_path / "run"
    result = runner.invoke(
        app, ["run", str(campaign_file), "--workdir", str(workdir), "--max-rounds", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "10 oracle call(s)" in result.output
    result = runner.invoke(app, ["status", str(workdir)])
    assert result.exit_code == 0, result.output
    assert "synthetic" in result.output and "10 oracle call(s)" in result.output
    result = runner.invoke(app, ["export", str(workdir), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "pareto.csv").is_file()
    result = runner.invoke(app, ["status", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "not a campaign work directory" in result.output


def test_cli_validate_and_schema(campaign_file: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(campaign_file)])
    assert ok.exit_code == 0 and "ok" in ok.output
    campaign_file.write_text(
        CAMPAIGN.replace(
            "direction: maximize}\n  - {name: capacity", "direction: maximise}\n  - {name: capacity"
        )
    )
    bad = runner.invoke(app, ["validate", str(campaign_file)])
    assert bad.exit_code == 2
    assert (
        "campaign.yaml:7 objectives[0].direction: expected 'maximize' or 'minimize', got 'maximise'"
        in bad.output
    )
    schema = runner.invoke(app, ["schema"])
    assert schema.exit_code == 0 and '"properties"' in schema.output


@pytest.mark.slow
def test_sigkill_mid_run_loses_and_duplicates_nothing(campaign_file: Path, tmp_path: Path) -> None:
    """Kill `discover run` with SIGKILL at several moments; every resume keeps what was recorded."""
    workdir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "discovery.cli",
        "run",
        str(campaign_file),
        "--workdir",
        str(workdir),
    ]
    seen: set[tuple[object, ...]] = set()
    kills = 0
    # Each run is killed just after it records new results (the next round's training, proposal
    # or submissions are then under way), or after a pause once it has any, whichever the machine's
    # speed reaches first: fixed delays missed every run on a machine fast enough to finish the
    # campaign within the first one.
    for pause in (0.0, 0.5, 0.0, 1.5, 0.0):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if len(_recorded_results(workdir)) > len(seen):
                time.sleep(pause)
                break
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        if (workdir / "ledger.sqlite").exists():
            now = set(_ledger_rows(workdir, "results", "id, candidate_id, status"))
            assert seen <= now  # nothing recorded before the kill was lost
            seen = now
    assert kills >= 1
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = _ledger_rows(workdir, "results", "candidate_id, status")
    submissions = _ledger_rows(workdir, "submissions", "candidate_id, idempotency_key")
    assert len(submissions) == TOTAL_CALLS == len({s[1] for s in submissions})
    assert sorted(r[0] for r in results) == sorted(s[0] for s in submissions)
    assert set(_ledger_rows(workdir, "results", "id, candidate_id, status")) >= seen


def test_requests_carry_idempotency_keys(campaign_file: Path, tmp_path: Path) -> None:
    table = synthetic_electrodes(n_frameworks=90)
    got: list[Request] = []

    class Recording(ReplayOracle):
        def submit(self, requests: Sequence[Request]) -> list[str]:
            got.extend(requests)
            return super().submit(requests)

    spec = load_campaign(campaign_file)
    Campaign(
        spec, base_dir=campaign_file.parent, workdir=tmp_path / "r", oracle=Recording(table)
    ).run()
    assert len(got) == TOTAL_CALLS
    assert len({r.idempotency_key for r in got}) == TOTAL_CALLS
    assert all(r.idempotency_key == f"synthetic/{r.candidate_id}" for r in got)
    assert all("average_voltage_mean" in r.predicted for r in got if r.round > 0)


def test_generated_pool_with_the_model_oracle(tmp_path: Path) -> None:
    """A generated space (framework templates × site mixings × ions) answered by a reference model
    trained once from a table and cached in the work directory."""
    synthetic_electrodes(n_frameworks=90).to_csv(tmp_path / "electrodes.csv", index=False)
    (tmp_path / "campaign.yaml").write_text(
        """\
name: generated
ions: [Na, Mg]
space:
  kind: generate
  frameworks:
    - template: A_x M O2
      sites: {M: {elements: [Mn, Fe, Co, Ni, V], max_elements: 2, fraction_step: 0.25}}
      x: [0.5, 1.0]
    - template: A_x M PO4
      sites: {M: {elements: [Mn, Fe, Co], max_elements: 1}}
      x: [1.0]
initial_data: {path: electrodes.csv}
surrogate: {members: 4, max_epochs: 20, hidden: [32, 32]}
acquisition: {strategy: qnparego, mc_samples: 32, shortlist: 16}
batch_size: 4
budget: {rounds: 2, initial_random: 4}
oracle: {name: model, options: {data: electrodes.csv, members: 4, max_epochs: 20}}
"""
    )
    workdir = tmp_path / "run"
    outcome = Campaign.from_file(tmp_path / "campaign.yaml", workdir=workdir).run()
    assert outcome.state == "finished" and outcome.oracle_calls == 8
    rows = _ledger_rows(workdir, "results", "status, oracle, fidelity")
    assert rows == [("ok", "model", "surrogate")] * 8
    cached = list((workdir / "oracle").iterdir())
    assert len(cached) == 1 and (cached[0] / "manifest.json").is_file()
    proposals = _ledger_rows(workdir, "proposals", "working_ion, formula_discharge")
    assert {ion for ion, _ in proposals} <= {"Na", "Mg"}
    assert all(("O2" in f) or ("PO4" in f) for _, f in proposals)


def test_oracle_options_are_validated_with_the_field_named(tmp_path: Path) -> None:
    from discovery.oracles import OracleContext, make_oracle

    context = OracleContext(base_dir=tmp_path, workdir=tmp_path / "run")
    with pytest.raises(
        DiscoveryError, match=r"oracle 'replay': oracle.options.bogus: Extra inputs"
    ):
        make_oracle("replay", {"path": "x.csv", "bogus": 1}, context)
    with pytest.raises(DiscoveryError, match=r"oracle 'model': oracle.options: .*exactly one of"):
        make_oracle("model", {}, context)
    with pytest.raises(DiscoveryError, match=r"no such file"):
        make_oracle("replay", {"path": "missing.csv"}, context)
    with pytest.raises(DiscoveryError, match=r"unknown oracle 'nmr'.*installed: .*model, replay"):
        make_oracle("nmr", {}, context)


def _truncate_to(size: int):  # type: ignore[no-untyped-def]
    def cut(path: Path) -> None:
        path.write_bytes(path.read_bytes()[:size])

    return cut


def _drop_table(name: str):  # type: ignore[no-untyped-def]
    def drop(path: Path) -> None:
        db = sqlite3.connect(path)
        db.execute(f"DROP TABLE {name}")
        db.commit()
        db.close()

    return drop


def _overwrite(offset: int, data: bytes):  # type: ignore[no-untyped-def]
    def scribble(path: Path) -> None:
        raw = bytearray(path.read_bytes())
        raw[offset : offset + len(data)] = data
        path.write_bytes(bytes(raw))

    return scribble


def _other_sqlite(path: Path) -> None:
    path.unlink()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.commit()
    db.close()


CORRUPTIONS = {
    "truncated to half": (_truncate_to(-1), "not a usable campaign ledger"),
    "truncated to its header": (_truncate_to(100), "not a usable campaign ledger"),
    "emptied (0 bytes)": (_truncate_to(0), "the ledger is empty (0 bytes)"),
    "garbage header": (_overwrite(0, b"GARBAGE!" * 8), "file is not a database"),
    "a damaged page": (_overwrite(8192, b"\xff" * 2048), "integrity check failed"),
    "results table missing": (_drop_table("results"), "table(s) results missing"),
    "proposals table missing": (_drop_table("proposals"), "table(s) proposals missing"),
    "another program's SQLite file": (_other_sqlite, "not a discovery ledger"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_each_kind_of_corrupted_ledger_is_detected_and_left_untouched(
    campaign_file: Path, tmp_path: Path, kind: str
) -> None:
    """A ledger damaged in each way stops `discover run` and `discover status` with exit 2 and a
    message naming the file; the file keeps its bytes (never reset), and nothing else is made."""
    workdir = tmp_path / "run"
    Campaign.from_file(campaign_file, workdir=workdir).run(max_rounds=1)
    (workdir / "models").mkdir()  # a campaign's files next to the ledger (a model round ran)
    ledger = workdir / "ledger.sqlite"
    mutate, message = CORRUPTIONS[kind]
    if kind == "truncated to half":
        mutate = _truncate_to(ledger.stat().st_size // 2)
    mutate(ledger)
    damaged = ledger.read_bytes()
    listing = sorted(p.name for p in workdir.iterdir())
    runner = CliRunner()
    for args in (["run", str(campaign_file), "--workdir", str(workdir)], ["status", str(workdir)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert f"{ledger}: " in result.output and message in result.output, result.output
        assert ledger.read_bytes() == damaged
    assert sorted(p.name for p in workdir.iterdir()) == listing
