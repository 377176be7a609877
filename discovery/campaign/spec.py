"""The campaign file as validated models: one pydantic model per YAML section, unknown keys rejected.

A campaign file maps one-to-one onto :class:`CampaignSpec`. Every model forbids unknown fields and
non-finite numbers, and each field's description names its units and default (``discover schema``
prints them as a JSON schema). Checks that involve several fields (ions and elements that must be
known, objective names that must be outcomes, a reference point with one value per objective) run
once the fields themselves are valid.

Paths are kept as written. When validation is given a ``base_dir`` context (as
:func:`discovery.campaign.load_campaign` does), the files that must exist are checked relative to
it; :meth:`CampaignSpec.resolved` then returns a copy whose paths are absolute.

Chemistry tables are imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

__all__ = [
    "TABLE_SUFFIXES",
    "AcquisitionSpec",
    "BudgetSpec",
    "CampaignSpec",
    "ComputeSpec",
    "ConstraintSpec",
    "ContinuousSpaceSpec",
    "FrameworkSpec",
    "GeneratedSpace",
    "InitialDataSpec",
    "IonSpec",
    "LinearConstraintSpec",
    "ObjectiveSpec",
    "OracleSpec",
    "SiteSpec",
    "SpaceSpec",
    "SurrogateSpec",
    "TableSpace",
    "template_sites",
]

import difflib
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from discovery.chemistry.ions import Ion, IonTable
    from discovery.surrogate.ensemble import EnsembleConfig

#: File suffixes of candidate and data tables (CSV or parquet), as ``discovery.data.read_table`` reads them.
TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".txt", ".gz", ".parquet", ".pq")

#: Upper bounds of sizes that cost memory or time in proportion (a typo such as ``members: 32000``
#: would otherwise exhaust the machine instead of failing validation), and of the seed (numpy and
#: torch take seeds of at most 64 bits, and model seeds are ``seed x 1000 + round``).
MAX_MEMBERS = 1024
MAX_LAYERS = 64
MAX_WIDTH = 16384
MAX_MC_SAMPLES = 8192
MAX_RESTARTS = 1000
MAX_RAW_SAMPLES = 100_000
MAX_SEED = 2**32 - 1

#: The token of a framework template that stands for the working-ion site.
ION_SITE = "A_x"

#: Outcomes computed exactly from the formulas (capacity, mAh/g) or derived from others
#: (energy = voltage x capacity, Wh/kg); they are never learned targets.
EXACT_OUTCOMES: tuple[str, ...] = ("capacity_grav", "energy_grav")

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True)
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_WORD = re.compile(r"[A-Z][a-z]*")

Loc = tuple[str | int, ...]


class FieldProblems(ValueError):
    """Several problems found by one validator, each at a location relative to the validated value.

    The loader turns each into its own ``file:line field: message`` line; pydantic users see them
    joined in one message.
    """

    def __init__(self, problems: Sequence[tuple[Loc, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(_join(loc, msg) for loc, msg in self.problems))


def _join(loc: Loc, message: str) -> str:
    return f"{format_loc(loc)}: {message}" if loc else message


def format_loc(loc: Iterable[str | int]) -> str:
    """A field path as the error messages write it: ``objectives[1].direction``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _raise_if(problems: list[tuple[Loc, str]]) -> None:
    if problems:
        raise FieldProblems(problems)


def _elements() -> frozenset[str]:
    from discovery.chemistry.formula import ELEMENTS

    return frozenset(ELEMENTS)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _element_problems(symbols: Iterable[str], loc_of: Any) -> list[tuple[Loc, str]]:
    """Problems for symbols that are not elements; ``loc_of(i, symbol)`` gives each one's location."""
    known = _elements()
    return [
        (loc_of(i, s), f"unknown element {s!r}{_suggest(s, known)}")
        for i, s in enumerate(symbols)
        if s not in known
    ]


def _duplicates(values: Sequence[str]) -> list[int]:
    seen: set[str] = set()
    out = []
    for i, v in enumerate(values):
        if v in seen:
            out.append(i)
        seen.add(v)
    return out


def _got(value: object) -> str:
    """A short, YAML-flavoured rendering of a bad value for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _to_float(value: object) -> float:
    """A finite float from a number or a numeric string (YAML reads ``1e-3`` as a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number, got {_got(value)}")
    try:
        out = float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {_got(value)}") from None
    if not math.isfinite(out):
        raise ValueError(f"expected a finite number, got {_got(value)}")
    return out


def _pair(value: object) -> object:
    """``[low, high]`` as a tuple of two floats, with one clear message for any other shape."""
    if isinstance(value, list | tuple) and len(value) == 2:
        try:
            return (_to_float(value[0]), _to_float(value[1]))
        except ValueError:
            pass
    raise ValueError(f"expected a pair [low, high] of numbers, got {_got(value)}")


def _amount_or_range(value: object) -> object:
    if isinstance(value, list | tuple):
        try:
            return _pair(value)
        except ValueError:
            pass
    try:
        return _to_float(value)
    except ValueError:
        raise ValueError(
            f"expected a number or a pair [low, high] of numbers, got {_got(value)}"
        ) from None


def _auto_or_numbers(value: object) -> object:
    if value == "auto":
        return value
    if isinstance(value, list | tuple):
        out: list[float] = []
        problems: list[tuple[Loc, str]] = []
        for i, item in enumerate(value):
            try:
                out.append(_to_float(item))
            except ValueError as exc:
                problems.append(((i,), str(exc)))
        _raise_if(problems)
        return out
    raise ValueError(f"expected 'auto' or a list of numbers, got {_got(value)}")


Pair = Annotated[tuple[float, float], BeforeValidator(_pair)]


def template_sites(template: str) -> tuple[str, ...]:
    """The substitution-site labels of a framework template, in order of first appearance.

    A template is a formula in which ``A_x`` (a whitespace-separated token) stands for the working
    ion, and every capitalised word that is not an element symbol (``M``, ``X``, ``T``, ``Q``; not
    ``Mn`` or ``B``, which are elements) is a substitution site: ``"A_x M2 (PO4)3"`` has the site
    ``M``, ``"A_x M X O4"`` the sites ``M`` and ``X``.
    """
    known = _elements()
    rest = " ".join(token for token in template.split() if token != ION_SITE)
    labels: list[str] = []
    for word in _WORD.findall(rest):
        if word not in known and word not in labels:
            labels.append(word)
    return tuple(labels)


def _check_template(template: str) -> str:
    """Raise ``ValueError`` unless the template has one ``A_x`` token and parses as a formula."""
    from discovery.chemistry.formula import parse_formula
    from discovery.errors import FormulaError

    tokens = template.split()
    count = tokens.count(ION_SITE)
    if count != 1:
        raise ValueError(
            f"a template needs the working-ion site {ION_SITE!r} exactly once as its own word "
            f"(as in 'A_x M O2'), found it {count} times in {template!r}"
        )
    rest = " ".join(token for token in tokens if token != ION_SITE)
    if not rest:
        raise ValueError(f"template {template!r} has no framework after {ION_SITE!r}")
    # Each site label stands for one element: check the rest parses with a stand-in element.
    stand_in = rest
    for label in sorted(template_sites(template), key=len, reverse=True):
        stand_in = re.sub(rf"{label}(?![a-z])", "H", stand_in)
    try:
        parse_formula(stand_in)
    except FormulaError as exc:
        raise ValueError(f"template {template!r} is not a formula: {exc.reason}") from None
    return template


def _check_existing(path: Path, info: ValidationInfo, *, table: bool, what: str = "file") -> None:
    """Check that a path exists, relative to the ``base_dir`` context (skipped without one)."""
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get("base_dir")
    if base is None:
        return
    full = path if path.is_absolute() else Path(base) / path
    if not full.exists():
        raise ValueError(
            f"no such {what}: '{path}' (relative paths are read from the campaign file's folder)"
        )
    if table:
        if full.is_dir():
            raise ValueError(f"'{path}' is a folder; expected a CSV or parquet file")
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise ValueError(
                f"'{path}' is not a table: expected a file ending in {', '.join(TABLE_SUFFIXES)}"
            )


def _absolute(path: Path, base_dir: Path) -> Path:
    return Path(os.path.abspath(path if path.is_absolute() else base_dir / path))


# --------------------------------------------------------------------------------------------
# Ions


class IonSpec(BaseModel):
    """A working ion added to (or replacing one of) the default ion table."""

    model_config = _CONFIG

    symbol: str = Field(description="Element symbol of the ion, e.g. 'Sr'. Required.")
    valence: int = Field(gt=0, description="Charge z carried per inserted ion (e). Required, > 0.")
    molar_mass_g_mol: float = Field(
        gt=0, description="Molar mass of the element in g/mol. Required, > 0."
    )
    shannon_radius_angstrom: float = Field(
        gt=0,
        description="Shannon effective ionic radius in Å, six-fold coordination. Required, > 0.",
    )
    reduction_potential_v: float = Field(
        description="Standard reduction potential of M^z+/M vs SHE in V. Required."
    )
    electronegativity: float = Field(
        gt=0, description="Pauling electronegativity of the element (dimensionless). Required, > 0."
    )

    @field_validator("symbol")
    @classmethod
    def _known_element(cls, symbol: str) -> str:
        _raise_if(_element_problems([symbol], lambda i, s: ()))
        return symbol

    def to_ion(self) -> Ion:
        """The :class:`discovery.chemistry.Ion` this entry describes."""
        from discovery.chemistry.ions import Ion

        return Ion(
            self.symbol,
            self.valence,
            self.molar_mass_g_mol,
            self.shannon_radius_angstrom,
            self.reduction_potential_v,
            self.electronegativity,
        )


# --------------------------------------------------------------------------------------------
# Candidate spaces


class TableSpace(BaseModel):
    """A fixed pool: a table of candidate electrodes."""

    model_config = _CONFIG

    kind: Literal["table"] = Field(description="Selects this space: 'table'. Required.")
    path: Path = Field(
        description=(
            "CSV or parquet table of candidates with columns formula_charge, formula_discharge "
            "and working_ion; relative to the campaign file's folder. Required; must exist."
        )
    )
    drop_invalid: bool = Field(
        default=True,
        description="Skip rows with unparsable formulas or unknown ions instead of failing. Default: true.",
    )

    @field_validator("path")
    @classmethod
    def _exists(cls, path: Path, info: ValidationInfo) -> Path:
        _check_existing(path, info, table=True)
        return path


class SiteSpec(BaseModel):
    """The elements allowed on one substitution site of a framework template."""

    model_config = _CONFIG

    elements: list[str] = Field(
        min_length=1,
        description="Element symbols that may occupy the site, e.g. [Mn, Fe, Co, Ni]. Required, non-empty.",
    )
    max_elements: int = Field(
        default=2,
        ge=1,
        description="Most distinct elements mixed on the site at once (1 = no mixing). Default: 2.",
    )
    fraction_step: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description=(
            "Step of the mixing-fraction grid (fraction of the site), in (0, 1]; 1/step must be a "
            "whole number. Default: 0.25."
        ),
    )

    @field_validator("elements")
    @classmethod
    def _known_elements(cls, elements: list[str]) -> list[str]:
        problems = _element_problems(elements, lambda i, s: (i,))
        problems += [((i,), f"{elements[i]!r} is listed twice") for i in _duplicates(elements)]
        _raise_if(problems)
        return elements

    @field_validator("fraction_step")
    @classmethod
    def _divides_one(cls, step: float) -> float:
        if abs(1 / step - round(1 / step)) > 1e-9:
            raise ValueError(
                f"1/fraction_step must be a whole number (e.g. 0.25 or 0.5), got {step}"
            )
        return step


class FrameworkSpec(BaseModel):
    """A host framework written as a template with substitution sites."""

    model_config = _CONFIG

    template: str = Field(
        description=(
            "Formula of the discharged framework per formula unit, with 'A_x' for the working-ion "
            "site and capitalised labels that are not element symbols for substitution sites, e.g. "
            "'A_x M O2', 'A_x M2 (PO4)3'. Required."
        )
    )
    sites: dict[str, SiteSpec] = Field(
        description="One entry per substitution-site label of the template, e.g. {M: {...}}. Required."
    )
    x: list[float] = Field(
        min_length=1,
        description="Insertion amounts x (ions per formula unit) to enumerate, each > 0. Required, non-empty.",
    )
    name: str | None = Field(
        default=None,
        description="A short name for the framework, written into the pool's 'framework' column. Default: the template.",
    )

    @field_validator("template")
    @classmethod
    def _template(cls, template: str) -> str:
        return _check_template(template)

    @field_validator("x")
    @classmethod
    def _positive(cls, x: list[float]) -> list[float]:
        _raise_if([((i,), f"must be > 0, got {v}") for i, v in enumerate(x) if v <= 0])
        return x

    @model_validator(mode="after")
    def _sites_match(self) -> FrameworkSpec:
        labels = template_sites(self.template)
        problems: list[tuple[Loc, str]] = [
            (("sites",), f"site {label!r} of template {self.template!r} has no entry in sites")
            for label in labels
            if label not in self.sites
        ]
        problems += [
            (
                ("sites", label),
                f"the template {self.template!r} has no site {label!r}"
                f" (its sites: {', '.join(labels) or 'none'})",
            )
            for label in self.sites
            if label not in labels
        ]
        _raise_if(problems)
        return self


class GeneratedSpace(BaseModel):
    """A pool generated from framework templates x site elements x ions x insertion amounts."""

    model_config = _CONFIG

    kind: Literal["generate"] = Field(description="Selects this space: 'generate'. Required.")
    frameworks: list[FrameworkSpec] = Field(
        min_length=1, description="Host frameworks to enumerate. Required, non-empty."
    )
    max_candidates: int | None = Field(
        default=None,
        gt=0,
        description="Stop with an error when the pool would exceed this many candidates. Default: no limit.",
    )


class LinearConstraintSpec(BaseModel):
    """A linear constraint ``min <= sum(coefficient * site fraction) <= max`` on a continuous space."""

    model_config = _CONFIG

    coefficients: dict[str, float] = Field(
        min_length=1,
        description="Element symbol -> coefficient on its atomic fraction of the site. Required, non-empty.",
    )
    min: float | None = Field(
        default=None, description="Lower bound of the weighted sum. Default: none."
    )
    max: float | None = Field(
        default=None, description="Upper bound of the weighted sum. Default: none."
    )

    @model_validator(mode="after")
    def _some_bound(self) -> LinearConstraintSpec:
        _bounds_problem(self.min, self.max)
        return self


def _bounds_problem(low: float | None, high: float | None) -> None:
    if low is None and high is None:
        raise ValueError("give min, max or both")
    if low is not None and high is not None and low > high:
        raise FieldProblems([(("min",), f"min ({low}) is larger than max ({high})")])


class ContinuousSpaceSpec(BaseModel):
    """A continuous composition space: element fractions on one site of a template (a simplex)."""

    model_config = _CONFIG

    kind: Literal["continuous"] = Field(description="Selects this space: 'continuous'. Required.")
    template: str = Field(
        description="Framework template with exactly one substitution site, e.g. 'A_x M O2'. Required."
    )
    site: str = Field(
        description="Label of the substitution site in the template, e.g. 'M'. Required."
    )
    working_ion: str = Field(description="The inserted ion, e.g. 'Mg'. Required; a known ion.")
    elements: list[str] = Field(
        min_length=2,
        description="Elements whose atomic fractions on the site are optimized (they sum to 1). Required, at least 2.",
    )
    bounds: dict[str, Pair] = Field(
        default={},
        description="Element -> [low, high] bounds on its atomic fraction of the site, within [0, 1]. Default: [0, 1] for every element.",
    )
    max_wt_percent: dict[str, float] = Field(
        default={},
        description="Element -> largest mass percent (wt %) of the element in the discharged compound, in (0, 100]. Default: none.",
    )
    linear_constraints: list[LinearConstraintSpec] = Field(
        default=[],
        description="Further linear constraints on the site fractions. Default: none.",
    )
    x: Annotated[float | Pair, BeforeValidator(_amount_or_range)] = Field(
        description="Insertion amount x (ions per formula unit): a number, or [low, high] to optimize it too. Required.",
    )

    @field_validator("template")
    @classmethod
    def _template(cls, template: str) -> str:
        _check_template(template)
        sites = template_sites(template)
        if len(sites) != 1:
            raise ValueError(
                f"a continuous space needs a template with exactly one substitution site, "
                f"{template!r} has {len(sites)} ({', '.join(sites) or 'none'})"
            )
        return template

    @field_validator("elements")
    @classmethod
    def _known_elements(cls, elements: list[str]) -> list[str]:
        problems = _element_problems(elements, lambda i, s: (i,))
        problems += [((i,), f"{elements[i]!r} is listed twice") for i in _duplicates(elements)]
        _raise_if(problems)
        return elements

    @field_validator("bounds")
    @classmethod
    def _bounds_in_unit(
        cls, bounds: dict[str, tuple[float, float]]
    ) -> dict[str, tuple[float, float]]:
        _raise_if(
            [
                ((element,), f"expected 0 <= low <= high <= 1, got [{low}, {high}]")
                for element, (low, high) in bounds.items()
                if not 0.0 <= low <= high <= 1.0
            ]
        )
        return bounds

    @field_validator("max_wt_percent")
    @classmethod
    def _percent(cls, limits: dict[str, float]) -> dict[str, float]:
        _raise_if(
            [
                ((element,), f"expected a mass percent in (0, 100], got {value}")
                for element, value in limits.items()
                if not 0.0 < value <= 100.0
            ]
        )
        return limits

    @field_validator("x")
    @classmethod
    def _amount(cls, x: float | tuple[float, float]) -> float | tuple[float, float]:
        if isinstance(x, tuple):
            low, high = x
            if not 0.0 <= low <= high or high <= 0.0:
                raise ValueError(f"expected 0 <= low <= high and high > 0, got [{low}, {high}]")
        elif x <= 0:
            raise ValueError(f"must be > 0, got {x}")
        return x

    @model_validator(mode="after")
    def _consistent(self) -> ContinuousSpaceSpec:
        problems: list[tuple[Loc, str]] = []
        (label,) = template_sites(self.template)
        if self.site != label:
            problems.append(
                (
                    ("site",),
                    f"expected {label!r}, the substitution site of {self.template!r}, got {self.site!r}",
                )
            )
        in_space = set(self.elements)
        for field in ("bounds", "max_wt_percent"):
            for element in getattr(self, field):
                if element not in in_space:
                    problems.append(
                        ((field, element), f"{element!r} is not one of the space's elements")
                    )
        for i, constraint in enumerate(self.linear_constraints):
            for element in constraint.coefficients:
                if element not in in_space:
                    problems.append(
                        (
                            ("linear_constraints", i, "coefficients", element),
                            f"{element!r} is not one of the space's elements",
                        )
                    )
        low = sum(self.bounds.get(e, (0.0, 1.0))[0] for e in self.elements)
        high = sum(self.bounds.get(e, (0.0, 1.0))[1] for e in self.elements)
        if not problems and (low > 1.0 + 1e-9 or high < 1.0 - 1e-9):
            problems.append(
                (
                    ("bounds",),
                    f"no composition fits: the site fractions must sum to 1, but the lower bounds "
                    f"sum to {low:g} and the upper bounds to {high:g}",
                )
            )
        _raise_if(problems)
        return self


SpaceSpec = Annotated[
    TableSpace | GeneratedSpace | ContinuousSpaceSpec, Field(discriminator="kind")
]


# --------------------------------------------------------------------------------------------
# Objectives, models, acquisition, budget


class ObjectiveSpec(BaseModel):
    """One objective: an outcome to maximize or minimize."""

    model_config = _CONFIG

    name: str = Field(
        description=(
            "Outcome name: a surrogate target (e.g. 'average_voltage', V), 'capacity_grav' (mAh/g) "
            "or 'energy_grav' (Wh/kg). Required."
        )
    )
    direction: Literal["maximize", "minimize"] = Field(
        default="maximize", description="'maximize' or 'minimize'. Default: 'maximize'."
    )


class ConstraintSpec(BaseModel):
    """An outcome constraint ``min <= outcome <= max`` (e.g. a voltage window of 1.5-4.5 V)."""

    model_config = _CONFIG

    name: str = Field(
        description="Outcome name, in the outcome's units (see objectives). Required."
    )
    min: float | None = Field(
        default=None, description="Lower bound, in the outcome's units. Default: none."
    )
    max: float | None = Field(
        default=None, description="Upper bound, in the outcome's units. Default: none."
    )

    @model_validator(mode="after")
    def _some_bound(self) -> ConstraintSpec:
        _bounds_problem(self.min, self.max)
        return self


class SurrogateSpec(BaseModel):
    """The deep-ensemble surrogate and its training settings."""

    model_config = _CONFIG

    targets: list[str] = Field(
        default=["average_voltage"],
        min_length=1,
        description=(
            "Learned targets: columns of the labeled data, e.g. 'average_voltage' (V), "
            "'max_delta_volume' (fraction), 'stability_discharge' (eV/atom). Default: [average_voltage]."
        ),
    )
    members: int = Field(
        default=32,
        ge=1,
        le=MAX_MEMBERS,
        description="Ensemble members (at most 1024). Default: 32.",
    )
    hidden: list[int] = Field(
        default=[96, 96, 96],
        min_length=1,
        max_length=MAX_LAYERS,
        description=(
            "Widths of the hidden layers (units; at most 64 layers of at most 16384 units). "
            "Default: [96, 96, 96]."
        ),
    )
    max_epochs: int = Field(
        default=80, ge=1, description="Upper bound on training epochs. Default: 80."
    )
    patience: int = Field(
        default=20,
        ge=1,
        description="Epochs without validation improvement before a member stops. Default: 20.",
    )
    batch_size: int = Field(
        default=512, ge=1, description="Training rows per optimizer step. Default: 512."
    )
    learning_rate: float = Field(
        default=8e-3,
        gt=0,
        description="Initial AdamW learning rate (cosine-annealed). Default: 0.008.",
    )
    weight_decay: float = Field(
        default=1e-4, ge=0, description="AdamW decoupled weight decay. Default: 0.0001."
    )
    input_encoding: Literal["standard", "mixed", "piecewise_linear"] = Field(
        default="mixed",
        description=(
            "How the network sees its inputs: 'mixed' (half the members on the standardized "
            "features, half on a piecewise-linear encoding of them through a shared 256-unit "
            "first layer; the most accurate on the shared data, docs/surrogate.md; one member is "
            "a standard one), 'standard' (every member on the standardized features) or "
            "'piecewise_linear' (every member on the encoding, the first hidden layer shared). "
            "Default: 'mixed'."
        ),
    )
    bin_edges: Literal["target", "quantile"] = Field(
        default="target",
        description=(
            "Where the piecewise-linear encoding's bins of a feature begin and end: 'target' (the "
            "splits of a small regression tree from the feature to the training targets; the "
            "more accurate on the shared data, docs/surrogate.md) or 'quantile' (the quantiles "
            "of the training values, the rule of earlier versions). Default: 'target'."
        ),
    )
    fidelities: list[str] | None = Field(
        default=None,
        min_length=1,
        description=(
            "Fidelity levels the surrogate takes as input (e.g. [mp-gga, chgnet, experiment]); "
            "an answer at another fidelity is rejected. With two or more levels each row's fidelity "
            "is a model input. Default: the initial data's fidelity and the oracle's."
        ),
    )
    target_fidelity: str | None = Field(
        default=None,
        description=(
            "The fidelity proposals are scored at (one of the fidelities). Default: the oracle's."
        ),
    )
    warm_start: bool = Field(
        default=True,
        description=(
            "Retrain each round by fine-tuning the previous round's ensemble on every labeled row "
            "(a quarter of the learning rate, at most 20 epochs, validating on the previous "
            "validation groups and 10 % of the new ones) "
            "instead of training from scratch; as accurate on the shared data at a quarter of "
            "the epochs (docs/surrogate.md). A model of other features or shape is retrained "
            "from scratch. Default: true."
        ),
    )

    @model_validator(mode="after")
    def _target_listed(self) -> SurrogateSpec:
        problems: list[tuple[Loc, str]] = []
        if self.fidelities is not None:
            problems += [
                (("fidelities", i), f"{self.fidelities[i]!r} is listed twice")
                for i in _duplicates(self.fidelities)
            ]
            if self.target_fidelity is not None and self.target_fidelity not in self.fidelities:
                problems.append(
                    (
                        ("target_fidelity",),
                        f"{self.target_fidelity!r} is not one of fidelities "
                        f"({', '.join(self.fidelities)})",
                    )
                )
        _raise_if(problems)
        return self

    @field_validator("targets")
    @classmethod
    def _learnable(cls, targets: list[str]) -> list[str]:
        problems: list[tuple[Loc, str]] = [
            ((i,), f"{t!r} is computed exactly from the formulas, not learned; remove it")
            for i, t in enumerate(targets)
            if t in EXACT_OUTCOMES
        ]
        problems += [((i,), f"{targets[i]!r} is listed twice") for i in _duplicates(targets)]
        _raise_if(problems)
        return targets

    @field_validator("hidden")
    @classmethod
    def _widths(cls, hidden: list[int]) -> list[int]:
        _raise_if(
            [
                ((i,), f"must be >= 1 and <= {MAX_WIDTH}, got {w}")
                for i, w in enumerate(hidden)
                if not 1 <= w <= MAX_WIDTH
            ]
        )
        return hidden

    def to_config(self, seed: int = 0) -> EnsembleConfig:
        """The :class:`discovery.surrogate.EnsembleConfig` of these settings."""
        from discovery.surrogate.ensemble import EnsembleConfig

        return EnsembleConfig(
            members=self.members,
            hidden=tuple(self.hidden),
            input_encoding=self.input_encoding,
            bin_edges=self.bin_edges,
            shared_first_layer=self.input_encoding == "piecewise_linear",
            max_epochs=self.max_epochs,
            patience=self.patience,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            seed=seed,
        )


class AcquisitionSpec(BaseModel):
    """How a batch is chosen."""

    model_config = _CONFIG

    strategy: Literal["qlognehvi", "qnparego", "greedy", "random"] = Field(
        default="qlognehvi",
        description=(
            "'qlognehvi' (expected hypervolume improvement), 'qnparego' (random scalarizations), "
            "'greedy' (posterior mean) or 'random'. Default: 'qlognehvi'."
        ),
    )
    mc_samples: int = Field(
        default=128,
        ge=1,
        le=MAX_MC_SAMPLES,
        description=(
            "Quasi-Monte-Carlo posterior samples per acquisition value (at most 8192). Default: 128."
        ),
    )
    shortlist: int = Field(
        default=256,
        ge=1,
        description="Pool candidates kept by the cheap marginal criterion for the exact batch acquisition. Default: 256.",
    )
    num_restarts: int = Field(
        default=8,
        ge=1,
        le=MAX_RESTARTS,
        description="Continuous spaces: optimizer restarts of optimize_acqf (at most 1000). Default: 8.",
    )
    raw_samples: int = Field(
        default=256,
        ge=1,
        le=MAX_RAW_SAMPLES,
        description=(
            "Continuous spaces: random points that seed the restarts (at most 100000). Default: 256."
        ),
    )


class BudgetSpec(BaseModel):
    """When the campaign stops: after a number of rounds and/or oracle calls, whichever comes first."""

    model_config = _CONFIG

    rounds: int | None = Field(
        default=None, gt=0, description="Rounds of proposals. Default: no limit."
    )
    oracle_calls: int | None = Field(
        default=None,
        gt=0,
        description="Candidates submitted to the oracle in all. Default: no limit.",
    )
    initial_random: int = Field(
        default=0,
        ge=0,
        description="Random candidates asked in round 0, before any model-based proposal. Default: 0.",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetSpec:
        if self.rounds is None and self.oracle_calls is None:
            raise ValueError("give rounds, oracle_calls or both")
        return self


class InitialDataSpec(BaseModel):
    """Labeled electrodes the surrogate is trained on before the first round."""

    model_config = _CONFIG

    path: Path = Field(
        description=(
            "CSV or parquet table of labeled electrodes (Materials Project columns); relative to "
            "the campaign file's folder. Required; must exist."
        )
    )
    ions: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Keep only rows of these working ions. Default: all rows.",
    )
    drop_invalid: bool = Field(
        default=True, description="Skip invalid rows instead of failing. Default: true."
    )
    fidelity: str = Field(
        default="mp-gga",
        min_length=1,
        description=(
            "Fidelity of the table's values: 'mp-gga' (Materials Project GGA/GGA+U), 'chgnet', "
            "'experiment', ... Default: 'mp-gga'."
        ),
    )

    @field_validator("path")
    @classmethod
    def _exists(cls, path: Path, info: ValidationInfo) -> Path:
        _check_existing(path, info, table=True)
        return path


def _oracle_names() -> tuple[str, ...]:
    from discovery.oracles import oracle_names

    return tuple(oracle_names())


class OracleSpec(BaseModel):
    """Who answers the proposed candidates."""

    model_config = _CONFIG

    name: str = Field(
        description="Oracle name: 'replay', 'model', or one registered by a plugin. Required."
    )
    options: dict[str, Any] = Field(
        default={},
        description=(
            "Options passed to the oracle; a 'path' option is relative to the campaign file's "
            "folder and must exist. Default: none."
        ),
    )
    attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description=(
            "Tries per oracle call (submit, poll, collect) that raises or passes timeout_s; after "
            "the last, the candidates concerned are recorded as failed. May change on resume. "
            "Default: 3."
        ),
    )
    retry_backoff_s: float = Field(
        default=2.0,
        ge=0,
        le=86400,
        description=(
            "Seconds before the first retry of a failed oracle call, doubling for each further "
            "one. May change on resume. Default: 2."
        ),
    )
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Seconds one oracle call may take; a slower call is abandoned (its thread is left to "
            "finish on its own) and retried. May change on resume. Default: null (no limit)."
        ),
    )

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        known = _oracle_names()
        if name not in known:
            raise ValueError(
                f"unknown oracle {name!r}{_suggest(name, known)}; known oracles: {', '.join(known)}"
            )
        return name

    @field_validator("options")
    @classmethod
    def _path_exists(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "path" in options:
            path = options["path"]
            if not isinstance(path, str) or not path:
                raise FieldProblems([(("path",), f"expected a path, got {_got(path)}")])
            try:
                _check_existing(Path(path), info, table=False, what="file or folder")
            except ValueError as exc:
                raise FieldProblems([(("path",), str(exc))]) from None
        return options


class ComputeSpec(BaseModel):
    """Where the candidate pool is scored (training runs in the campaign process); see
    docs/scaling.md."""

    model_config = _CONFIG

    backend: Literal["local", "ray"] = Field(
        default="local",
        description="'local' (this process) or 'ray' (scoring actors on a Ray cluster). Default: 'local'.",
    )
    address: str | None = Field(
        default=None,
        description="Ray cluster to join: 'auto' or 'host:port' of `ray start --head`; ray only. Default: RAY_ADDRESS, else a new local Ray.",
    )
    workers: int = Field(default=1, ge=1, description="Ray scoring actors. Default: 1.")
    gpus_per_worker: float = Field(
        default=0, ge=0, description="GPUs per worker (may be fractional). Default: 0."
    )
    cpus_per_worker: float = Field(default=1, gt=0, description="CPU cores per worker. Default: 1.")
    chunk_rows: int = Field(
        default=1024,
        ge=1,
        description="Candidate rows per ensemble evaluation and per Ray call (bounds peak memory). Default: 1024.",
    )
    min_free_mb: float = Field(
        default=100,
        ge=0,
        description="Free space (MB) the work directory's file system must have when a run starts; less stops the run before any oracle call. Default: 100.",
    )

    @model_validator(mode="after")
    def _address_for_ray(self) -> ComputeSpec:
        if self.address is not None and self.backend != "ray":
            raise FieldProblems([(("address",), "an address is only used with backend 'ray'")])
        return self


# --------------------------------------------------------------------------------------------
# The campaign


def _default_objectives() -> list[ObjectiveSpec]:
    return [ObjectiveSpec(name="average_voltage"), ObjectiveSpec(name="capacity_grav")]


class CampaignSpec(BaseModel):
    """A discovery campaign: what to search, what to optimize, who answers, and when to stop."""

    model_config = _CONFIG

    name: str = Field(
        description="Campaign name: letters, digits, '_', '.' and '-'. Names the default work directory. Required."
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=MAX_SEED,
        description=(
            "Seed of every random choice (training, proposals): 0 to 4294967295. Default: 0."
        ),
    )
    ions: list[str] = Field(
        min_length=1,
        description="Working ions in scope, e.g. [Na, K]: candidates of other ions are not proposed. Required, non-empty.",
    )
    extra_ions: list[IonSpec] = Field(
        default=[],
        description="Ions added to the default ion table (Li, Na, K, Rb, Cs, Mg, Ca, Zn, Al, Y). Default: none.",
    )
    space: SpaceSpec = Field(
        description="The candidate space: kind 'table', 'generate' or 'continuous'. Required."
    )
    objectives: list[ObjectiveSpec] = Field(
        default_factory=_default_objectives,
        description="Objectives, optimized jointly. Default: maximize average_voltage (V) and capacity_grav (mAh/g).",
    )
    constraints: list[ConstraintSpec] = Field(
        default=[], description="Outcome constraints. Default: none."
    )
    reference_point: Annotated[Literal["auto"] | list[float], BeforeValidator(_auto_or_numbers)] = (
        Field(
            default="auto",
            description=(
                "Hypervolume reference point, one value per objective in the objective's units, or "
                "'auto' to derive it from the measured data. Default: 'auto'."
            ),
        )
    )
    surrogate: SurrogateSpec = Field(
        default_factory=SurrogateSpec, description="Surrogate model settings. Default: see fields."
    )
    acquisition: AcquisitionSpec = Field(
        default_factory=AcquisitionSpec, description="Acquisition settings. Default: see fields."
    )
    batch_size: int = Field(
        default=8, gt=0, description="Candidates proposed per round. Default: 8."
    )
    budget: BudgetSpec = Field(description="When to stop. Required (rounds and/or oracle_calls).")
    initial_data: InitialDataSpec | None = Field(
        default=None, description="Labeled data to train on before round 1. Default: none."
    )
    oracle: OracleSpec = Field(description="Who answers the proposals. Required.")
    plugins: list[str] = Field(
        default=[],
        description=(
            "Hook plugins active in this campaign: names of installed entry points of the group "
            "'discovery.hooks' (`discover plugins` lists them), called in this order after the "
            "oracle's own hooks. Default: none."
        ),
    )
    compute: ComputeSpec = Field(
        default_factory=ComputeSpec, description="Where the work runs. Default: this process."
    )
    workdir: Path | None = Field(
        default=None,
        description=(
            "Work directory (ledger, checkpoints, exports), relative to the campaign file's "
            "folder. Default: runs/<name> next to the campaign file."
        ),
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.fullmatch(name) or set(name) == {"."}:
            raise ValueError(
                f"expected a non-empty name of letters, digits, '_', '.' and '-', got {name!r}"
            )
        return name

    @field_validator("plugins")
    @classmethod
    def _known_plugins(cls, plugins: list[str]) -> list[str]:
        from discovery.plugins import HOOKS_GROUP, hook_plugin_names

        known = hook_plugin_names()
        listed = ", ".join(known) or f"none (hook plugins are entry points of {HOOKS_GROUP!r})"
        problems: list[tuple[Loc, str]] = [
            (
                (i,),
                f"unknown plugin {name!r}{_suggest(name, known)}; installed hook plugins: {listed}",
            )
            for i, name in enumerate(plugins)
            if name not in known
        ]
        problems += [((i,), f"{plugins[i]!r} is listed twice") for i in _duplicates(plugins)]
        _raise_if(problems)
        return plugins

    def ion_table(self) -> IonTable:
        """The default ion table extended with :attr:`extra_ions`."""
        from discovery.chemistry.ions import DEFAULT_IONS

        return DEFAULT_IONS.extend(ion.to_ion() for ion in self.extra_ions)

    def outcome_names(self) -> tuple[str, ...]:
        """Every outcome objectives and constraints may name: the learned targets, then the
        exact capacity (mAh/g) and the derived energy (Wh/kg)."""
        return (*self.surrogate.targets, *EXACT_OUTCOMES)

    def resolved(self, base_dir: str | os.PathLike[str]) -> CampaignSpec:
        """A copy whose paths are absolute: relative ones are joined to ``base_dir`` (the
        campaign file's folder), and a missing ``workdir`` becomes ``base_dir/runs/<name>``.

        Resolves ``space.path`` (tables), ``initial_data.path``, ``oracle.options["path"]`` (kept
        a string) and ``workdir``. Resolving twice changes nothing.
        """
        base = Path(os.path.abspath(base_dir))
        update: dict[str, Any] = {
            "workdir": _absolute(self.workdir or Path("runs") / self.name, base)
        }
        if isinstance(self.space, TableSpace):
            update["space"] = self.space.model_copy(
                update={"path": _absolute(self.space.path, base)}
            )
        if self.initial_data is not None:
            update["initial_data"] = self.initial_data.model_copy(
                update={"path": _absolute(self.initial_data.path, base)}
            )
        if isinstance(self.oracle.options.get("path"), str):
            options = {
                **self.oracle.options,
                "path": str(_absolute(Path(self.oracle.options["path"]), base)),
            }
            update["oracle"] = self.oracle.model_copy(update={"options": options})
        return self.model_copy(update=update)

    @model_validator(mode="after")
    def _cross_checks(self) -> CampaignSpec:
        problems: list[tuple[Loc, str]] = []

        symbols = [ion.symbol for ion in self.extra_ions]
        problems += [
            (("extra_ions", i, "symbol"), f"ion {symbols[i]!r} is listed twice")
            for i in _duplicates(symbols)
        ]
        known_ions = [*self.ion_table()]

        def check_ion(loc: Loc, ion: str) -> None:
            if ion not in known_ions:
                problems.append(
                    (
                        loc,
                        f"unknown working ion {ion!r}{_suggest(ion, known_ions)}; known ions: "
                        f"{', '.join(known_ions)} (add it under extra_ions to use it)",
                    )
                )

        for i, ion in enumerate(self.ions):
            check_ion(("ions", i), ion)
        problems += [
            (("ions", i), f"{self.ions[i]!r} is listed twice") for i in _duplicates(self.ions)
        ]
        if isinstance(self.space, ContinuousSpaceSpec):
            ion = self.space.working_ion
            check_ion(("space", "working_ion"), ion)
            if ion in known_ions and ion not in self.ions:
                problems.append(
                    (
                        ("space", "working_ion"),
                        f"working ion {ion!r} is not in ions ({', '.join(self.ions)})",
                    )
                )
        if self.initial_data is not None and self.initial_data.ions is not None:
            for i, ion in enumerate(self.initial_data.ions):
                check_ion(("initial_data", "ions", i), ion)

        outcomes = self.outcome_names()
        if not self.objectives:
            problems.append((("objectives",), "give at least one objective"))
        for group, items in (("objectives", self.objectives), ("constraints", self.constraints)):
            names = [item.name for item in items]
            for i, name in enumerate(names):
                if name not in outcomes:
                    problems.append(
                        (
                            (group, i, "name"),
                            f"{name!r} is not an outcome of this campaign{_suggest(name, outcomes)}; "
                            f"outcomes: {', '.join(outcomes)} (learned outcomes are set by surrogate.targets)",
                        )
                    )
            problems += [
                ((group, i, "name"), f"{names[i]!r} is listed twice") for i in _duplicates(names)
            ]

        if self.reference_point != "auto" and len(self.reference_point) != len(self.objectives):
            problems.append(
                (
                    ("reference_point",),
                    f"expected one value per objective ({len(self.objectives)}), "
                    f"got {len(self.reference_point)}",
                )
            )
        if (
            isinstance(self.space, TableSpace | GeneratedSpace)
            and self.acquisition.strategy != "random"
            and self.acquisition.shortlist < self.batch_size
        ):
            problems.append(
                (
                    ("acquisition", "shortlist"),
                    f"the shortlist ({self.acquisition.shortlist}) must hold at least batch_size "
                    f"({self.batch_size}) candidates",
                )
            )
        _raise_if(problems)
        return self
