"""Campaign files: the validated models, their defaults, the loader's file:line messages, the
YAML round trip and the JSON schema."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discovery.campaign import (
    AcquisitionSpec,
    BudgetSpec,
    CampaignError,
    CampaignSpec,
    ComputeSpec,
    ConstraintSpec,
    ContinuousSpaceSpec,
    GeneratedSpace,
    InitialDataSpec,
    IonSpec,
    LinearConstraintSpec,
    ObjectiveSpec,
    OracleSpec,
    SiteSpec,
    SurrogateSpec,
    TableSpace,
    campaign_schema,
    dump_campaign,
    load_campaign,
    load_campaign_text,
    template_sites,
)
from discovery.campaign.loader import MAX_BYTES
from discovery.chemistry import DEFAULT_IONS, Ion
from discovery.oracles import oracle_names

# Eleven lines; tests append fields from line 12 on.
BASE = """\
name: demo
ions: [Na, K]
space:
  kind: table
  path: pool.csv
budget:
  rounds: 3
oracle:
  name: replay
  options:
    path: labels.csv
"""


def _write(folder: Path, text: str, name: str = "campaign.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for table in ("pool.csv", "labels.csv", "init.csv"):
        (folder / table).write_text("formula_charge,formula_discharge,working_ion\n")
    path = folder / name
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> CampaignError:
    path = _write(tmp_path, text)
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    return info.value


def _lines(error: CampaignError) -> list[tuple[int | None, str, str]]:
    return list(error.problems)


# --------------------------------------------------------------------------------------------
# Valid campaigns and defaults


def test_minimal_campaign_loads_with_absolute_paths(tmp_path: Path) -> None:
    spec = load_campaign(_write(tmp_path, BASE))
    assert spec.name == "demo"
    assert spec.ions == ["Na", "K"]
    assert isinstance(spec.space, TableSpace)
    assert spec.space.path == tmp_path / "pool.csv"
    assert spec.oracle.options == {"path": str(tmp_path / "labels.csv")}
    assert spec.workdir == tmp_path / "runs" / "demo"
    assert spec.budget == BudgetSpec(rounds=3)


def test_every_default(tmp_path: Path) -> None:
    spec = load_campaign(_write(tmp_path, BASE))
    assert spec.seed == 0
    assert spec.extra_ions == []
    assert spec.objectives == [
        ObjectiveSpec(name="average_voltage", direction="maximize"),
        ObjectiveSpec(name="capacity_grav", direction="maximize"),
    ]
    assert spec.constraints == []
    assert spec.reference_point == "auto"
    assert spec.batch_size == 8
    assert spec.initial_data is None
    assert spec.space == TableSpace(kind="table", path=tmp_path / "pool.csv", drop_invalid=True)
    assert spec.surrogate == SurrogateSpec(
        targets=["average_voltage"],
        members=32,
        hidden=[96, 96, 96],
        max_epochs=80,
        patience=20,
        batch_size=512,
        learning_rate=8e-3,
        weight_decay=1e-4,
    )
    assert spec.acquisition == AcquisitionSpec(
        strategy="qlognehvi", mc_samples=128, shortlist=256, num_restarts=8, raw_samples=256
    )
    assert spec.budget.oracle_calls is None
    assert spec.budget.initial_random == 0
    assert spec.compute == ComputeSpec(
        backend="local",
        address=None,
        workers=1,
        gpus_per_worker=0,
        cpus_per_worker=1,
        chunk_rows=1024,
    )
    assert SiteSpec(elements=["Fe"]).max_elements == 2
    assert SiteSpec(elements=["Fe"]).fraction_step == 0.25
    assert InitialDataSpec(path=Path("x.csv")).ions is None
    assert InitialDataSpec(path=Path("x.csv")).drop_invalid is True
    assert OracleSpec(name="replay").options == {}
    assert ConstraintSpec(name="average_voltage", max=4.5).min is None
    assert LinearConstraintSpec(coefficients={"Ga": 1}, max=0.1).min is None
    assert (
        GeneratedSpace.model_validate(
            {
                "kind": "generate",
                "frameworks": [
                    {"template": "A_x M O2", "sites": {"M": {"elements": ["Fe"]}}, "x": [1]}
                ],
            }
        ).max_candidates
        is None
    )
    continuous = ContinuousSpaceSpec.model_validate(
        {
            "kind": "continuous",
            "template": "A_x M",
            "site": "M",
            "working_ion": "Mg",
            "elements": ["Mg", "Ga"],
            "x": 1,
        }
    )
    assert (continuous.bounds, continuous.max_wt_percent, continuous.linear_constraints) == (
        {},
        {},
        [],
    )
    assert continuous.x == 1.0


def test_full_campaign_with_every_section(tmp_path: Path) -> None:
    text = BASE.replace(
        "space:\n  kind: table\n  path: pool.csv\n",
        textwrap.dedent(
            """\
            space:
              kind: generate
              max_candidates: 100000
              frameworks:
                - template: A_x M O2
                  name: layered
                  sites: {M: {elements: [Mn, Fe, Co, Ni], max_elements: 2, fraction_step: 0.5}}
                  x: [0.5, 1]
                - template: A_x M2 (PO4)3
                  sites: {M: {elements: [V, Ti]}}
                  x: [1, 2, 3]
            """
        ),
    ) + textwrap.dedent(
        """\
        seed: 7
        extra_ions:
          - {symbol: Sr, valence: 2, molar_mass_g_mol: 87.62, shannon_radius_angstrom: 1.18,
             reduction_potential_v: -2.89, electronegativity: 0.95}
        objectives:
          - name: average_voltage
          - name: capacity_grav
          - {name: max_delta_volume, direction: minimize}
        constraints:
          - {name: average_voltage, min: 1.5, max: 4.5}
        reference_point: [1.0, 50, 0.3]
        surrogate: {targets: [average_voltage, max_delta_volume], members: 4}
        acquisition: {strategy: qnparego, shortlist: 64}
        batch_size: 4
        initial_data: {path: init.csv, ions: [Na, Sr]}
        compute: {backend: ray, address: auto, workers: 2, gpus_per_worker: 0.5}
        workdir: out/here
        """
    )
    spec = load_campaign(_write(tmp_path, text))
    assert isinstance(spec.space, GeneratedSpace)
    assert spec.space.frameworks[0].name == "layered"
    assert spec.outcome_names() == (
        "average_voltage",
        "max_delta_volume",
        "capacity_grav",
        "energy_grav",
    )
    assert spec.ion_table()["Sr"] == Ion("Sr", 2, 87.62, 1.18, -2.89, 0.95)
    assert list(spec.ion_table())[:10] == list(DEFAULT_IONS)
    assert spec.initial_data is not None and spec.initial_data.path == tmp_path / "init.csv"
    assert spec.workdir == tmp_path / "out" / "here"
    assert spec.reference_point == [1.0, 50.0, 0.3]
    # A loaded spec (absolute paths) round-trips as it is, from any folder.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert load_campaign(_write(elsewhere, dump_campaign(spec), "copy.yaml")) == spec
    config = spec.surrogate.to_config(seed=spec.seed)
    assert (config.members, config.hidden, config.seed, config.learning_rate) == (
        4,
        (96, 96, 96),
        7,
        8e-3,
    )


@pytest.mark.parametrize(
    ("encoding", "shared"), [("standard", False), ("mixed", False), ("piecewise_linear", True)]
)
def test_the_input_encoding_reaches_the_ensemble(
    tmp_path: Path, encoding: str, shared: bool
) -> None:
    spec = load_campaign(_write(tmp_path, BASE + f"surrogate: {{input_encoding: {encoding}}}\n"))
    config = spec.surrogate.to_config()
    # piecewise_linear shares the first hidden layer; mixed shares its encoded members' own
    assert (config.input_encoding, config.shared_first_layer) == (encoding, shared)


def test_the_default_input_encoding_is_mixed_even_for_one_member(tmp_path: Path) -> None:
    spec = load_campaign(_write(tmp_path, BASE + "surrogate: {members: 1}\n"))
    assert spec.surrogate.to_config().input_encoding == "mixed"


def test_bin_edges_reach_the_ensemble_and_default_to_target(tmp_path: Path) -> None:
    assert load_campaign(_write(tmp_path, BASE)).surrogate.to_config().bin_edges == "target"
    spec = load_campaign(_write(tmp_path, BASE + "surrogate: {bin_edges: quantile}\n"))
    assert spec.surrogate.to_config().bin_edges == "quantile"


def test_continuous_space(tmp_path: Path) -> None:
    text = BASE.replace("[Na, K]", "[Mg]").replace(
        "space:\n  kind: table\n  path: pool.csv\n",
        textwrap.dedent(
            """\
            space:
              kind: continuous
              template: A_x M
              site: M
              working_ion: Mg
              elements: [Mg, Ga, Ca, In]
              bounds: {Mg: [0.9, 1]}
              max_wt_percent: {Ga: 3, Ca: 3, In: 3}
              linear_constraints: [{coefficients: {Ga: 1, Ca: 1, In: 1}, max: 0.1}]
              x: [0.5, 2]
            """
        ),
    )
    spec = load_campaign(_write(tmp_path, text))
    assert isinstance(spec.space, ContinuousSpaceSpec)
    assert spec.space.bounds == {"Mg": (0.9, 1.0)}
    assert spec.space.x == (0.5, 2.0)


def test_relative_paths_resolve_against_the_campaign_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "project", BASE + "workdir: ../runs-elsewhere\n")
    monkeypatch.chdir(tmp_path)
    spec = load_campaign(Path("project") / "campaign.yaml")
    assert spec.space.path == tmp_path / "project" / "pool.csv"  # type: ignore[union-attr]
    assert spec.workdir == tmp_path / "runs-elsewhere"
    assert spec.resolved(tmp_path / "other") == spec  # already absolute: unchanged
    assert load_campaign_text(path.read_text(), base_dir=path.parent) == spec


def test_yaml_keeps_element_symbols_and_dates_as_strings(tmp_path: Path) -> None:
    spec = load_campaign(_write(tmp_path, BASE.replace("name: demo", "name: 2024-05-01")))
    assert spec.name == "2024-05-01"
    site = SiteSpec.model_validate({"elements": ["No", "Fe"]})  # nobelium, not false
    assert site.elements == ["No", "Fe"]


def test_template_sites() -> None:
    assert template_sites("A_x M O2") == ("M",)
    assert template_sites("A_x M2 (PO4)3") == ("M",)
    assert template_sites("A_x M X O4") == ("M", "X")
    assert template_sites("A_x Mn O2") == ()


def test_import_is_light() -> None:
    code = "import sys, discovery.campaign; print(sorted({'pandas', 'torch', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# Errors: file:line field: message


def test_the_issue_example_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        BASE
        + "objectives:\n  - name: average_voltage\n  - {name: capacity_grav, direction: maximise}\n"
    )
    _write(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CampaignError) as info:
        load_campaign("campaign.yaml")
    assert str(info.value) == (
        "campaign.yaml:14 objectives[1].direction: expected 'maximize' or 'minimize', got 'maximise'"
    )
    assert (info.value.file, info.value.line, info.value.field) == (
        "campaign.yaml",
        14,
        "objectives[1].direction",
    )


ERRORS = [
    # (name, text, line, field, message)
    (
        "unknown field",
        BASE + "seeed: 3\n",
        12,
        "seeed",
        "unknown field 'seeed' (did you mean 'seed'?)",
    ),
    (
        "unknown nested field",
        BASE + "surrogate:\n  members: 4\n  membres: 3\n",
        14,
        "surrogate.membres",
        "unknown field 'membres' (did you mean 'members'?)",
    ),
    (
        "unknown input encoding",
        BASE + "surrogate:\n  input_encoding: quantile\n",
        13,
        "surrogate.input_encoding",
        "expected 'standard', 'mixed' or 'piecewise_linear', got 'quantile'",
    ),
    (
        "unknown bin edges",
        BASE + "surrogate:\n  bin_edges: uniform\n",
        13,
        "surrogate.bin_edges",
        "expected 'target' or 'quantile', got 'uniform'",
    ),
    (
        "unknown field in a space",
        BASE.replace("path: pool.csv", "path: pool.csv\n  paht: x"),
        6,
        "space.paht",
        "unknown field 'paht' (did you mean 'path'?)",
    ),
    (
        "missing field",
        BASE.replace("  name: replay\n", ""),
        8,
        "oracle.name",
        "required field missing",
    ),
    (
        "missing section",
        BASE.replace("budget:\n  rounds: 3\n", ""),
        1,
        "budget",
        "required field missing",
    ),
    ("integer", BASE + "batch_size: abc\n", 12, "batch_size", "expected an integer, got 'abc'"),
    ("integer from float", BASE + "seed: 1.5\n", 12, "seed", "expected an integer, got 1.5"),
    (
        "number",
        BASE + "surrogate: {learning_rate: fast}\n",
        12,
        "surrogate.learning_rate",
        "expected a number, got 'fast'",
    ),
    (
        "boolean",
        BASE.replace("path: pool.csv", "path: pool.csv\n  drop_invalid: maybe"),
        6,
        "space.drop_invalid",
        "expected true or false, got 'maybe'",
    ),
    ("list", BASE.replace("[Na, K]", "Na"), 2, "ions", "expected a list, got 'Na'"),
    ("positive", BASE + "batch_size: 0\n", 12, "batch_size", "must be > 0, got 0"),
    (
        "strategy",
        BASE + "acquisition:\n  strategy: ucb\n",
        13,
        "acquisition.strategy",
        "expected 'qlognehvi', 'qnparego', 'greedy' or 'random', got 'ucb'",
    ),
    (
        "space kind",
        BASE.replace("kind: table", "kind: tabel"),
        4,
        "space.kind",
        "expected 'table', 'generate' or 'continuous', got 'tabel'",
    ),
    (
        "space kind missing",
        BASE.replace("  kind: table\n", ""),
        3,
        "space.kind",
        "required field missing (expected 'table', 'generate' or 'continuous')",
    ),
    (
        "unknown ion",
        BASE.replace("[Na, K]", "[Na, Kk]"),
        2,
        "ions[1]",
        "unknown working ion 'Kk' (did you mean 'K'?); known ions: Li, Na, K, Rb, Cs, Mg, Ca, "
        "Zn, Al, Y (add it under extra_ions to use it)",
    ),
    (
        "unknown oracle",
        BASE.replace("name: replay", "name: replai"),
        9,
        "oracle.name",
        "unknown oracle 'replai' (did you mean 'replay'?); known oracles: "
        + ", ".join(oracle_names()),  # the built-in ones and any installed plugin's
    ),
    (
        "missing table",
        BASE.replace("path: pool.csv", "path: data/missing.csv"),
        5,
        "space.path",
        "no such file: 'data/missing.csv' (relative paths are read from the campaign file's folder)",
    ),
    (
        "table of an unknown format",
        BASE.replace("path: pool.csv", "path: campaign.yaml"),
        5,
        "space.path",
        "'campaign.yaml' is not a table: expected a file ending in .csv, .txt, .gz, .parquet, .pq",
    ),
    (
        "missing initial data",
        BASE + "initial_data:\n  path: nope.parquet\n",
        13,
        "initial_data.path",
        "no such file: 'nope.parquet' (relative paths are read from the campaign file's folder)",
    ),
    (
        "missing oracle path",
        BASE.replace("path: labels.csv", "path: gone.csv"),
        11,
        "oracle.options.path",
        "no such file or folder: 'gone.csv' (relative paths are read from the campaign file's folder)",
    ),
    (
        "unknown element",
        BASE.replace(
            "  kind: table\n  path: pool.csv\n",
            "  kind: generate\n  frameworks:\n    - template: A_x M O2\n"
            "      sites: {M: {elements: [Fe, Mnn]}}\n      x: [1]\n",
        ),
        7,
        "space.frameworks[0].sites.M.elements[1]",
        "unknown element 'Mnn' (did you mean 'Mn'?)",
    ),
    (
        "template without the ion site",
        BASE.replace(
            "  kind: table\n  path: pool.csv\n",
            "  kind: generate\n  frameworks:\n    - template: M O2\n"
            "      sites: {M: {elements: [Fe]}}\n      x: [1]\n",
        ),
        6,
        "space.frameworks[0].template",
        "a template needs the working-ion site 'A_x' exactly once as its own word "
        "(as in 'A_x M O2'), found it 0 times in 'M O2'",
    ),
    (
        "site without an entry",
        BASE.replace(
            "  kind: table\n  path: pool.csv\n",
            "  kind: generate\n  frameworks:\n    - template: A_x M X O4\n"
            "      sites:\n        M: {elements: [Fe]}\n        Q: {elements: [S]}\n      x: [1]\n",
        ),
        7,
        "space.frameworks[0].sites",
        "site 'X' of template 'A_x M X O4' has no entry in sites",
    ),
    (
        "objective that is not an outcome",
        BASE + "objectives:\n  - name: voltage\n",
        13,
        "objectives[0].name",
        "'voltage' is not an outcome of this campaign (did you mean 'average_voltage'?); "
        "outcomes: average_voltage, capacity_grav, energy_grav "
        "(learned outcomes are set by surrogate.targets)",
    ),
    (
        "duplicate objective",
        BASE + "objectives:\n  - name: capacity_grav\n  - name: capacity_grav\n",
        14,
        "objectives[1].name",
        "'capacity_grav' is listed twice",
    ),
    ("no objective", BASE + "objectives: []\n", 12, "objectives", "give at least one objective"),
    (
        "reference point length",
        BASE + "reference_point: [1, 2, 3]\n",
        12,
        "reference_point",
        "expected one value per objective (2), got 3",
    ),
    (
        "reference point value",
        BASE + "reference_point: [1, high]\n",
        12,
        "reference_point[1]",
        "expected a number, got 'high'",
    ),
    (
        "constraint bounds",
        BASE + "constraints:\n  - name: average_voltage\n    min: 4\n    max: 3\n",
        14,
        "constraints[0].min",
        "min (4.0) is larger than max (3.0)",
    ),
    (
        "constraint without bounds",
        BASE + "constraints:\n  - name: average_voltage\n",
        13,
        "constraints[0]",
        "give min, max or both",
    ),
    (
        "budget without a limit",
        BASE.replace("rounds: 3", "initial_random: 3"),
        6,
        "budget",
        "give rounds, oracle_calls or both",
    ),
    (
        "campaign name",
        BASE.replace("name: demo", "name: my campaign"),
        1,
        "name",
        "expected a non-empty name of letters, digits, '_', '.' and '-', got 'my campaign'",
    ),
    (
        "continuous working ion not in scope",
        BASE.replace(
            "  kind: table\n  path: pool.csv\n",
            "  kind: continuous\n  template: A_x M\n  site: M\n  working_ion: Mg\n"
            "  elements: [Mg, Ga]\n  x: 1\n",
        ),
        7,
        "space.working_ion",
        "working ion 'Mg' is not in ions (Na, K)",
    ),
    (
        "continuous bounds",
        BASE.replace("[Na, K]", "[Mg]").replace(
            "  kind: table\n  path: pool.csv\n",
            "  kind: continuous\n  template: A_x M\n  site: M\n  working_ion: Mg\n"
            "  elements: [Mg, Ga]\n  bounds: {Ga: [0, 1.5]}\n  x: 1\n",
        ),
        9,
        "space.bounds.Ga",
        "expected 0 <= low <= high <= 1, got [0.0, 1.5]",
    ),
    (
        "continuous amount",
        BASE.replace("[Na, K]", "[Mg]").replace(
            "  kind: table\n  path: pool.csv\n",
            "  kind: continuous\n  template: A_x M\n  site: M\n  working_ion: Mg\n"
            "  elements: [Mg, Ga]\n  x: [1, 2, 3]\n",
        ),
        9,
        "space.x",
        "expected a number or a pair [low, high] of numbers, got a list of 3 items",
    ),
    (
        "learned exact outcome",
        BASE + "surrogate:\n  targets: [average_voltage, capacity_grav]\n",
        13,
        "surrogate.targets[1]",
        "'capacity_grav' is computed exactly from the formulas, not learned; remove it",
    ),
    (
        "address without ray",
        BASE + "compute:\n  address: auto\n",
        13,
        "compute.address",
        "an address is only used with backend 'ray'",
    ),
    (
        "duplicate key",
        BASE + "seed: 1\nseed: 2\n",
        13,
        "seed",
        "duplicate key 'seed' (first given on line 12)",
    ),
    (
        "YAML syntax",
        BASE + "seed: [1, 2\n",
        13,
        "",
        "invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence that starts on line 12)",
    ),
    (
        "anchor",
        BASE + "surrogate: &s {members: 3}\n",
        12,
        "",
        "anchors (&s) are not allowed; write the value out",
    ),
    ("deep", BASE + "seed: " + "[" * 51 + "]" * 51 + "\n", 12, "", "nested deeper than 50 levels"),
    (
        "python tag",
        BASE + "seed: !!python/object:os.system 3\n",
        12,
        "seed",
        "the tag !!python/object:os.system is not allowed; a campaign file is plain YAML "
        "(mappings, lists, strings, numbers, true/false, null) without tags",
    ),
    (
        "top-level list",
        "- name: demo\n",
        1,
        "",
        "expected a mapping of campaign fields, got a list of 1 item",
    ),
    (
        "top-level scalar",
        "demo\n",
        1,
        "",
        "expected a mapping of campaign fields, got the value 'demo'",
    ),
    (
        "two documents",
        BASE + "---\nname: other\n",
        12,
        "",
        "invalid YAML: expected a single document in the stream, but found another document",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_error_names_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, message: str
) -> None:
    error = _error(tmp_path, text)
    assert (line, field, message) in _lines(error), str(error)
    where = f"{tmp_path / 'campaign.yaml'}:{line}"
    expected = f"{where} {field}: {message}" if field else f"{where}: {message}"
    assert expected in str(error).splitlines()


def test_several_problems_are_listed_by_line(tmp_path: Path) -> None:
    text = BASE.replace("rounds: 3", "rounds: -1") + "batch_size: x\nseeed: 1\n"
    error = _error(tmp_path, text)
    assert [(line, field) for line, field, _ in error.problems] == [
        (7, "budget.rounds"),
        (12, "batch_size"),
        (13, "seeed"),
    ]
    assert (error.line, error.field) == (7, "budget.rounds")


def test_alias_is_refused(tmp_path: Path) -> None:
    text = BASE + "surrogate: &s {members: 3}\nacquisition: *s\n"
    assert _error(tmp_path, text).problems[0][0] == 12
    assert "aliases (*s) are not allowed" in str(_error(tmp_path, BASE + "x: *s\n"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty campaign file"),
        (b"# only a comment\n", "empty campaign file"),
        (bytes(range(256)) * 4, "not a text file (a campaign is YAML text in UTF-8)"),
        (b"name: \xff\xfe demo\n", "not a text file (a campaign is YAML text in UTF-8)"),
        (b"name: \x07demo\n", "not a text file: invalid character #x0007"),
    ],
    ids=["empty", "comment", "binary", "latin-1", "control character"],
)
def test_unreadable_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_bytes(content)
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    assert str(info.value) == f"{path}: {message}"
    assert info.value.line is None


def test_large_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text(BASE + "#" * MAX_BYTES + "\n")
    with pytest.raises(CampaignError, match=r"file is larger than 1048576 bytes"):
        load_campaign(path)
    with pytest.raises(CampaignError, match=r"nothere\.yaml: no such file$"):
        load_campaign(tmp_path / "nothere.yaml")
    with pytest.raises(CampaignError, match=r"is a folder, not a campaign file$"):
        load_campaign(tmp_path)


def test_python_construction_reports_nested_problems() -> None:
    with pytest.raises(ValueError, match=r"ions\[0\]: unknown working ion 'Xx'"):
        CampaignSpec.model_validate(
            {
                "name": "x",
                "ions": ["Xx"],
                "space": {"kind": "table", "path": "pool.csv"},
                "budget": {"rounds": 1},
                "oracle": {"name": "replay"},
            }
        )
    with pytest.raises(ValueError, match="valence"):
        IonSpec(
            symbol="Sr",
            valence=0,
            molar_mass_g_mol=87.62,
            shannon_radius_angstrom=1.18,
            reduction_potential_v=-2.89,
            electronegativity=0.95,
        )


# --------------------------------------------------------------------------------------------
# Round trip and schema

_OUTCOMES = ["average_voltage", "max_delta_volume", "capacity_grav", "energy_grav"]
_FLOATS = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
_POSITIVE = st.floats(1e-3, 10.0, allow_nan=False)


@st.composite
def _continuous(draw: st.DrawFn, ion: str) -> dict[str, Any]:
    elements = draw(
        st.lists(
            st.sampled_from(["Mg", "Ga", "Ca", "In", "Zn", "Al"]),
            min_size=2,
            max_size=4,
            unique=True,
        )
    )
    bounded = draw(st.lists(st.sampled_from(elements), unique=True))
    out: dict[str, Any] = {
        "kind": "continuous",
        "template": draw(st.sampled_from(["A_x M", "A_x M O2", "A_x M2 (PO4)3"])),
        "site": "M",
        "working_ion": ion,
        "elements": elements,
        "bounds": {
            e: [draw(st.floats(0, 0.5 / len(elements))), draw(st.floats(0.5, 1))] for e in bounded
        },
        "max_wt_percent": {
            e: draw(st.floats(0.5, 100))
            for e in draw(st.lists(st.sampled_from(elements), unique=True))
        },
        "x": draw(st.one_of(_POSITIVE, st.tuples(_POSITIVE, _POSITIVE).map(sorted))),
    }
    if draw(st.booleans()):
        coefficients = {
            e: draw(_FLOATS)
            for e in draw(st.lists(st.sampled_from(elements), min_size=1, unique=True))
        }
        low = draw(st.none() | _FLOATS)
        out["linear_constraints"] = [
            {
                "coefficients": coefficients,
                "min": low,
                "max": None if low is not None else draw(_FLOATS),
            }
        ]
    return out


_SITE = st.fixed_dictionaries(
    {
        "elements": st.lists(
            st.sampled_from(["Mn", "Fe", "Co", "Ni", "V", "Ti"]),
            min_size=1,
            max_size=4,
            unique=True,
        )
    },
    optional={
        "max_elements": st.integers(1, 3),
        "fraction_step": st.sampled_from([1.0, 0.5, 0.25, 0.2, 0.1]),
    },
)
_FRAMEWORK = st.sampled_from(
    [("A_x M O2", ["M"]), ("A_x M2 (PO4)3", ["M"]), ("A_x M X O4", ["M", "X"])]
).flatmap(
    lambda t: st.fixed_dictionaries(
        {
            "template": st.just(t[0]),
            "sites": st.fixed_dictionaries({label: _SITE for label in t[1]}),
            "x": st.lists(_POSITIVE, min_size=1, max_size=3),
        },
        optional={"name": st.text("abcxyz-", min_size=1, max_size=8)},
    )
)


_EXTRA_ION = {
    "symbol": "Sr",
    "valence": 2,
    "molar_mass_g_mol": 87.62,
    "shannon_radius_angstrom": 1.18,
    "reduction_potential_v": -2.89,
    "electronegativity": 0.95,
}


@st.composite
def campaigns(draw: st.DrawFn) -> CampaignSpec:
    """Valid campaigns; optional fields are left out at random so that defaults round-trip too."""
    ions = draw(
        st.lists(
            st.sampled_from(["Li", "Na", "K", "Mg", "Ca", "Zn", "Al", "Sr"]),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    targets = ["average_voltage", *draw(st.lists(st.just("max_delta_volume"), max_size=1))]
    outcomes = [*targets, "capacity_grav", "energy_grav"]
    objectives = draw(st.lists(st.sampled_from(outcomes), min_size=1, max_size=3, unique=True))
    data: dict[str, Any] = {
        "name": draw(st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,11}", fullmatch=True)),
        "ions": ions,
        "extra_ions": [_EXTRA_ION],
        "space": draw(
            st.one_of(
                st.fixed_dictionaries(
                    {
                        "kind": st.just("table"),
                        "path": st.sampled_from(["pool.csv", "data/pool.parquet"]),
                    },
                    optional={"drop_invalid": st.booleans()},
                ),
                st.fixed_dictionaries(
                    {
                        "kind": st.just("generate"),
                        "frameworks": st.lists(_FRAMEWORK, min_size=1, max_size=2),
                    },
                    optional={"max_candidates": st.integers(1, 10**7)},
                ),
                _continuous(ions[0]),
            )
        ),
        "budget": draw(
            st.fixed_dictionaries(
                {"rounds": st.integers(1, 100)},
                optional={
                    "oracle_calls": st.integers(1, 10**4),
                    "initial_random": st.integers(0, 50),
                },
            )
        ),
        "oracle": draw(
            st.sampled_from(
                [
                    {"name": "replay", "options": {"path": "labels.csv", "strict": True}},
                    {"name": "model"},
                ]
            )
        ),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "seed": st.integers(0, 2**31),
        "objectives": st.lists(
            st.sampled_from(["maximize", "minimize"]),
            min_size=len(objectives),
            max_size=len(objectives),
        ).map(lambda ds: [{"name": n, "direction": d} for n, d in zip(objectives, ds)]),
        "constraints": st.lists(
            st.tuples(st.sampled_from(outcomes), st.none() | st.floats(1, 5)),
            max_size=2,
            unique_by=lambda c: c[0],
        ).map(lambda cs: [{"name": n, "min": 0.5, "max": high} for n, high in cs]),
        "reference_point": st.just("auto")
        | st.lists(_FLOATS, min_size=len(objectives), max_size=len(objectives)),
        "surrogate": st.fixed_dictionaries(
            {"targets": st.just(targets)},
            optional={
                "members": st.integers(1, 64),
                "hidden": st.lists(st.integers(1, 256), min_size=1, max_size=4),
                "learning_rate": st.floats(1e-6, 1.0),
                "weight_decay": st.floats(0, 1e-2),
            },
        ),
        "acquisition": st.fixed_dictionaries(
            {},
            optional={
                "strategy": st.sampled_from(["qlognehvi", "qnparego", "greedy", "random"]),
                "mc_samples": st.integers(1, 1024),
                "shortlist": st.integers(16, 4096),
            },
        ),
        "batch_size": st.integers(1, 16),
        "initial_data": st.fixed_dictionaries(
            {"path": st.just("init.csv")},
            optional={
                "ions": st.lists(st.sampled_from(["Li", "Na", "K"]), min_size=1, unique=True),
                "drop_invalid": st.booleans(),
            },
        ),
        "compute": st.fixed_dictionaries(
            {"backend": st.just("local")},
            optional={"workers": st.integers(1, 8), "chunk_rows": st.integers(1, 10**5)},
        )
        | st.fixed_dictionaries(
            {"backend": st.just("ray")},
            optional={
                "address": st.just("auto"),
                "gpus_per_worker": st.floats(0, 1),
                "cpus_per_worker": st.floats(0.5, 8),
            },
        ),
        "workdir": st.sampled_from(["out", "runs/x", "../elsewhere"]),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            data[key] = draw(strategy)
    if len(targets) > 1:  # objectives or constraints may name the extra target
        data.setdefault("surrogate", {"targets": targets})
    if isinstance(data.get("reference_point"), list):  # one value per objective
        data.setdefault("objectives", [{"name": name} for name in objectives])
    return CampaignSpec.model_validate(data)


@pytest.fixture(scope="module")
def campaign_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("roundtrip")
    _write(folder, BASE)
    (folder / "data").mkdir()
    (folder / "data" / "pool.parquet").write_bytes(b"")
    return folder


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=campaigns())
def test_dump_then_load_gives_an_equal_spec(campaign_folder: Path, spec: CampaignSpec) -> None:
    path = campaign_folder / "dumped.yaml"
    path.write_text(dump_campaign(spec))
    loaded = load_campaign(path)
    assert loaded == spec.resolved(campaign_folder)


def test_dump_writes_paths_as_given(tmp_path: Path) -> None:
    spec = CampaignSpec.model_validate(
        {
            "name": "x",
            "ions": ["Na"],
            "space": {"kind": "table", "path": "data/pool.csv"},
            "budget": {"rounds": 1},
            "oracle": {"name": "replay"},
        }
    )
    text = dump_campaign(spec)
    assert "path: data/pool.csv" in text
    assert "workdir" not in text and "surrogate" not in text


def test_schema_is_json_with_every_field_described() -> None:
    schema = json.loads(json.dumps(campaign_schema()))
    assert "properties" in schema
    assert set(schema["properties"]) == set(CampaignSpec.model_fields)
    models = [schema, *schema["$defs"].values()]
    for model in models:
        for name, prop in model.get("properties", {}).items():
            assert prop.get("description"), f"{model.get('title')}.{name} has no description"
