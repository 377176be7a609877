"""Candidate spaces: ids, templates, charge balance, generated and loaded pools, continuous spaces
(features against electrode_features, capacity, weight-percent constraints, sampling)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from discovery.chemistry import (
    capacity_grav_mah_g,
    insertion_pairs,
    molar_mass_g_mol,
    parse_formula,
)
from discovery.errors import DataValidationError, DiscoveryError, FormulaError, UnknownIonError
from discovery.features import electrode_feature_names, electrode_features
from discovery.space import (
    ContinuousSpace,
    SpaceError,
    TemplateError,
    candidate_id,
    candidate_ids,
    canonical_formula,
    charge_range,
    generate_pool,
    load_pool,
    parse_template,
)

# --------------------------------------------------------------------------- ids


def test_canonical_formula_orders_elements_and_writes_every_amount() -> None:
    assert canonical_formula("LiCoO2") == "Li1O2Co1"
    assert canonical_formula("CoO2Li") == "Li1O2Co1"
    assert canonical_formula("Li3V2(PO4)3") == canonical_formula("Li3V2P3O12") == "Li3O12P3V2"
    assert canonical_formula("Li0.3333333333Fe0.5") == "Li0.333333Fe0.5"
    assert canonical_formula("FeFe") == "Fe2"


def test_candidate_id_is_invariant_to_how_formulas_are_written() -> None:
    reference = candidate_id("Li", "CoO2", "LiCoO2")
    assert reference == candidate_id("Li", "O2Co", "Li1Co1O2")
    assert reference == candidate_id("Li", "Co(O)2", "CoO2Li")
    key = "Li|O2Co1|Li1O2Co1"
    assert reference == "c-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    assert len({reference, candidate_id("Na", "CoO2", "NaCoO2")}) == 2
    assert reference != candidate_id("Li", "CoO2", "Li0.5CoO2")
    assert reference != candidate_id("Na", "CoO2", "LiCoO2")


def test_candidate_ids_match_the_scalar_function_row_by_row() -> None:
    frame = pd.DataFrame(
        {
            "working_ion": ["Li", "Li", "Na", "Mg", "Li", "K"],
            "formula_charge": ["CoO2", "O2Co", "V2(PO4)3", "Mo6S8", "FeFe(PO4)2", "[Fe(CN)6]"],
            "formula_discharge": [
                "LiCoO2",
                "Li1Co1O2",
                "Na3V2(PO4)3",
                "Mg2Mo6S8",
                "LiFe2(PO4)2",
                "K2Fe(CN)6",
            ],
        }
    )
    ids = candidate_ids(frame)
    assert ids.dtype == object and ids[0] == ids[1]
    for i, row in enumerate(frame.itertuples(index=False)):
        assert ids[i] == candidate_id(row.working_ion, row.formula_charge, row.formula_discharge)
    assert len(candidate_ids(frame.iloc[:0])) == 0


def test_candidate_ids_name_the_bad_row() -> None:
    frame = pd.DataFrame(
        {
            "working_ion": ["Li", "Li"],
            "formula_charge": ["CoO2", "CoO2"],
            "formula_discharge": ["LiCoO2", "LiXqO2"],
        }
    )
    with pytest.raises(FormulaError, match=r"row 1 \(formula_discharge\)"):
        candidate_ids(frame)
    with pytest.raises(DiscoveryError, match=r"row 1 \(working_ion\)"):
        candidate_ids(frame.assign(working_ion=["Li", None], formula_discharge="LiCoO2"))


# --------------------------------------------------------------------------- templates


def test_parse_template_resolves_sites_then_formula_groups() -> None:
    template = parse_template("A_x M2 (PO4)3", ["M"])
    kinds = [(t.kind, t.label, t.multiplicity) for t in template.tokens]
    assert kinds == [("ion", None, 1.0), ("site", "M", 2.0), ("fixed", None, 1.0)]
    assert template.fixed_composition == {"P": 3.0, "O": 12.0}
    spinel = parse_template("A_x M1 M2 O4", ["M1", "M2"])
    assert spinel.site_labels == ("M1", "M2")
    assert spinel.site_multiplicity("M2") == 1.0
    split = parse_template("A_x M P O4", ["M"])
    assert split.fixed_composition == {"P": 1.0, "O": 4.0}
    # A label that is also an element symbol is a site when it is declared as one.
    assert parse_template("A_x Fe O2", ["Fe"]).tokens[1].kind == "site"
    assert parse_template("A_x M O2").site_labels == ("M",)  # labels inferred


@pytest.mark.parametrize(
    ("text", "sites", "message"),
    [
        ("A_x M Qq3", ["M"], "token 'Qq3'"),
        ("A_x M (PO4", ["M"], r"token '\(PO4'"),
        ("M O2", ["M"], "exactly one working-ion token"),
        ("A_x A_x M O2", ["M"], "exactly one working-ion token"),
        ("A_x O2", ["M"], "no substitution site"),
        ("A_x M0 O2", ["M"], "token 'M0'"),
        ("  ", ["M"], "empty template"),
    ],
)
def test_template_errors_name_the_token(text: str, sites: list[str], message: str) -> None:
    with pytest.raises(TemplateError, match=message) as info:
        parse_template(text, sites)
    assert isinstance(info.value, DiscoveryError)


# --------------------------------------------------------------------------- generation


@dataclass
class Site:
    elements: list[str]
    max_elements: int = 1
    fraction_step: float = 1.0


@dataclass
class Framework:
    template: str
    sites: dict[str, Site]
    x: list[float]
    name: str | None = None


def _pool(template: str, elements: list[str], ions: list[str], x: list[float]) -> pd.DataFrame:
    return generate_pool([Framework(template, {"M": Site(elements)}, x)], ions)


def _kept(pool: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(pool.working_ion, pool.formula_discharge))


def test_charge_balance_keeps_layered_oxides_and_rejects_impossible_insertions() -> None:
    kept = _kept(_pool("A_x M O2", ["Co", "Ti", "Al"], ["Li", "Al"], [0.5, 1.0]))
    assert ("Li", "LiCoO2") in kept  # Co +4 -> +3
    assert ("Al", "Al0.5CoO2") in kept  # Co +4 -> +2.5
    assert ("Al", "AlCoO2") not in kept  # Co would need +1 (lowest +2)
    assert ("Li", "LiTiO2") in kept  # Ti +4 -> +3
    assert ("Al", "AlTiO2") not in kept  # Ti would need +1 (lowest +2)
    assert not any("Al" in f and ion == "Li" for ion, f in kept)  # AlO2 needs Al +4


def test_charge_balance_of_polyanion_frameworks() -> None:
    # P is +5 in PO4: V2(PO4)3 needs V +4.5 (V goes to +5), Fe2(PO4)3 would need Fe +4.5.
    kept = _kept(_pool("A_x M2 (PO4)3", ["V", "Fe"], ["Na"], [1, 2, 3]))
    assert kept == {("Na", "NaV2(PO4)3"), ("Na", "Na2V2(PO4)3"), ("Na", "Na3V2(PO4)3")}
    assert not any("Fe" in f for _, f in kept)
    # S is +6 in SO4: Fe2(SO4)3 is Fe +3 and takes 2 Li (Fe +2), not 3 (Fe +1.5).
    kept = _kept(_pool("A_x M2 (SO4)3", ["Fe"], ["Li"], [2, 3]))
    assert kept == {("Li", "Li2Fe2(SO4)3")}
    # S is -2 in a sulfide: TiS2 takes one Li (Ti +4 -> +3).
    assert ("Li", "LiTiS2") in _kept(_pool("A_x M S2", ["Ti"], ["Li"], [1]))
    # Cyanide (C +2, N -3): MnFe(CN)6 holds 6 e- of metal charge, 4 at least, so 2 Na, not 3.
    kept = _kept(_pool("A_x M Fe(CN)6", ["Mn"], ["Na"], [2, 3]))
    assert kept == {("Na", "Na2MnFe(CN)6")}


def test_vectorized_filter_agrees_with_charge_range() -> None:
    @dataclass
    class Unfiltered(Framework):
        charge_balance: bool = False

    site = Site(["Mn", "Ni", "Al", "Mg", "Ti"], 3, 0.25)
    args = ("A_x M O2", {"M": site}, [0.5, 1.0])
    ions = ["Li", "Mg", "Al"]
    everything = generate_pool([Unfiltered(*args)], ions)
    kept = set(generate_pool([Framework(*args)], ions).candidate_id)
    template = parse_template("A_x M O2", ["M"])
    valence = {"Li": 1, "Mg": 2, "Al": 3}
    expected = set()
    for row in everything.itertuples(index=False):
        mixing = {el: a for el, a in parse_formula(row.formula_charge).items() if el != "O"}
        low, high = charge_range(template, {"M": mixing})
        if high >= 0 and low <= -row.x * valence[row.working_ion] + 1e-9:
            expected.add(row.candidate_id)
    assert kept == expected
    assert 0 < len(kept) < len(everything)


def test_charge_range_sums_state_ranges() -> None:
    template = parse_template("A_x M O2", ["M"])
    low, high = charge_range(template, {"M": {"Co": 0.5, "Ni": 0.5}})
    assert (low, high) == pytest.approx((-2.0, 0.0))  # O2 = -4; Co/Ni in +2..+4
    low, high = charge_range(parse_template("A_x M2 (PO4)3", ["M"]), {"M": {"V": 1.0}})
    assert (low, high) == pytest.approx((15 - 24 + 4, 15 - 24 + 10))


def test_generate_pool_columns_grid_and_validity() -> None:
    frameworks = [
        Framework("A_x M O2", {"M": Site(["Mn", "Ni", "Co"], 2, 0.25)}, [0.5, 1.0], "layered"),
        Framework("A_x M S2", {"M": Site(["Ti", "Mo"], 1, 1.0)}, [1.0]),
    ]
    pool = generate_pool(frameworks, ["Li", "Mg"])
    assert list(pool.columns) == [
        "candidate_id",
        "working_ion",
        "formula_charge",
        "formula_discharge",
        "framework",
        "x",
    ]
    assert set(pool.framework) == {"layered", "A_x M S2"}
    # 3 single elements + 3 pairs x 3 fractions (0.25/0.75, 0.5/0.5, 0.75/0.25) = 12 mixings.
    assert pool[pool.framework == "layered"].formula_charge.nunique() == 12
    assert "Li0.5Mn0.25Ni0.75O2" in set(pool.formula_discharge)
    assert pool.candidate_id.is_unique
    np.testing.assert_array_equal(pool.candidate_id.to_numpy(), candidate_ids(pool))
    pairs = insertion_pairs(pool.formula_charge, pool.formula_discharge, pool.working_ion)
    np.testing.assert_allclose(pairs.x_inserted, pool.x, rtol=1e-12)
    features = electrode_features(pool)
    assert features.values.shape == (len(pool), len(electrode_feature_names()))
    assert np.isfinite(features.values).all()


def test_generate_pool_deduplicates_and_merges_repeated_elements() -> None:
    # Symmetric sites: (M1=Fe, M2=Mn) and (M1=Mn, M2=Fe) are one candidate.
    sites = {"M1": Site(["Mn", "Fe"]), "M2": Site(["Mn", "Fe"])}
    pool = generate_pool([Framework("A_x M1 M2 O4", sites, [1.0])], ["Li"])
    assert len(pool) == 3  # Mn2O4, MnFeO4, Fe2O4
    assert set(pool.formula_charge) == {"Mn2O4", "MnFeO4", "Fe2O4"}
    # The ion also on the site: written merged, so every formula has each element once.
    pool = _pool("A_x M O2", ["Mg", "Mn"], ["Mg"], [0.5])
    assert set(pool.formula_discharge) == {"Mg0.5MnO2"}  # MgO2 cannot be charge balanced
    mixed = generate_pool([Framework("A_x M O2", {"M": Site(["Mg", "V"], 2, 0.25)}, [0.5])], ["Mg"])
    # Mg0.25V0.75O2 (V +4.67) takes Mg0.5 (V +3.33): Mg0.5 + Mg0.25 on the site, merged.
    assert "Mg0.75V0.75O2" in set(mixed.formula_discharge)
    for formula in mixed.formula_discharge:
        assert len(parse_formula(formula)) == sum(c.isupper() for c in formula)


def test_generate_pool_errors() -> None:
    fw = Framework("A_x M O2", {"M": Site(["Co"])}, [1.0])
    with pytest.raises(UnknownIonError):
        generate_pool([fw], ["Xx"])
    with pytest.raises(TemplateError, match=r"frameworks\[0\].template: .*token 'Q'"):
        generate_pool([Framework("A_x M Q", {"M": Site(["Co"])}, [1.0])], ["Li"])
    with pytest.raises(TemplateError, match=r"frameworks\[0\].sites.M.fraction_step"):
        generate_pool([Framework("A_x M O2", {"M": Site(["Co"], 2, 0.3)}, [1.0])], ["Li"])
    with pytest.raises(TemplateError, match=r"frameworks\[0\].sites.M.elements: 'Xy'"):
        generate_pool([Framework("A_x M O2", {"M": Site(["Xy"])}, [1.0])], ["Li"])
    with pytest.raises(TemplateError, match=r"site\(s\) 'N' not used"):
        generate_pool([Framework("A_x M O2", {"M": Site(["Co"]), "N": Site(["Ni"])}, [1])], ["Li"])
    with pytest.raises(TemplateError, match=r"frameworks\[0\].x"):
        generate_pool([Framework("A_x M O2", {"M": Site(["Co"])}, [0.0])], ["Li"])
    with pytest.raises(TemplateError, match="max_candidates"):
        generate_pool([fw, fw], ["Li", "Na"], max_candidates=1)
    with pytest.raises(
        TemplateError, match=r"sites.M.elements: no oxidation state known for element 'Os'"
    ):
        generate_pool([Framework("A_x M O2", {"M": Site(["Os"])}, [1.0])], ["Li"])
    os_ok = generate_pool(
        [Framework("A_x M O2", {"M": Site(["Os"])}, [1.0])], ["Li"], oxidation_states={"Os": (2, 4)}
    )
    assert list(os_ok.formula_discharge) == ["LiOsO2"]


def test_charge_balance_can_be_switched_off_per_framework() -> None:
    @dataclass
    class Alloy(Framework):
        charge_balance: bool = False

    pool = generate_pool([Alloy("A_x M", {"M": Site(["Al", "Zn"])}, [1.0, 2.0])], ["Li"])
    assert set(pool.formula_discharge) == {"LiAl", "Li2Al", "LiZn", "Li2Zn"}


# --------------------------------------------------------------------------- loaded pools

POOL_CSV = """working_ion,formula_charge,formula_discharge,source
Li,CoO2,LiCoO2,a
Li,O2Co,Li1Co1O2,b
Na,FePO4,NaFePO4,c
Y,Xx,YXx,d
Mg,Mo6S8,Mg2Mo6S8,e
"""


def test_load_pool_filters_ions_adds_ids_and_deduplicates(tmp_path: Path) -> None:
    path = tmp_path / "pool.csv"
    path.write_text(POOL_CSV)
    pool = load_pool(path, ["Li", "Na", "Mg"])
    assert list(pool.columns) == [
        "candidate_id",
        "working_ion",
        "formula_charge",
        "formula_discharge",
        "source",
    ]
    assert list(pool.source) == ["a", "c", "e"]  # the rewritten LiCoO2 is a duplicate
    assert pool.attrs["duplicates"] == 1
    assert pool.candidate_id[0] == candidate_id("Li", "CoO2", "LiCoO2")
    parquet = tmp_path / "pool.parquet"
    pool.to_parquet(parquet)
    assert load_pool(parquet, ["Na"]).source.tolist() == ["c"]


def test_load_pool_names_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "pool.csv"
    path.write_text(POOL_CSV + "Li,CoO2,LiNiO2,f\nLi,Co(O2,LiCoO2,g\n")
    with pytest.raises(DataValidationError) as info:
        load_pool(path, ["Li", "Na"])
    message = str(info.value)
    assert "pool.csv:7 formula_discharge" in message  # frameworks do not match
    assert "pool.csv:8 formula_charge" in message
    assert "pool.csv:5" not in message  # the Y row is not among the ions asked for
    with pytest.raises(UnknownIonError):
        load_pool(path, ["Xx"])
    pool = load_pool(path, ["Li", "Na"], drop_invalid=True)
    assert list(pool.source) == ["a", "c"]
    assert "dropped 2 invalid of 5 rows" in pool.attrs["validation"]


# --------------------------------------------------------------------------- continuous


@dataclass
class Constraint:
    coefficients: dict[str, float]
    min: float | None = None
    max: float | None = None


@dataclass
class Spec:
    template: str = "A_x M O2"
    site: str = "M"
    working_ion: str = "Li"
    elements: list[str] = field(default_factory=lambda: ["Ni", "Mn", "Co", "Al"])
    bounds: dict[str, tuple[float, float]] = field(default_factory=lambda: {"Ni": (0.3, 0.9)})
    max_wt_percent: dict[str, float] = field(default_factory=lambda: {"Co": 10.0})
    linear_constraints: list[Constraint] = field(
        default_factory=lambda: [Constraint({"Mn": 1.0, "Co": 1.0}, max=0.5)]
    )
    x: Any = (0.2, 1.0)
    wt_percent_basis: str = "discharge"


def _on_grid(space: ContinuousSpace, X: np.ndarray, zero: int | None = None) -> np.ndarray:
    """Points with amounts exactly representable at 4 decimals (optionally one fraction 0)."""
    X = np.round(X, 4)
    n_frac = len(space.elements)
    if zero is not None:
        X[::2, zero] = 0.0
    X[:, 0] = np.round(1.0 - X[:, 1:n_frac].sum(axis=1), 4)
    return X


def _compare(space: ContinuousSpace, X: np.ndarray) -> None:
    import torch

    reference = electrode_features(space.to_frame(X), space.ion_table).values.astype(np.float64)
    ours = space.features(torch.tensor(X)).numpy()
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)


def test_continuous_space_layout_and_constraints() -> None:
    space = ContinuousSpace(Spec())
    assert space.names == ("Ni", "Mn", "Co", "Al", "x")
    assert space.dim == 5
    assert tuple(space.bounds.shape) == (2, 5)
    assert space.bounds[0, 0].item() == 0.3 and space.bounds[1, 4].item() == 1.0
    ((index, coefficients, rhs),) = space.equality_constraints
    assert index.tolist() == [0, 1, 2, 3] and coefficients.tolist() == [1.0] * 4 and rhs == 1.0
    assert len(space.inequality_constraints) == 2  # Mn + Co <= 0.5, Co <= 10 wt %
    assert space.feature_names == electrode_feature_names()
    X = space.sample(64, seed=3)
    assert X.shape == (64, 5) and space.is_feasible(X).all()
    np.testing.assert_array_equal(X, space.sample(64, seed=3))


def test_continuous_features_equal_electrode_features() -> None:
    import torch

    space = ContinuousSpace(Spec())
    X = space.sample(40, seed=0)
    _compare(space, X)  # amounts rounded as to_frame writes them
    _compare(space, _on_grid(space, X, zero=3))  # every other point without Al
    smooth = space.features(torch.tensor(X), rounded=False).numpy()
    np.testing.assert_allclose(
        smooth, space.features(torch.tensor(X)).numpy(), rtol=1e-3, atol=1e-2
    )
    frame = space.to_frame(_on_grid(space, X, zero=3))
    assert "Al" not in frame.formula_discharge[0] and "Al" in frame.formula_discharge[1]
    fixed = ContinuousSpace(Spec(x=0.75, max_wt_percent={}, linear_constraints=[]))
    assert fixed.names == ("Ni", "Mn", "Co", "Al")
    _compare(fixed, _on_grid(fixed, fixed.sample(20, seed=1), zero=2))


def test_continuous_features_with_the_ion_on_the_site() -> None:
    # An Mg alloy (Mg-Ga-Ca-In, each addition <= 3 wt %) cycling Mg: the ion is also a host atom.
    spec = Spec(
        template="A_x M",
        working_ion="Mg",
        elements=["Mg", "Ga", "Ca", "In"],
        bounds={"Mg": (0.9, 0.995)},
        max_wt_percent={"Ga": 3.0, "Ca": 3.0, "In": 3.0},
        linear_constraints=[],
        x=(0.05, 0.5),
        wt_percent_basis="charge",
    )
    space = ContinuousSpace(spec)
    X = space.sample(30, seed=2)
    frame = space.to_frame(X)
    for formula in frame.formula_charge:
        amounts = parse_formula(formula)
        total = molar_mass_g_mol(amounts)
        for el in ("Ga", "Ca", "In"):
            assert molar_mass_g_mol({el: amounts.get(el, 0.0)}) / total <= 0.03 + 3e-4
    assert all(f.count("Mg") == 1 for f in frame.formula_discharge)  # merged
    _compare(space, _on_grid(space, X, zero=3))
    with pytest.raises(SpaceError, match="no atom besides the working ion"):
        ContinuousSpace(
            Spec(
                template="A_x M",
                working_ion="Mg",
                elements=["Mg", "Ga"],
                bounds={},
                max_wt_percent={},
                linear_constraints=[],
            )
        )


def test_continuous_gradients_and_capacity() -> None:
    import torch

    space = ContinuousSpace(Spec())
    X = torch.tensor(space.sample(8, seed=4), requires_grad=True)
    features = space.features(X)
    names = space.feature_names
    mean = [i for i, n in enumerate(names) if "MagpieData mean" in n]
    features[:, mean].sum().backward()
    assert X.grad is not None
    assert torch.isfinite(X.grad).all() and (X.grad.abs().sum(dim=1) > 0).all()
    # Straight through the rounding: the gradient is that of the exact amounts.
    Y = X.detach().clone().requires_grad_(True)
    space.features(Y, rounded=False)[:, mean].sum().backward()
    assert Y.grad is not None
    torch.testing.assert_close(X.grad, Y.grad, rtol=1e-2, atol=1e-6)
    batch = torch.tensor(space.sample(6, seed=5)).reshape(2, 3, 5)
    assert tuple(space.features(batch).shape) == (2, 3, len(names))
    capacity = space.exact(batch)
    assert tuple(capacity.shape) == (2, 3, 1)
    points = batch.reshape(6, 5).numpy()
    frame = space.to_frame(points)
    exact = space.exact(torch.tensor(points)).reshape(-1).numpy()
    for value, row in zip(exact, frame.itertuples(index=False)):
        expected = capacity_grav_mah_g(row.formula_charge, row.formula_discharge, "Li")
        assert value == pytest.approx(expected, rel=1e-12)


def test_wt_percent_constraint_is_exact_mass_fraction() -> None:
    space = ContinuousSpace(Spec(max_wt_percent={"Co": 10.0, "O": 40.0}))
    rng = np.random.default_rng(0)
    V = np.column_stack([rng.dirichlet(np.ones(4), 200), rng.uniform(0.2, 1.0, 200)])
    amounts = space.amounts(V)  # discharged formula (the default basis)
    masses = np.array([molar_mass_g_mol({el: 1.0}) for el in space.support])
    total = amounts @ masses
    for el, percent in (("Co", 10.0), ("O", 40.0)):
        coef, rhs = space.wt_percent_constraint(el, percent)
        share = amounts[:, space.support.index(el)] * masses[space.support.index(el)] / total
        # coef·v - rhs = M(v)·(p/100 - w(v)): the linear form is the mass-fraction cap exactly.
        np.testing.assert_allclose(V @ coef - rhs, total * (percent / 100 - share), atol=1e-9)
    X = space.sample(100, seed=0)
    for formula in space.to_frame(X).formula_discharge:
        composition = parse_formula(formula)
        share = molar_mass_g_mol({"Co": composition.get("Co", 0.0)}) / molar_mass_g_mol(composition)
        assert share <= 0.10 + 3e-4


def test_continuous_space_works_with_optimize_acqf() -> None:
    import torch
    from botorch.acquisition import AcquisitionFunction
    from botorch.optim import optimize_acqf

    space = ContinuousSpace(Spec())

    class Capacity(AcquisitionFunction):
        def forward(self, X: torch.Tensor) -> torch.Tensor:
            return space.exact(X).sum(dim=(-2, -1))

    candidate, _ = optimize_acqf(
        Capacity(model=None),  # type: ignore[arg-type]
        bounds=space.bounds,
        q=1,
        num_restarts=2,
        raw_samples=16,
        equality_constraints=space.equality_constraints,
        inequality_constraints=space.inequality_constraints,
        options={"maxiter": 30},
    )
    assert space.is_feasible(candidate.detach().numpy(), tol=1e-6).all()
    # Light elements and many ions maximize capacity: x at its upper bound.
    assert candidate[0, -1].item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"linear_constraints": [Constraint({"Fe": 1.0}, max=0.2)]}, r"coefficients.Fe"),
        ({"linear_constraints": [Constraint({"Ni": 1.0})]}, r"linear_constraints\[0\]"),
        ({"bounds": {"Ni": (0.5, 1.2)}}, r"bounds.Ni"),
        ({"bounds": {"Fe": (0.0, 0.5)}}, r"bounds.Fe"),
        ({"x": (0.0, 1.0)}, r"^x:"),
        ({"max_wt_percent": {"Co": 0.0}, "bounds": {"Co": (0.2, 1.0)}}, "no feasible composition"),
        ({"max_wt_percent": {"Fe": 5.0}}, r"max_wt_percent.Fe"),
        ({"elements": ["Ni"]}, "at least 2 elements"),
        ({"template": "A_x M Q2 O2"}, "token 'Q2'"),
    ],
)
def test_continuous_space_errors_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        ContinuousSpace(Spec(**change))


def test_continuous_rounding_drops_tiny_fractions() -> None:
    space = ContinuousSpace(Spec(max_wt_percent={}, linear_constraints=[]))
    frame = space.to_frame(np.array([[0.69996, 0.3, 0.00004, 0.0, 0.123456]]))
    assert frame.formula_discharge[0] == "Li0.1235Ni0.7Mn0.3O2"
    assert frame.formula_charge[0] == "Ni0.7Mn0.3O2"
    assert math.isclose(frame.x[0], 0.1235)
