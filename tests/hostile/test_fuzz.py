"""Hypothesis fuzzing of the formula parser and the campaign loader, on a fixed budget.

Arbitrary text and bytes may only ever raise the documented errors (:class:`FormulaError`,
:class:`CampaignError`, both :class:`DiscoveryError`), never anything else; formulas and campaign
files that are valid by construction read back to what they were written from. Every property
runs a fixed number of examples, derandomized, so a run is repeatable and its cost bounded.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from discovery.campaign import dump_campaign, load_campaign, load_campaign_text
from discovery.campaign.loader import CampaignError
from discovery.chemistry.formula import ELEMENTS, MAX_AMOUNT, parse_formula
from discovery.errors import DiscoveryError, FormulaError
from tests.hostile._harness import REPLAY_CAMPAIGN, write_campaign

#: Examples per property (see docs/reliability.md).
FORMULA_EXAMPLES = 300
CAMPAIGN_EXAMPLES = 100


def _budget(n: int) -> Any:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# ---------------------------------------------------------------------------- formula parser
#: Characters a formula is made of, and the look-alikes and oddities a spreadsheet brings.
_FORMULA_ALPHABET = st.sampled_from(
    [
        *"ABCDEFGHIKLMNOPRSTUVWXYZabcdeghilmnorstuy0123456789.()[] -+e",
        *[
            "\u043e",
            "\u041e",
            "\u039f",
            "\uff12",
            "\u2082",
            "\u00a0",
            "\u200b",
            "\ufeff",
            "\n",
            "\x00",
        ],
    ]
)


def _check_parsed(formula: str) -> None:
    try:
        out = parse_formula(formula)
    except FormulaError as exc:
        assert str(exc).startswith("cannot parse formula ")
        assert len(str(exc)) < 600  # never the whole input
        return
    assert formula.strip().isascii()  # a look-alike digit or letter is never read as one
    assert out and all(el in ELEMENTS for el in out)
    assert all(math.isfinite(a) and 0 < a <= MAX_AMOUNT for a in out.values())


@_budget(FORMULA_EXAMPLES)
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_formula_error(formula: str) -> None:
    _check_parsed(formula)


@_budget(FORMULA_EXAMPLES)
@given(st.text(_FORMULA_ALPHABET, max_size=60))
def test_formula_like_text_parses_or_raises_formula_error(formula: str) -> None:
    _check_parsed(formula)


@_budget(FORMULA_EXAMPLES)
@given(st.binary(max_size=100))
def test_any_bytes_decoded_parse_or_raise_formula_error(data: bytes) -> None:
    _check_parsed(data.decode("utf-8", errors="surrogateescape"))


_AMOUNT = st.one_of(
    st.none(),
    st.integers(1, 40).map(str),
    st.decimals("0.01", "40", places=2).map(lambda d: format(d.normalize(), "f")),
)
_TERM = st.tuples(st.sampled_from(ELEMENTS), _AMOUNT)


@st.composite
def _formulas(draw: st.DrawFn) -> tuple[str, dict[str, float]]:
    """A formula with bracket groups, and the amounts it stands for (summed, multiplied out)."""
    expected: dict[str, float] = {}
    parts: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        terms = draw(st.lists(_TERM, min_size=1, max_size=4))
        group = draw(st.sampled_from([None, "()", "[]"]))
        factor = draw(_AMOUNT) if group else None
        multiplier = float(factor) if factor else 1.0
        text = "".join(f"{el}{amt or ''}" for el, amt in terms)
        for el, amt in terms:
            expected[el] = expected.get(el, 0.0) + (float(amt) if amt else 1.0) * multiplier
        parts.append(f"{group[0]}{text}{group[1]}{factor or ''}" if group else text)
    return "".join(parts), expected


@_budget(FORMULA_EXAMPLES)
@given(_formulas())
def test_valid_formulas_round_trip(case: tuple[str, dict[str, float]]) -> None:
    formula, expected = case
    parsed = parse_formula(formula)
    assert list(parsed) == list(expected)  # first-appearance order
    for el, amount in expected.items():
        assert parsed[el] == pytest.approx(amount, rel=1e-12)
    flat = "".join(f"{el}{amount!r}" for el, amount in parsed.items())
    assert parse_formula(flat) == parsed  # the parsed amounts written out read back the same


_ODD = st.sampled_from(
    ["\u043e", "\u041e", "\u039f", "\u0430", "\uff12", "\uff2f", "\u2082", "\u0661", "\u00a0",
     "\u2009", "\u200b", "\ufeff", "\n", "\r", "\x00"]
) | st.characters(min_codepoint=128)  # fmt: skip


@_budget(FORMULA_EXAMPLES)
@given(case=_formulas(), odd=_ODD, where=st.floats(0, 1))
def test_a_look_alike_character_in_a_valid_formula_is_named(
    case: tuple[str, dict[str, float]], odd: str, where: float
) -> None:
    """A valid formula with one non-ASCII or control character inside (a Cyrillic 'о', a
    fullwidth '２', a no-break space): refused, the character named by its code point."""
    formula = case[0]
    assume(len(formula) >= 2)
    at = 1 + int(where * (len(formula) - 2))  # inside, not at the ends (those are stripped)
    hostile = formula[:at] + odd + formula[at:]
    with pytest.raises(FormulaError) as info:
        parse_formula(hostile)
    assert f"U+{ord(odd):04X}" in str(info.value)


# ---------------------------------------------------------------------------- campaign loader
@pytest.fixture(scope="module")
def campaign_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the data files the base campaign names (so valid mutations stay valid)."""
    folder = tmp_path_factory.mktemp("fuzz")
    write_campaign(folder)
    return folder


def _load_text(text: str, folder: Path) -> None:
    try:
        load_campaign_text(text, source="fuzz.yaml", base_dir=folder)
    except CampaignError as exc:
        assert exc.problems
        assert all(line is None or line >= 1 for line, _, _ in exc.problems)
        assert str(exc).startswith("fuzz.yaml")


@_budget(CAMPAIGN_EXAMPLES)
@given(text=st.text(max_size=300))
def test_any_text_loads_or_raises_campaign_error(text: str, campaign_folder: Path) -> None:
    _load_text(text, campaign_folder)


_YAML_PIECES = st.sampled_from(
    [
        "name: x\n", "ions: [Na]\n", "  - a\n", "- b\n", "&a ", "*a", "<<: ", "!!python/name:os.system ",
        "!!binary ", "!x ", "? ", ": ", "{", "}", "[", "]", ",", "'", '"', "#", "\t", "\n", "---\n",
        "...\n", "%YAML 1.2\n", "|\n", ">\n", "1e999", "9" * 40, ".nan", "~", "true", "yes", "\ufeff",
        "\x00", "\x07", "\u2028", "seed: " + "9" * 4400 + "\n",
    ]
)  # fmt: skip


@_budget(CAMPAIGN_EXAMPLES)
@given(pieces=st.lists(_YAML_PIECES, max_size=40))
def test_yaml_like_text_loads_or_raises_campaign_error(
    pieces: list[str], campaign_folder: Path
) -> None:
    _load_text("".join(pieces), campaign_folder)


@_budget(CAMPAIGN_EXAMPLES)
@given(data=st.binary(max_size=300))
def test_any_file_loads_or_raises_campaign_error(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    with pytest.raises(DiscoveryError) as info:
        load_campaign(path)  # a few hundred random bytes are never a complete campaign
    assert isinstance(info.value, CampaignError)
    assert str(info.value).startswith(str(path))


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_BASE: dict[str, Any] = yaml.safe_load(REPLAY_CAMPAIGN)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


_FIELDS = [*_paths(_BASE), ("surrogate", "patience"), ("compute", "workers"), ("extra_ions",)]


@_budget(CAMPAIGN_EXAMPLES)
@given(field=st.sampled_from(_FIELDS), value=_VALUES)
def test_any_value_in_any_field_loads_or_raises_campaign_error(
    field: tuple[Any, ...], value: Any, campaign_folder: Path
) -> None:
    """The valid campaign with one field set to an arbitrary value (of any type, NaN, huge
    integers included): a valid spec, or a CampaignError naming that field."""
    data = yaml.safe_load(REPLAY_CAMPAIGN)
    node = data
    for part in field[:-1]:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    node[field[-1]] = value
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    try:
        load_campaign_text(text, source="fuzz.yaml", base_dir=campaign_folder)
    except CampaignError as exc:
        assert exc.problems
        for line, _, message in exc.problems:  # every problem has a line and a reason
            assert line is not None and line >= 1, exc
            assert message, exc


@_budget(CAMPAIGN_EXAMPLES // 3)
@given(
    seed=st.integers(0, 2**32 - 1),
    batch=st.integers(1, 12),
    members=st.integers(1, 1024),
    hidden=st.lists(st.integers(1, 16384), min_size=1, max_size=4),
    rounds=st.integers(1, 10**6),
    strategy=st.sampled_from(["qlognehvi", "qnparego", "greedy", "random"]),
)
def test_valid_campaigns_round_trip(
    seed: int,
    batch: int,
    members: int,
    hidden: list[int],
    rounds: int,
    strategy: str,
    campaign_folder: Path,
) -> None:
    data = yaml.safe_load(REPLAY_CAMPAIGN)
    data.update(seed=seed, batch_size=batch)
    data["surrogate"].update(members=members, hidden=hidden)
    data["budget"]["rounds"] = rounds
    data["acquisition"]["strategy"] = strategy
    spec = load_campaign_text(yaml.safe_dump(data), source="fuzz.yaml", base_dir=campaign_folder)
    again = load_campaign_text(dump_campaign(spec), source="dumped.yaml", base_dir=campaign_folder)
    assert again == spec
