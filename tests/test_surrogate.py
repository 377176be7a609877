"""The deep ensemble: determinism, bootstrap diversity, calibration, persistence, BoTorch adapter."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from discovery.errors import FeatureMismatchError, ModelFileError
from discovery.surrogate import DeepEnsemble, EnsembleConfig, EnsembleModel

NAMES = [f"f{i}" for i in range(4)]
SMALL = EnsembleConfig(
    members=6, hidden=(64, 64), max_epochs=200, patience=20, batch_size=32, learning_rate=3e-3
)


def _data(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y0 = sin(2 x0) + x1 with noise growing with |x2|; y1 = x0 * x3 (half its labels missing)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 4)).astype(np.float32)
    noise = 0.05 + 0.3 * np.abs(x[:, 2])
    y0 = np.sin(2 * x[:, 0]) + x[:, 1] + rng.normal(0, 1, n) * noise
    y1 = x[:, 0] * x[:, 3] + rng.normal(0, 0.05, n)
    y1[rng.random(n) < 0.5] = np.nan
    groups = np.arange(n) // 3
    return x, np.stack([y0, y1], axis=1).astype(np.float32), groups


@pytest.fixture(scope="module")
def trained() -> tuple[DeepEnsemble, np.ndarray, np.ndarray]:
    x, y, groups = _data()
    model = DeepEnsemble(SMALL).fit(
        x, y, feature_names=NAMES, target_names=["v", "w"], groups=groups, metadata={"k": 1}
    )
    x_test, y_test, _ = _data(n=2000, seed=1)
    return model, x_test, y_test


def test_training_is_deterministic_under_a_seed() -> None:
    x, y, groups = _data(n=200)
    config = EnsembleConfig(members=3, hidden=(16,), max_epochs=5, batch_size=32, seed=3)
    fit = lambda c: DeepEnsemble(c).fit(  # noqa: E731
        x, y, feature_names=NAMES, target_names=["v", "w"], groups=groups
    )
    a, b = fit(config), fit(config)
    np.testing.assert_array_equal(a.predict(x).mean, b.predict(x).mean)
    other = fit(EnsembleConfig(members=3, hidden=(16,), max_epochs=5, batch_size=32, seed=4))
    assert not np.allclose(a.predict(x).mean, other.predict(x).mean)


def test_members_differ_and_learn(trained: tuple[DeepEnsemble, np.ndarray, np.ndarray]) -> None:
    model, x_test, y_test = trained
    means, _ = model.member_moments(torch.from_numpy(x_test[:50]))
    assert means.shape == (6, 50, 2)
    assert float(means.std(0).mean()) > 1e-3  # own initialization and bootstrap per member
    pred = model.predict(x_test)
    mae = np.nanmean(np.abs(pred.mean - y_test), axis=0)
    spread = np.nanstd(y_test, axis=0)
    assert (mae < 0.5 * spread).all(), (mae, spread)


@pytest.mark.parametrize(("encoding", "ratio"), [("mixed", 1.4), ("standard", 2.0)])
def test_uncertainty_is_heteroscedastic_and_calibrated(
    trained: tuple[DeepEnsemble, np.ndarray, np.ndarray], encoding: str, ratio: float
) -> None:
    """The noise's std grows 4.6-fold from |x2| < 0.5 to |x2| > 1.5. On this smooth function the
    mixed ensemble (the default) stops after 72 epochs, when its encoded members start to
    overfit, and its variance heads have learned less of that growth than the standard
    ensemble's after 153 epochs: 1.6-fold against 2.6-fold."""
    model, x_test, y_test = trained
    if encoding != model.config.input_encoding:
        x, y, groups = _data()
        model = DeepEnsemble(replace(SMALL, input_encoding=encoding)).fit(
            x, y, feature_names=NAMES, target_names=["v", "w"], groups=groups
        )
    pred = model.predict(x_test)
    noisy = np.abs(x_test[:, 2]) > 1.5
    quiet = np.abs(x_test[:, 2]) < 0.5
    assert pred.std[noisy, 0].mean() > ratio * pred.std[quiet, 0].mean()
    inside = np.abs(pred.mean[:, 0] - y_test[:, 0]) <= 1.96 * pred.std[:, 0]
    assert 0.9 <= inside.mean() <= 0.99
    assert (pred.epistemic_std <= pred.std + 1e-6).all()


def test_save_and_load_round_trip(
    tmp_path: Path, trained: tuple[DeepEnsemble, np.ndarray, np.ndarray]
) -> None:
    model, x_test, _ = trained
    model.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["feature_names"] == NAMES
    assert manifest["metadata"] == {"k": 1}
    loaded = DeepEnsemble.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(x_test).mean, model.predict(x_test).mean)
    np.testing.assert_array_equal(loaded.predict(x_test).std, model.predict(x_test).std)


def test_other_features_are_refused(trained: tuple[DeepEnsemble, np.ndarray, np.ndarray]) -> None:
    model, x_test, _ = trained
    with pytest.raises(FeatureMismatchError, match="missing \\['f3'\\], unexpected \\['g'\\]"):
        model.predict(x_test, feature_names=["f0", "f1", "f2", "g"])
    with pytest.raises(FeatureMismatchError, match="order differs"):
        model.check_features(["f1", "f0", "f2", "f3"])
    with pytest.raises(FeatureMismatchError, match="expected 4 feature columns"):
        model.predict(x_test[:, :3])


def test_broken_model_directories(
    tmp_path: Path, trained: tuple[DeepEnsemble, np.ndarray, np.ndarray]
) -> None:
    with pytest.raises(ModelFileError, match=r"manifest\.json: missing"):
        DeepEnsemble.load(tmp_path / "nothing")
    model, _, _ = trained
    directory = model.save(tmp_path / "model")
    (directory / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        DeepEnsemble.load(directory)


class _Payload:
    """An arbitrary object: unpickling it must be refused."""


def test_weights_are_loaded_without_unpickling_objects(
    tmp_path: Path, trained: tuple[DeepEnsemble, np.ndarray, np.ndarray]
) -> None:
    model, _, _ = trained
    directory = model.save(tmp_path / "model")
    torch.save({"x_mean": _Payload()}, directory / "weights.pt")
    with pytest.raises(
        ModelFileError, match="refused to load, it holds objects other than tensors"
    ):
        DeepEnsemble.load(directory)


def test_botorch_posterior_matches_the_ensemble(
    trained: tuple[DeepEnsemble, np.ndarray, np.ndarray],
) -> None:
    from botorch.sampling import SobolQMCNormalSampler

    model, x_test, _ = trained
    adapter = EnsembleModel(model)
    x = torch.tensor(x_test[:5], dtype=torch.float64)
    posterior = adapter.posterior(x)
    samples = SobolQMCNormalSampler(torch.Size([8192]), seed=0)(posterior)
    assert samples.shape == (8192, 5, 2)
    pred = model.predict(x_test[:5])
    np.testing.assert_allclose(posterior.mean.detach().numpy(), pred.mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        posterior.variance.detach().numpy(), pred.std**2, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(samples.mean(0).detach().numpy(), pred.mean, atol=0.02)
    np.testing.assert_allclose(samples.std(0).detach().numpy(), pred.std, rtol=0.05)


def test_botorch_posterior_is_joint_and_differentiable(
    trained: tuple[DeepEnsemble, np.ndarray, np.ndarray],
) -> None:
    model, x_test, _ = trained
    adapter = EnsembleModel(model)
    x = torch.tensor(x_test[:6], dtype=torch.float64).reshape(2, 3, 4).requires_grad_(True)
    posterior = adapter.posterior(x, output_indices=[0])
    assert posterior.mean.shape == (2, 3, 1)
    covariance = posterior.distribution.covariance_matrix
    assert covariance.shape == (2, 3, 3)
    assert covariance[0, 0, 1].abs() > 0  # members correlate the points of a batch
    posterior.mean.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_a_botorch_acquisition_runs_on_the_ensemble(
    trained: tuple[DeepEnsemble, np.ndarray, np.ndarray],
) -> None:
    from botorch.acquisition.multi_objective.logei import (
        qLogNoisyExpectedHypervolumeImprovement,
    )

    model, x_test, _ = trained
    adapter = EnsembleModel(model)
    known = torch.tensor(x_test[:30], dtype=torch.float64)
    acquisition = qLogNoisyExpectedHypervolumeImprovement(
        model=adapter, ref_point=[-3.0, -3.0], X_baseline=known, prune_baseline=False
    )
    pool = torch.tensor(x_test[100:140], dtype=torch.float64).unsqueeze(1)
    values = acquisition(pool)
    assert values.shape == (40,)
    assert torch.isfinite(values).all()


@pytest.mark.slow
@pytest.mark.shared_data
def test_voltage_model_on_materials_project_is_accurate_and_calibrated(shared_csv: Path) -> None:
    """A reduced ensemble on a battery_id-grouped split: honest error and 95 % interval coverage.

    The full-size figures (32 members) are in docs/benchmarks.md; this guards against regressions.
    """
    from discovery.data import group_split, load_electrodes
    from discovery.surrogate import predict_electrodes, train_electrode_model

    frame = load_electrodes(shared_csv, drop_invalid=True)
    train, test = group_split(frame["battery_id"], 0.1, seed=0)
    assert not set(frame.battery_id.iloc[train]) & set(frame.battery_id.iloc[test])
    config = EnsembleConfig(members=8, max_epochs=60)
    model = train_electrode_model(frame.iloc[train].reset_index(drop=True), config=config)
    predicted = predict_electrodes(model, frame.iloc[test].reset_index(drop=True))
    error = predicted.voltage_mean - predicted.average_voltage
    assert error.abs().mean() < 0.5  # V; the 32-member default reaches about 0.37 V
    coverage = (error.abs() <= 1.96 * predicted.voltage_std).mean()
    assert 0.9 <= coverage <= 0.99
    np.testing.assert_allclose(predicted.capacity_grav, predicted.capacity_grav_input, rtol=5e-3)


def test_a_barely_varying_feature_cannot_blow_up_a_prediction() -> None:
    """A feature with a training std of 1e-7 and a new value of 1 would be a z-score of ten million;
    standardized inputs are clipped, so the prediction stays in the range of the data."""
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(n, 4)).astype(np.float32)
    x[:, 3] = rng.normal(0.0, 1e-7, size=n)
    y = (2.0 + x[:, 0] - 0.5 * x[:, 1]).astype(np.float32)
    model = DeepEnsemble(EnsembleConfig(members=4, hidden=(16,), max_epochs=30)).fit(
        x, y, feature_names=list("abcd"), target_names=["v"], groups=np.arange(n)
    )
    odd = x[:5].copy()
    odd[:, 3] = 1.0
    pred = model.predict(odd).mean[:, 0]
    assert np.all(np.abs(pred - 2.0) < 10 * y.std() + 5)
