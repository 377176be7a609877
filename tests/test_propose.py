"""Proposals: strategies on a pool and a continuous space, constraints, reference point, models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from discovery.export import hypervolume
from discovery.propose import (
    EXACT_OUTCOMES,
    Objective,
    OutcomeConstraint,
    Proposal,
    ProposalError,
    augmented_model,
    propose_continuous,
    propose_pool,
    table_model,
)
from discovery.surrogate import DeepEnsemble, EnsembleConfig

NAMES = [f"f{i}" for i in range(4)]
VOLTAGE, CAPACITY = "average_voltage", "capacity_grav"
BOTH = [Objective(VOLTAGE), Objective(CAPACITY)]
STRATEGIES = ["qlognehvi", "qnparego", "greedy", "random"]
FAST = {"shortlist": 32, "mc_samples": 16}


def true_voltage(x: np.ndarray) -> np.ndarray:
    """Toy ground truth in V: a smooth function of the first two features."""
    return 3.0 + np.sin(1.2 * x[:, 0]) + 0.5 * x[:, 1]


def true_capacity(x: np.ndarray) -> np.ndarray:
    """Toy exact capacity in mAh/g, conflicting with voltage through x0."""
    return 150.0 + 40.0 * x[:, 2] - 30.0 * x[:, 0]


@pytest.fixture(scope="module")
def ensemble() -> DeepEnsemble:
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, size=(500, 4)).astype(np.float32)
    y = true_voltage(x) + rng.normal(0, 0.05, len(x))
    config = EnsembleConfig(
        members=4, hidden=(32, 32), max_epochs=80, patience=15, batch_size=64, seed=0
    )
    return DeepEnsemble(config).fit(
        x, y[:, None], feature_names=NAMES, target_names=[VOLTAGE], groups=np.arange(len(x))
    )


@pytest.fixture(scope="module")
def pool() -> dict[str, np.ndarray]:
    """1,500 candidates, 40 of them measured (true voltage), 4 pending."""
    rng = np.random.default_rng(2)
    x = rng.uniform(-2, 2, size=(1500, 4)).astype(np.float32)
    measured = rng.choice(len(x), 40, replace=False)
    rest = np.setdiff1d(np.arange(len(x)), measured)
    return {
        "x": x,
        "exact": true_capacity(x)[:, None],
        "measured": measured,
        "pending": rest[:4],
        "available": rest[4:],
    }


def _run(ensemble: DeepEnsemble, pool: dict[str, np.ndarray], **kwargs: object) -> Proposal:
    m = pool["measured"]
    args: dict = {
        "strategy": "qlognehvi",
        "ensemble": ensemble,
        "pool_features": pool["x"],
        "pool_exact": pool["exact"],
        "available": pool["available"],
        "pending": pool["pending"],
        "baseline_features": pool["x"][m],
        "baseline_exact": pool["exact"][m],
        "baseline_values": pd.DataFrame({VOLTAGE: true_voltage(pool["x"][m])}),
        "objectives": BOTH,
        "batch_size": 6,
        "seed": 0,
        **FAST,
    }
    args.update(kwargs)
    return propose_pool(**args)


# --------------------------------------------------------------------------------- pool
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_returns_unique_available_rows(
    strategy: str, ensemble: DeepEnsemble, pool: dict[str, np.ndarray]
) -> None:
    # pending rows are listed as available too: they must still never come back
    available = np.concatenate([pool["available"], pool["pending"]])
    proposal = _run(ensemble, pool, strategy=strategy, available=available)
    assert proposal.indices is not None and proposal.X is None
    chosen = proposal.indices
    assert len(chosen) == 6 and len(set(chosen.tolist())) == 6
    assert set(chosen) <= set(pool["available"])
    assert not set(chosen) & set(pool["pending"])
    assert proposal.acquisition_value.shape == (6,)
    assert proposal.strategy == strategy and len(proposal.ref_point) == 2
    expected = [f"{o}_{s}" for o in (VOLTAGE, CAPACITY, "energy_grav") for s in ("mean", "std")]
    assert sorted(proposal.predicted.columns) == sorted(expected)
    predicted = proposal.predicted
    np.testing.assert_allclose(predicted["capacity_grav_mean"], pool["exact"][chosen, 0])
    assert (predicted["capacity_grav_std"] == 0).all()
    np.testing.assert_allclose(
        predicted["energy_grav_std"], predicted["average_voltage_std"] * pool["exact"][chosen, 0]
    )
    if strategy in ("qlognehvi", "qnparego"):
        assert np.isfinite(proposal.acquisition_value).all()
        assert proposal.shortlist is not None and set(chosen) <= set(proposal.shortlist)


def test_small_pools_give_what_they_have(
    ensemble: DeepEnsemble, pool: dict[str, np.ndarray]
) -> None:
    few = pool["available"][:3]
    proposal = _run(ensemble, pool, available=few, batch_size=8)
    assert sorted(proposal.indices.tolist()) == sorted(few.tolist())
    with pytest.raises(ProposalError, match="no candidate left"):
        _run(ensemble, pool, available=pool["pending"])


def test_reference_point_rule(ensemble: DeepEnsemble, pool: dict[str, np.ndarray]) -> None:
    v = true_voltage(pool["x"][pool["measured"]])
    c = pool["exact"][pool["measured"], 0]
    derived = _run(ensemble, pool, strategy="random").ref_point
    np.testing.assert_allclose(derived, [v.min() - 0.1 * np.ptp(v), c.min() - 0.1 * np.ptp(c)])
    mixed = [Objective(VOLTAGE), Objective(CAPACITY, "minimize")]
    derived = _run(ensemble, pool, strategy="random", objectives=mixed).ref_point
    np.testing.assert_allclose(derived, [v.min() - 0.1 * np.ptp(v), c.max() + 0.1 * np.ptp(c)])
    # explicit points stay in objective units, whatever the direction
    explicit = _run(ensemble, pool, objectives=mixed, ref_point=[1.0, 400.0])
    assert explicit.ref_point == (1.0, 400.0)
    with pytest.raises(ProposalError, match="ref_point: 1 value"):
        _run(ensemble, pool, ref_point=[1.0])


def test_a_voltage_window_excludes_candidates_far_outside(
    ensemble: DeepEnsemble, pool: dict[str, np.ndarray]
) -> None:
    window = [OutcomeConstraint(VOLTAGE, lower=2.6, upper=3.4)]
    for strategy in ("qlognehvi", "qnparego", "greedy"):
        predicted = _run(ensemble, pool, strategy=strategy, constraints=window).predicted
        mean, std = predicted["average_voltage_mean"], predicted["average_voltage_std"]
        assert ((mean - 3 * std <= 3.4) & (mean + 3 * std >= 2.6)).all(), strategy
        if strategy == "greedy":  # feasibility by the mean
            assert mean.between(2.6, 3.4).all()
    # without the window, the same seed proposes high voltages
    free = _run(ensemble, pool).predicted["average_voltage_mean"]
    assert free.max() > 3.6


def test_qlognehvi_beats_random_on_a_toy_front(
    ensemble: DeepEnsemble, pool: dict[str, np.ndarray]
) -> None:
    """Measured hypervolume after one batch (true values), same seeds and data."""
    x, m = pool["x"], pool["measured"]

    def values(rows: np.ndarray) -> np.ndarray:
        return np.stack([true_voltage(x[rows]), pool["exact"][rows, 0]], axis=1)

    ref = _run(ensemble, pool, strategy="random").ref_point
    before = hypervolume(values(m), ref, [True, True])
    gains = {}
    for strategy in ("qlognehvi", "random"):
        gains[strategy] = []
        for seed in (0, 1):
            chosen = _run(ensemble, pool, strategy=strategy, seed=seed, batch_size=4).indices
            after = hypervolume(values(np.concatenate([m, chosen])), ref, [True, True])
            gains[strategy].append(after - before)
    assert min(gains["qlognehvi"]) > 0
    assert np.mean(gains["qlognehvi"]) > 2 * np.mean(gains["random"]), gains


def test_proposals_are_deterministic_under_a_seed(
    ensemble: DeepEnsemble, pool: dict[str, np.ndarray]
) -> None:
    for strategy in ("qlognehvi", "qnparego"):
        a = _run(ensemble, pool, strategy=strategy, batch_size=3)
        b = _run(ensemble, pool, strategy=strategy, batch_size=3)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.acquisition_value, b.acquisition_value)
    r0 = _run(ensemble, pool, strategy="random", seed=0).indices
    assert np.array_equal(r0, _run(ensemble, pool, strategy="random", seed=0).indices)
    assert not np.array_equal(r0, _run(ensemble, pool, strategy="random", seed=1).indices)


def test_one_objective_and_no_measurements(
    ensemble: DeepEnsemble, pool: dict[str, np.ndarray]
) -> None:
    energy = [Objective("energy_grav")]
    for strategy in ("qlognehvi", "qnparego", "greedy"):
        chosen = _run(ensemble, pool, strategy=strategy, objectives=energy).indices
        assert len(set(chosen.tolist())) == 6
    # greedy on one objective: the best posterior means, best first
    greedy = _run(ensemble, pool, strategy="greedy", objectives=energy)
    assert np.all(np.diff(greedy.acquisition_value) <= 0)
    # nothing measured yet: improvement over the reference point (from the pool's predictions)
    empty = {
        "baseline_features": np.zeros((0, 4), np.float32),
        "baseline_exact": np.zeros((0, 1)),
        "baseline_values": pd.DataFrame({VOLTAGE: []}),
    }
    for strategy in ("qlognehvi", "qnparego"):
        proposal = _run(ensemble, pool, strategy=strategy, **empty)
        assert len(set(proposal.indices.tolist())) == 6
        assert np.isfinite(proposal.ref_point).all()


def test_user_errors_name_the_field(ensemble: DeepEnsemble, pool: dict[str, np.ndarray]) -> None:
    with pytest.raises(ProposalError, match=r"objectives\[1\]: unknown outcome 'voltage'"):
        _run(ensemble, pool, objectives=[Objective(VOLTAGE), Objective("voltage")])
    with pytest.raises(ProposalError, match=r"constraints\[0\]: unknown outcome"):
        _run(ensemble, pool, constraints=[OutcomeConstraint("stability", upper=0.1)])
    with pytest.raises(ProposalError, match="strategy: expected one of"):
        _run(ensemble, pool, strategy="ucb")
    with pytest.raises(ProposalError, match="direction must be"):
        Objective(VOLTAGE, "maximise")  # type: ignore[arg-type]
    with pytest.raises(ProposalError, match=r"lower bound 4\.0 exceeds upper 3\.0"):
        OutcomeConstraint(VOLTAGE, 4.0, 3.0)
    with pytest.raises(ProposalError, match="pool_features has shape"):
        _run(ensemble, pool, pool_features=pool["x"][:, :3])


# ------------------------------------------------------------------------- marginal math
def test_closed_form_ehvi_matches_monte_carlo() -> None:
    from discovery.propose.marginal import expected_hvi, nondominated_cells

    front = np.array([[3.0, 1.0], [2.0, 2.0], [1.0, 3.0]])
    ref = np.array([0.0, 0.0])
    lower, upper = nondominated_cells(front, ref)
    mean = np.array([[2.5, 2.5], [1.0, 1.0], [4.0, 0.5]])
    std = np.array([[0.5, 0.0], [0.3, 0.3], [1.0, 0.2]])
    exact = expected_hvi(mean, std, lower, upper)
    rng = np.random.default_rng(0)
    base = hypervolume(front, ref, [True, True])
    for i in range(len(mean)):
        draws = mean[i] + std[i] * rng.standard_normal((1500, 2))
        gains = [hypervolume(np.vstack([front, d]), ref, [True, True]) - base for d in draws]
        standard_error = np.std(gains) / np.sqrt(len(gains))
        assert abs(exact[i] - np.mean(gains)) < 4 * standard_error + 1e-4, i
    # a deterministic point: the plain hypervolume improvement
    point = expected_hvi(np.array([[2.5, 2.5]]), np.zeros((1, 2)), lower, upper)
    assert point[0] == pytest.approx(hypervolume(np.vstack([front, [2.5, 2.5]]), ref, [1, 1]) - 6)


def test_fast_pareto_masks_match_botorch() -> None:
    from botorch.utils.multi_objective.pareto import is_non_dominated

    from discovery.propose.models import pareto_masks

    g = torch.Generator().manual_seed(0)
    for trial in range(60):
        n = int(torch.randint(1, 30, (1,), generator=g))
        ties = torch.randint(0, 5, (4, n, 2), generator=g).double()  # many ties and duplicates
        smooth = torch.randn(4, n, 2, generator=g, dtype=torch.float64)
        for values in (ties, smooth):
            expected = is_non_dominated(values, deduplicate=False)
            assert torch.equal(pareto_masks(values), expected), trial


# ------------------------------------------------------------------------ BoTorch models
def test_table_model_equals_the_augmented_model(
    ensemble: DeepEnsemble, pool: dict[str, np.ndarray]
) -> None:
    rows = np.arange(12)
    z = torch.as_tensor(np.hstack([pool["x"][rows], pool["exact"][rows]]), dtype=torch.float64)
    full = augmented_model(ensemble).posterior(z.reshape(3, 4, 5))
    table = table_model(ensemble, pool["x"][rows], pool["exact"][rows])
    cached = table.posterior(torch.arange(12, dtype=torch.float64).reshape(3, 4, 1))
    torch.testing.assert_close(cached.mean, full.mean)
    assert full.mean.shape == (3, 4, 1 + len(EXACT_OUTCOMES))
    learned_full, learned_cached = full.posteriors[0], cached.posteriors[0]
    torch.testing.assert_close(
        learned_cached.distribution.covariance_matrix, learned_full.distribution.covariance_matrix
    )


def test_botorch_acquisitions_run_on_the_augmented_model(
    ensemble: DeepEnsemble, pool: dict[str, np.ndarray]
) -> None:
    from discovery.propose.models import (
        OutcomeObjective,
        build_acquisition,
        make_sampler,
        outcome_constraints,
    )
    from discovery.propose.spec import OutcomeSet

    model = augmented_model(ensemble)
    z = torch.as_tensor(np.hstack([pool["x"], pool["exact"]]), dtype=torch.float64)
    samples = make_sampler(16, 0)(model.posterior(z[:10].reshape(2, 5, 5)))
    assert samples.shape == (16, 2, 5, 2)
    torch.testing.assert_close(samples[..., 1], z[:10, 4].reshape(2, 5).expand(16, 2, 5))
    outcomes = OutcomeSet(ensemble.target_names)
    objective = OutcomeObjective(outcomes, [Objective("energy_grav"), Objective(CAPACITY)])
    torch.testing.assert_close(objective(samples)[..., 0], samples[..., 0] * samples[..., 1])
    common = {
        "model": model,
        "objective": objective,
        "constraints": outcome_constraints(outcomes, [OutcomeConstraint(VOLTAGE, 1.5, 4.5)]),
        "X_baseline": z[:20],
        "X_pending": z[20:22],
        "ref_point": torch.tensor([100.0, 50.0], dtype=torch.float64),
        "mc_samples": 16,
        "seed": 0,
    }
    candidates = z[100:112].reshape(6, 2, 5)  # 6 batches of q = 2
    for strategy, weights in (("qlognehvi", None), ("qnparego", torch.tensor([0.3, 0.7]))):
        acq = build_acquisition(strategy, weights=weights, **common)  # type: ignore[arg-type]
        values = acq(candidates)
        assert values.shape == (6,) and torch.isfinite(values).all()


# ---------------------------------------------------------------------- continuous mode
class FractionSpace:
    """A tiny stand-in for ``discovery.space.ContinuousSpace``: fractions of three end members
    on the simplex, with the third at most 0.3; features and capacity are linear in them."""

    names = ("a", "b", "c")
    dim = 3
    feature_names = tuple(NAMES)
    corners = torch.tensor(
        [[1.5, -1.0, 0.5, 0.0], [-1.5, 1.0, -0.5, 1.0], [0.0, 1.5, 1.0, -1.0]],
        dtype=torch.float64,
    )

    def __init__(self) -> None:
        self.bounds = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
        self.equality_constraints = [
            (torch.tensor([0, 1, 2]), torch.ones(3, dtype=torch.float64), 1.0)
        ]
        self.inequality_constraints = [
            (torch.tensor([2]), torch.tensor([-1.0], dtype=torch.float64), -0.3)
        ]

    def features(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self.corners

    def exact(self, X: torch.Tensor) -> torch.Tensor:
        f = self.features(X)
        return 150.0 + 40.0 * f[..., 2:3] - 30.0 * f[..., 0:1]

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        points = rng.dirichlet(np.ones(3), size=8 * n + 16)
        return points[points[:, 2] <= 0.3][:n]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_continuous_proposals_satisfy_the_space(strategy: str, ensemble: DeepEnsemble) -> None:
    space = FractionSpace()
    measured = space.sample(12, seed=5)
    with torch.no_grad():
        features = space.features(torch.as_tensor(measured)).numpy().astype(np.float32)
        exact = space.exact(torch.as_tensor(measured)).numpy()
    proposal = propose_continuous(
        strategy=strategy,
        ensemble=ensemble,
        space=space,
        pending_X=space.sample(2, seed=9),
        baseline_features=features,
        baseline_exact=exact,
        baseline_values=pd.DataFrame({VOLTAGE: true_voltage(features)}),
        objectives=BOTH,
        constraints=[OutcomeConstraint(VOLTAGE, lower=1.5)],
        batch_size=2,
        mc_samples=16,
        num_restarts=2,
        raw_samples=16,
        seed=0,
    )
    X = proposal.X
    assert X is not None and X.shape == (2, 3) and proposal.indices is None
    assert (X >= -1e-6).all() and (X <= 1 + 1e-6).all()
    np.testing.assert_allclose(X.sum(axis=1), 1.0, atol=1e-6)
    assert (X[:, 2] <= 0.3 + 1e-6).all()
    assert proposal.acquisition_value.shape == (2,)
    np.testing.assert_allclose(
        proposal.predicted["capacity_grav_mean"],
        space.exact(torch.as_tensor(X)).numpy()[:, 0],
        rtol=1e-6,
    )
    if strategy == "random":
        np.testing.assert_array_equal(X, space.sample(2, seed=0))


# ------------------------------------------------------------------- electrode features
def test_electrode_pool_with_two_learned_targets() -> None:
    """Real electrode features and capacities; a second learned target as a constraint."""
    from conftest import synthetic_electrodes

    from discovery.features import electrode_features
    from discovery.surrogate import train_electrode_model

    frame = synthetic_electrodes(seed=0, n_frameworks=60)
    config = EnsembleConfig(members=3, hidden=(16,), max_epochs=15, batch_size=32, seed=0)
    model = train_electrode_model(frame, targets=(VOLTAGE, "max_delta_volume"), config=config)
    features = electrode_features(frame)
    exact = features.pairs.capacity_grav_mah_g.reshape(-1, 1)
    measured = np.arange(0, len(frame), 4)
    rest = np.setdiff1d(np.arange(len(frame)), measured)
    proposal = propose_pool(
        ensemble=model,
        pool_features=features.values,
        pool_exact=exact,
        available=rest[2:],
        pending=rest[:2],
        baseline_features=features.values[measured],
        baseline_exact=exact[measured],
        baseline_values=frame.iloc[measured][[VOLTAGE, "max_delta_volume"]],
        objectives=[Objective("energy_grav"), Objective(CAPACITY)],
        constraints=[OutcomeConstraint("max_delta_volume", upper=0.05)],
        batch_size=4,
        shortlist=32,
        mc_samples=32,
    )
    assert len(set(proposal.indices.tolist())) == 4
    assert set(proposal.indices) <= set(rest[2:])
    assert {"max_delta_volume_mean", "energy_grav_mean"} <= set(proposal.predicted.columns)


def test_qlognehvi_never_waits_on_a_stale_torch_extension_lock(tmp_path) -> None:
    """A campaign killed while BoTorch compiled its fused kernel left a lock file behind, and every
    later run hung on it; proposals must not touch the torch extension build at all."""
    import subprocess
    import sys

    lock_dir = tmp_path / "ext" / "logei_fused_ext"
    lock_dir.mkdir(parents=True)
    (lock_dir / "lock").write_text("")  # what a killed build leaves behind
    code = """
import torch
from botorch.models.deterministic import GenericDeterministicModel
import discovery.propose.models  # noqa: F401  (what every proposal imports first)
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
model = GenericDeterministicModel(lambda X: torch.cat([X, 1 - X], dim=-1), num_outputs=2)
X = torch.rand(4, 1, dtype=torch.float64)
acq = qLogNoisyExpectedHypervolumeImprovement(
    model=model, ref_point=[0.0, 0.0], X_baseline=X, prune_baseline=False
)
print("built")
"""
    env = {**__import__("os").environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "built" in out.stdout
