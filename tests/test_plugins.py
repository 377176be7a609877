"""Plugins: hook specifications checked at load time, hooks wired into the campaign loop, the
``discover plugins`` listing, and the example of docs/plugins.md installed with pip and run.

Hook plugins are real installed distributions: :func:`install` writes what pip leaves in a
site-packages folder (the modules and a ``.dist-info`` folder with ``METADATA`` and
``entry_points.txt``) into a temporary folder put on ``sys.path``, so ``importlib.metadata`` finds
their entry points as it finds any installed package's. The docs example goes through pip itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import discovery
from discovery.campaign import Campaign, CampaignError, Ledger, load_campaign
from discovery.cli import app
from discovery.errors import DiscoveryError
from discovery.oracles import Result
from discovery.oracles.replay import ReplayOracle
from discovery.plugins import CampaignHooks, PluginError, hookimpl
from discovery.space import candidate_ids
from tests.conftest import install, synthetic_electrodes

REPO = Path(__file__).resolve().parents[1]

CAMPAIGN = """\
name: hooked
seed: 0
ions: [Na, Mg]
space: {kind: table, path: electrodes.csv}
initial_data: {path: electrodes.csv, ions: [Li]}
surrogate: {members: 2, max_epochs: 20, hidden: [16, 16]}
acquisition: {strategy: greedy, shortlist: 8}
batch_size: 3
budget: {rounds: ROUNDS, initial_random: 5}
oracle: {name: replay, options: {path: answers.csv, outcomes: [average_voltage_mV]}}
plugins: PLUGINS
"""

# Hook plugin modules used below (each installed as its own package by a test).
MILLIVOLTS = """\
import dataclasses
from discovery.plugins import hookimpl

@hookimpl
def discovery_result_received(result):
    values = dict(result.values)
    if "average_voltage_mV" not in values:
        return None
    values["average_voltage"] = values.pop("average_voltage_mV") / 1000
    return dataclasses.replace(result, values=values)
"""

RANGE_CHECK = """\
from discovery.plugins import hookimpl

@hookimpl
def discovery_result_received(result):
    v = result.values.get("average_voltage")
    if v is None:
        return "no average_voltage in V"
    if v > LIMIT_V:
        return f"average_voltage {v:.3f} V is above LIMIT_V V"
    return None
"""

RECORDER = """\
import json
from discovery.plugins import hookimpl

def _write(workdir, name, data):
    folder = workdir / "plugins" / "recorder"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(data))

@hookimpl
def discovery_batch_proposed(campaign, workdir, round, proposals):
    _write(workdir, f"proposed-{round}.json", {
        "campaign": campaign,
        "ids": list(proposals["candidate_id"]),
        "columns": list(proposals.columns),
    })

@hookimpl
def discovery_after_training(workdir, round, model, frame, model_dir):
    _write(workdir, f"trained-{round}.json", {
        "ids": list(frame["battery_id"]),
        "ions": sorted(set(frame["working_ion"])),
        "targets": list(model.target_names),
        "model_dir": str(model_dir.relative_to(workdir)),
    })
"""

NO_MAGNESIUM = """\
from discovery.plugins import hookimpl

@hookimpl
def discovery_before_training(frame):
    return frame[frame["working_ion"] != "Mg"]
"""

EXPLODES = """\
from discovery.plugins import hookimpl

@hookimpl
def discovery_batch_proposed(proposals):
    raise RuntimeError("an unlisted plugin ran")

@hookimpl
def discovery_result_received(result):
    raise RuntimeError("an unlisted plugin ran")
"""


@pytest.fixture
def tables(tmp_path: Path) -> pd.DataFrame:
    """electrodes.csv (V) for the pool and initial data; answers.csv with voltages in mV only."""
    frame = synthetic_electrodes(n_frameworks=60)
    frame.to_csv(tmp_path / "electrodes.csv", index=False)
    answers = frame.drop(columns=["average_voltage"]).assign(
        average_voltage_mV=frame["average_voltage"] * 1000
    )
    answers.to_csv(tmp_path / "answers.csv", index=False)
    return frame.assign(candidate_id=candidate_ids(frame)).set_index("candidate_id")


def write_campaign(tmp_path: Path, plugins: list[str], rounds: int = 2) -> Path:
    path = tmp_path / "campaign.yaml"
    text = CAMPAIGN.replace("ROUNDS", str(rounds)).replace("PLUGINS", json.dumps(plugins))
    path.write_text(text)
    return path


def recorded(workdir: Path, name: str) -> dict[str, Any]:
    return json.loads((workdir / "plugins" / "recorder" / name).read_text())


# ---------------------------------------------------------------------------- hooks in the loop
def test_hooks_convert_reject_observe_in_listed_order(
    tmp_path: Path, site: Path, tables: pd.DataFrame
) -> None:
    """mV -> V then a range check in V (the listed order), rejected answers out of training, the
    proposed batch and the trained model observed; an installed but unlisted plugin never runs."""
    limit = 2.5
    install(
        site, "lab-millivolts", {"lab_millivolts": MILLIVOLTS}, {"millivolts": "lab_millivolts"}
    )
    install(
        site,
        "lab-range",
        {"lab_range": RANGE_CHECK.replace("LIMIT_V", str(limit))},
        {"range-check": "lab_range"},
    )
    install(site, "lab-recorder", {"lab_recorder": RECORDER}, {"recorder": "lab_recorder"})
    install(site, "lab-explodes", {"lab_explodes": EXPLODES}, {"explodes": "lab_explodes"})
    path = write_campaign(tmp_path, ["millivolts", "range-check", "recorder"])
    workdir = tmp_path / "run"

    outcome = Campaign.from_file(path, workdir=workdir).run()

    assert outcome.state == "finished" and outcome.oracle_calls == 5 + 3
    ledger = Ledger(workdir / "ledger.sqlite")
    try:
        results = ledger.results()
        events = ledger.events()
        proposals = ledger.proposals()
    finally:
        ledger.close()
    ok = results[results["status"] == "ok"].set_index("candidate_id")
    rejected = results[results["status"] == "rejected"].set_index("candidate_id")
    assert len(ok) and len(rejected), "the seed should give answers on both sides of the limit"
    # converted: the stored voltage is the table's, in V; no mV value was kept
    truth = tables.loc[ok.index, "average_voltage"]
    assert (ok["average_voltage"] - truth).abs().max() < 1e-9
    assert "average_voltage_mV" not in ok.columns or ok["average_voltage_mV"].isna().all()
    # rejected: above the limit in V (so the range check ran after the conversion)
    assert (tables.loc[rejected.index, "average_voltage"] > limit).all()
    assert (ok["average_voltage"] <= limit).all()
    for message in rejected["message"]:
        assert re.fullmatch(
            rf"plugin 'range-check': average_voltage \S+ V is above {limit} V", message
        )
    failed = results[results["status"] == "failed"].set_index("candidate_id")
    assert sorted(failed.index) == sorted(rejected.index)  # jobs closed, not left open
    assert all(m.startswith("answer rejected: plugin 'range-check'") for m in failed["message"])

    # the batch hook saw each recorded batch; the model of round 1 trained on ok answers only
    round0 = recorded(workdir, "proposed-0.json")
    assert round0["campaign"] == "hooked"
    assert round0["ids"] == list(proposals[proposals["round"] == 0]["candidate_id"])
    round1 = recorded(workdir, "proposed-1.json")
    assert "predicted_average_voltage_mean" in round1["columns"]
    trained = recorded(workdir, "trained-1.json")
    trained_ids = set(trained["ids"])
    round0_ok = set(ok.index[ok["round"] == 0])
    assert round0_ok <= trained_ids
    assert (rejected["round"] == 0).any() and not set(rejected.index) & trained_ids
    assert trained["model_dir"] == "models/round-001"
    assert not (workdir / "plugins" / "recorder" / "trained-0.json").exists()  # random round

    kinds = list(events["kind"])
    assert kinds.count("plugin_replaced_result") == len(results) - len(failed)
    loaded = [
        json.loads(d)["plugin"]
        for k, d in zip(events["kind"], events["detail"])
        if k == "plugin_loaded"
    ]
    assert loaded == ["millivolts", "range-check", "recorder"]


def test_before_training_hook_filters_rows(
    tmp_path: Path, site: Path, tables: pd.DataFrame
) -> None:
    install(
        site, "lab-millivolts", {"lab_millivolts": MILLIVOLTS}, {"millivolts": "lab_millivolts"}
    )
    install(site, "lab-no-mg", {"lab_no_mg": NO_MAGNESIUM}, {"no-mg": "lab_no_mg"})
    install(site, "lab-recorder", {"lab_recorder": RECORDER}, {"recorder": "lab_recorder"})
    path = write_campaign(tmp_path, ["millivolts", "no-mg", "recorder"])
    workdir = tmp_path / "run"

    Campaign.from_file(path, workdir=workdir).run()

    trained = recorded(workdir, "trained-1.json")
    assert trained["ions"] == ["Li", "Na"]  # Mg answers were filtered out
    ledger = Ledger(workdir / "ledger.sqlite")
    try:
        _, n_train = ledger.round_model(1)
        ok = ledger.results(("ok",))
        events = ledger.events()
    finally:
        ledger.close()
    assert n_train == len(trained["ids"])
    assert (ok["working_ion"] == "Mg").any()  # Mg answers were recorded, just not trained on
    (detail,) = [
        json.loads(d)
        for k, d in zip(events["kind"], events["detail"])
        if k == "plugin_training_rows"
    ]
    # the initial data is Li only: the rows dropped are exactly the Mg answers of round 0
    n_mg = int(((ok["round"] == 0) & (ok["working_ion"] == "Mg")).sum())
    assert detail["rows_before"] - detail["rows_after"] == n_mg > 0


def test_an_unlisted_plugin_does_not_run(tmp_path: Path, site: Path) -> None:
    synthetic_electrodes(n_frameworks=60).to_csv(tmp_path / "electrodes.csv", index=False)
    synthetic_electrodes(n_frameworks=60).to_csv(tmp_path / "answers.csv", index=False)
    install(site, "lab-explodes", {"lab_explodes": EXPLODES}, {"explodes": "lab_explodes"})
    path = write_campaign(tmp_path, [], rounds=1)
    path.write_text(
        path.read_text().replace("outcomes: [average_voltage_mV]", "outcomes: [average_voltage]")
    )

    outcome = Campaign.from_file(path, workdir=tmp_path / "quiet").run()
    assert outcome.state == "finished" and outcome.oracle_calls == 5

    # listed, the same plugin runs (and its error names it and the hook)
    path.write_text(path.read_text().replace("plugins: []", "plugins: [explodes]"))
    with pytest.raises(
        PluginError,
        match=r"plugin 'explodes' failed in discovery_batch_proposed: RuntimeError: an unlisted plugin ran",
    ):
        Campaign.from_file(path, workdir=tmp_path / "loud").run()


class MillivoltReplay(ReplayOracle):
    """A replay oracle that answers in mV and converts its own answers with a hook."""

    @hookimpl
    def discovery_result_received(self, result: Result) -> Result:
        values = dict(result.values)
        values["average_voltage"] = values.pop("average_voltage_mV") / 1000
        return dataclasses.replace(result, values=values)


def test_an_oracle_with_hooks_is_registered_and_runs_first(
    tmp_path: Path, site: Path, tables: pd.DataFrame
) -> None:
    install(
        site,
        "lab-range",
        {"lab_range": RANGE_CHECK.replace("LIMIT_V", "3.2")},
        {"range-check": "lab_range"},
    )
    path = write_campaign(tmp_path, ["range-check"], rounds=1)
    answers = pd.read_csv(tmp_path / "answers.csv")
    oracle = MillivoltReplay(answers, outcomes=["average_voltage_mV"])
    workdir = tmp_path / "run"

    Campaign(load_campaign(path), base_dir=tmp_path, workdir=workdir, oracle=oracle).run()

    ledger = Ledger(workdir / "ledger.sqlite")
    try:
        results = ledger.results()
    finally:
        ledger.close()
    answered = results[results["status"].isin(["ok", "rejected"])]
    assert len(answered) == 5
    # the range check saw volts: had it run first it would have said "no average_voltage in V"
    for r in answered.itertuples():
        volts = tables.loc[r.candidate_id, "average_voltage"]
        if r.status == "ok":
            assert abs(r.average_voltage - volts) < 1e-9 and volts <= 3.2
        else:
            assert volts > 3.2 and "is above 3.2 V" in r.message


def test_a_replacement_for_another_job_is_an_error(tmp_path: Path, site: Path) -> None:
    thief = """\
    import dataclasses
    from discovery.plugins import hookimpl

    @hookimpl
    def discovery_result_received(result):
        return dataclasses.replace(result, job_id="someone-else")
    """
    synthetic_electrodes(n_frameworks=60).to_csv(tmp_path / "electrodes.csv", index=False)
    synthetic_electrodes(n_frameworks=60).to_csv(tmp_path / "answers.csv", index=False)
    install(site, "lab-thief", {"lab_thief": thief}, {"thief": "lab_thief"})
    path = write_campaign(tmp_path, ["thief"], rounds=1)
    path.write_text(path.read_text().replace("[average_voltage_mV]", "[average_voltage]"))
    workdir = tmp_path / "run"
    with pytest.raises(
        PluginError,
        match=r"plugin 'thief', discovery_result_received: the replacement is for .* job 'someone-else'",
    ):
        Campaign.from_file(path, workdir=workdir).run()
    ledger = Ledger(workdir / "ledger.sqlite")
    try:
        assert len(ledger.results()) == 0  # nothing of the step was recorded
    finally:
        ledger.close()


# ---------------------------------------------------------------------------- checked at load time
BAD_PLUGINS = {
    "argument": (
        """\
        from discovery.plugins import hookimpl

        @hookimpl
        def discovery_result_received(result, reslt):
            return None
        """,
        r"discovery_result_received: argument 'reslt' is not in the specification "
        r"discovery_result_received\(campaign, workdir, result, candidate\) \(did you mean 'result'\?\)",
    ),
    "unknown hook": (
        """\
        from discovery.plugins import hookimpl

        @hookimpl
        def discovery_result_recieved(result):
            return None
        """,
        r"hook 'discovery_result_recieved' is not a discovery hook \(did you mean "
        r"'discovery_result_received'\?\)",
    ),
    "unmarked": (
        """\
        def discovery_before_training(frame):
            return frame
        """,
        r"discovery_before_training is not marked as a hook implementation",
    ),
    "wrapper": (
        """\
        from discovery.plugins import hookimpl

        @hookimpl(tryfirst=True)
        def discovery_batch_proposed(proposals):
            pass
        """,
        r"discovery_batch_proposed: hookimpl option\(s\) tryfirst are not supported",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PLUGINS))
def test_a_mismatched_plugin_is_rejected_at_load_time(
    tmp_path: Path, site: Path, case: str
) -> None:
    source, problem = BAD_PLUGINS[case]
    install(site, "bad-hooks", {"bad_hooks": source}, {"bad": "bad_hooks"}, version="2.0")
    named = r"plugin 'bad' \(bad_hooks, package bad-hooks 2\.0\): "

    with pytest.raises(PluginError, match=named + problem):
        CampaignHooks.load(["bad"], campaign="c", workdir=tmp_path)

    # `discover run` refuses it before doing anything; `discover plugins` names it, exit 2
    synthetic_electrodes(n_frameworks=60).to_csv(tmp_path / "electrodes.csv", index=False)
    synthetic_electrodes(n_frameworks=60).to_csv(tmp_path / "answers.csv", index=False)
    path = write_campaign(tmp_path, ["bad"], rounds=1)
    with pytest.raises(PluginError, match=named + problem):
        Campaign.from_file(path, workdir=tmp_path / "run").run()
    listing = CliRunner().invoke(app, ["plugins", "--json"])
    assert listing.exit_code == 2
    (entry,) = [p for p in json.loads(listing.stdout) if p["name"] == "bad"]
    assert re.search(problem, entry["error"]) and entry["package"] == "bad-hooks"


def test_an_oracle_with_a_bad_hook_is_rejected(tmp_path: Path) -> None:
    class Sloppy(ReplayOracle):
        @hookimpl
        def discovery_after_training(self, model: object, modle_dir: Path) -> None:
            pass

    hooks = CampaignHooks("c", tmp_path)
    oracle = Sloppy(synthetic_electrodes(), name="sloppy")
    with pytest.raises(
        PluginError,
        match=r"oracle 'sloppy' \(\S*test_plugins\.\S*Sloppy\): discovery_after_training: argument "
        r"'modle_dir' is not in the specification .* \(did you mean 'model_dir'\?\)",
    ):
        hooks.add_oracle(oracle)
    hooks.add_oracle(ReplayOracle(synthetic_electrodes()))  # no hooks: nothing registered
    assert hooks.names == []


def test_unknown_plugin_names_in_the_campaign_file(tmp_path: Path, site: Path) -> None:
    install(
        site, "lab-millivolts", {"lab_millivolts": MILLIVOLTS}, {"millivolts": "lab_millivolts"}
    )
    synthetic_electrodes(n_frameworks=60).to_csv(tmp_path / "electrodes.csv", index=False)
    synthetic_electrodes(n_frameworks=60).to_csv(tmp_path / "answers.csv", index=False)
    path = write_campaign(tmp_path, ["millivolts", "milivolts", "millivolts"])
    with pytest.raises(CampaignError) as err:
        load_campaign(path)
    text = str(err.value)
    assert (
        "campaign.yaml:11 plugins[1]: unknown plugin 'milivolts' (did you mean 'millivolts'?); installed hook plugins: millivolts"
        in text
    )
    assert "campaign.yaml:11 plugins[2]: 'millivolts' is listed twice" in text
    with pytest.raises(
        PluginError,
        match=r"plugins\[0\]: unknown plugin 'nothing'; installed hook plugins: millivolts",
    ):
        CampaignHooks.load(["nothing"], campaign="c", workdir=tmp_path)


def test_plugins_cannot_change_on_resume(tmp_path: Path, site: Path) -> None:
    install(
        site,
        "lab-range",
        {"lab_range": RANGE_CHECK.replace("LIMIT_V", "9")},
        {"range-check": "lab_range"},
    )
    synthetic_electrodes(n_frameworks=60).to_csv(tmp_path / "electrodes.csv", index=False)
    synthetic_electrodes(n_frameworks=60).to_csv(tmp_path / "answers.csv", index=False)
    path = write_campaign(tmp_path, [], rounds=1)
    path.write_text(path.read_text().replace("[average_voltage_mV]", "[average_voltage]"))
    Campaign.from_file(path, workdir=tmp_path / "run").run()
    path.write_text(path.read_text().replace("plugins: []", "plugins: [range-check]"))
    with pytest.raises(DiscoveryError, match="different plugins"):
        Campaign.from_file(path, workdir=tmp_path / "run").run()


def test_discover_plugins_lists_the_builtin_oracles() -> None:
    result = CliRunner().invoke(app, ["plugins", "--json"])
    found = {(p["kind"], p["name"]): p for p in json.loads(result.stdout)}
    # exit status 2 exactly when an installed plugin (of this environment) cannot be used
    broken = [p["error"] for p in found.values() if p["error"]]
    assert result.exit_code == (2 if broken else 0)
    assert all(f"error: {e}" in result.stderr for e in broken)
    for name in ("replay", "model", "lab"):
        entry = found[("oracle", name)]
        assert (entry["package"], entry["version"], entry["error"]) == (
            "discovery",
            discovery.__version__,
            None,
        )
    table = CliRunner().invoke(app, ["plugins"])
    assert table.exit_code == result.exit_code
    assert re.search(
        r"oracle\s+│\s+replay\s+│\s+discovery\s+│\s+" + re.escape(discovery.__version__),
        table.stdout,
    )


# ---------------------------------------------------------------------------- the docs example
def doc_files(markdown: str) -> dict[str, str]:
    """The code blocks of a page marked ``<!-- example-file: PATH -->``, by path."""
    pattern = re.compile(r"<!-- example-file: (\S+) -->\n```\w*\n(.*?)```", re.S)
    return {m.group(1): m.group(2) for m in pattern.finditer(markdown)}


@pytest.mark.slow
def test_the_docs_example_installs_and_runs(tmp_path: Path) -> None:
    """docs/plugins.md's package, installed with pip into a private folder: its own tests pass,
    `discover plugins` lists it, and a two-round campaign with its oracle and hook converts mV."""
    files = doc_files((REPO / "docs" / "plugins.md").read_text())
    assert {
        "acme-cycler/pyproject.toml",
        "acme-cycler/acme_cycler.py",
        "campaign-fragment.yaml",
    } <= set(files)
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(tmp_path / "acme-cycler")],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert (site / "acme_cycler.py").is_file()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], env=env, cwd=tmp_path, capture_output=True, text=True
        )

    # its own tests (run from the package folder against the installed module)
    tests = run(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(tmp_path / "acme-cycler" / "test_acme_cycler.py"),
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout

    listing = run("-m", "discovery.cli", "plugins", "--json")
    found = {(p["kind"], p["name"]): p for p in json.loads(listing.stdout)}
    oracle, hook = found[("oracle", "acme-cycler")], found[("hooks", "acme-millivolts")]
    assert oracle["error"] is None and hook["error"] is None, listing.stderr
    assert (oracle["package"], oracle["version"]) == ("acme-cycler", "0.1.0")
    assert (hook["package"], hook["version"], hook["hooks"]) == (
        "acme-cycler",
        "0.1.0",
        ["discovery_result_received"],
    )

    frame = synthetic_electrodes(n_frameworks=60)
    frame.to_csv(tmp_path / "electrodes.csv", index=False)
    frame.assign(voltage_mV=frame["average_voltage"] * 1000).drop(
        columns=["average_voltage"]
    ).to_csv(tmp_path / "cycler-export.csv", index=False)
    campaign = yaml.safe_load(CAMPAIGN.replace("ROUNDS", "2").replace("PLUGINS", "[]"))
    campaign.update(yaml.safe_load(files["campaign-fragment.yaml"]))
    (tmp_path / "campaign.yaml").write_text(yaml.safe_dump(campaign))
    done = run("-m", "discovery.cli", "run", "campaign.yaml", "--workdir", "run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "campaign finished" in done.stdout

    ledger = Ledger(tmp_path / "run" / "ledger.sqlite")
    try:
        results = ledger.results()
    finally:
        ledger.close()
    truth = frame.assign(candidate_id=candidate_ids(frame)).set_index("candidate_id")[
        "average_voltage"
    ]
    ok = results[results["status"] == "ok"].set_index("candidate_id")
    assert len(ok) == 5 + 3 and set(ok["fidelity"]) == {"experiment"}
    assert (ok["average_voltage"] - truth[ok.index]).abs().max() < 1e-9  # mV became V
    assert (ok["round"] == 1).sum() == 3  # a model-based round learned from the converted answers
