"""The opt-in piecewise-linear input encoding and the shared first layer of the deep ensemble."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from discovery.surrogate import DeepEnsemble, EnsembleConfig, EnsembleModel
from discovery.surrogate.electrode import retrain_electrode_model, train_electrode_model
from discovery.surrogate.ensemble import (
    _TREE_LEAF_ROWS,
    Z_CLIP,
    _PiecewiseLinear,
    _StackedMLP,
    _tree_edges,
)
from tests.conftest import synthetic_electrodes

NAMES = [f"f{i}" for i in range(3)]
ENCODED = EnsembleConfig(
    members=4,
    hidden=(64, 32),
    max_epochs=60,
    batch_size=32,
    learning_rate=3e-3,
    input_encoding="piecewise_linear",
    encoding_bins=4,
    shared_first_layer=True,
)


def _raw_bins(encoder: _PiecewiseLinear, x: torch.Tensor) -> np.ndarray:
    """The encoding before its per-column standardization, (n, d, bins)."""
    return encoder._bins(x).reshape(len(x), *encoder.lower.shape).numpy()


def test_bins_hold_the_fraction_of_each_quantile_bin_passed() -> None:
    encoder = _PiecewiseLinear(2, 4)
    # column 0: quantile edges 0, 1, 2, 3, 4; column 1: a one-hot with 90 % zeros (edges 0 and 1)
    values = np.linspace(0, 4, 41)
    train = torch.tensor([[float(v), float(i >= 37)] for i, v in enumerate(values)])
    encoder.fit(train)
    bins = _raw_bins(encoder, torch.tensor([[2.5, 0.0], [-1.0, 1.0], [7.0, 0.0]]))
    np.testing.assert_allclose(bins[0, 0], [1, 1, 0.5, 0], atol=1e-5)
    # below the first edge the first bin extrapolates; above the last, the last bin does
    np.testing.assert_allclose(bins[1, 0], [-1, 0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(bins[2, 0], [1, 1, 1, 4], atol=1e-5)
    # merged edges: a one-hot keeps one bin, equal to itself, and zeros elsewhere
    np.testing.assert_allclose(bins[:, 1], [[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    # only the 5 columns that vary in training (4 bins and the one-hot's) are computed, each
    # standardized on the training rows
    assert encoder.live().tolist() == [0, 1, 2, 3, 4]
    encoded = encoder(train).numpy()
    assert encoded.shape == (41, 5)
    np.testing.assert_allclose(encoded.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(encoded.std(axis=0), 1, atol=1e-4)
    assert np.abs(encoder(torch.tensor([[1e6, 0.0]])).numpy()).max() == pytest.approx(Z_CLIP)


def test_the_encoding_folds_its_clips_into_one_without_losing_narrow_bins() -> None:
    # Column 0 crowds most rows into 1.5e-5 of its range, so its bins there are a few float32
    # spacings wide and an edge between two representable values, if stored as a position,
    # would be off by a few percent of its bin; column 1 has a rare value whose standardized
    # column reaches the ±Z_CLIP clip; column 2 is plain.
    rng = np.random.default_rng(3)
    narrow = -0.61 + rng.uniform(0, 1.5e-5, 400)
    wide = rng.uniform(-3, 8, 100)
    column0 = np.concatenate([narrow, wide])
    column1 = np.zeros(500)
    column1[:2] = 1.0
    train = torch.tensor(np.stack([column0, column1, rng.normal(size=500)], 1), dtype=torch.float32)
    for targets in (None, torch.from_numpy(column0[:, None] > -0.609993).float()):
        encoder = _PiecewiseLinear(3, 6)
        encoder.fit(train, targets)
        rows = torch.cat([train, train * 3 - 1, torch.tensor([[-0.609995, 500.0, -1e3]])])
        # the definition: each bin's clipped fraction, standardized, clipped to ±Z_CLIP
        direct = (encoder._bins(rows) - encoder.center) * encoder.inv_scale
        expected = direct.clamp(-Z_CLIP, Z_CLIP)[:, encoder.live()].numpy()
        np.testing.assert_allclose(encoder(rows).numpy(), expected, rtol=1e-5, atol=1e-5)
        assert np.abs(expected).max() == Z_CLIP  # the clip binds on some rows


def test_target_aware_edges_are_the_splits_of_a_regression_tree() -> None:
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4)).astype(np.float32)
    y = np.stack([np.sin(2 * x[:, 0]) + x[:, 1] ** 2, np.abs(x[:, 2])], axis=1)
    y += rng.normal(0, 0.1, y.shape)
    edges = _tree_edges(x, y, 6)
    leaf = min(_TREE_LEAF_ROWS, 500 // 12)
    for j in range(4):
        tree = DecisionTreeRegressor(max_leaf_nodes=6, min_samples_leaf=leaf, random_state=0)
        fitted = tree.fit(x[:, [j]], y).tree_
        splits = np.sort(fitted.threshold[fitted.feature >= 0])
        np.testing.assert_allclose(edges[j, 1 : 1 + len(splits)], splits, rtol=1e-6)
        assert edges[j, 0] == x[:, j].min() and edges[j, -1] == x[:, j].max()


def test_target_aware_bins_are_narrow_where_the_target_changes() -> None:
    values = np.linspace(0, 10, 401, dtype=np.float32)
    # a step at 3 and one at 7, and an indicator
    x = np.stack([values, (values > 5).astype(np.float32)], axis=1)
    y = ((values > 3).astype(float) + 2 * (values > 7))[:, None]
    edges = _tree_edges(x, y, 3)
    np.testing.assert_allclose(edges[0], [0, 3, 7, 10], atol=0.02)
    np.testing.assert_allclose(edges[1], [0, 1, 1, 1])  # the indicator keeps one bin
    encoder = _PiecewiseLinear(2, 3)
    encoder.fit(torch.from_numpy(x), torch.from_numpy(y))
    assert len(encoder.live()) == 3 + 1


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A step and a kink, which piecewise-linear bins suit: y = [x0 > 0] + |x1| + noise."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 3)).astype(np.float32)
    y = (x[:, 0] > 0) + np.abs(x[:, 1]) + rng.normal(0, 0.05, n)
    return x, y.astype(np.float32), np.arange(n) // 2


@pytest.fixture(scope="module")
def encoded() -> DeepEnsemble:
    x, y, groups = _data(800, 0)
    return DeepEnsemble(ENCODED).fit(x, y, feature_names=NAMES, target_names=["v"], groups=groups)


def test_an_encoded_ensemble_learns_saves_and_loads(encoded: DeepEnsemble, tmp_path: Path) -> None:
    x, y, _ = _data(1000, 1)
    pred = encoded.predict(x)
    assert float(np.abs(pred.mean[:, 0] - y).mean()) < 0.15 * float(y.std())
    means, _ = encoded.member_moments(torch.from_numpy(x[:20]))
    assert float(means.std(0).mean()) > 1e-4  # members differ despite the shared first layer
    inside = np.abs(pred.mean[:, 0] - y) <= 1.96 * pred.std[:, 0]
    assert 0.88 <= inside.mean() <= 0.995

    loaded = DeepEnsemble.load(encoded.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(x).mean, pred.mean)
    config = json.loads((tmp_path / "m" / "manifest.json").read_text())["config"]
    assert config["input_encoding"] == "piecewise_linear" and config["shared_first_layer"]


def test_the_shared_first_layer_is_one_matrix(encoded: DeepEnsemble) -> None:
    net = encoded._require_net()
    used = len(encoded._used)
    assert tuple(net.weights[0].shape) == (1, used * ENCODED.encoding_bins, 64)
    assert tuple(net.weights[1].shape) == (4, 64, 32)  # later layers are the members' own
    assert net.first_scale is not None and tuple(net.first_scale.shape) == (4, 64)


def test_the_first_layer_keeps_only_the_rows_of_live_columns(tmp_path: Path) -> None:
    x, y, groups = _data(400, 5)
    x[:, 2] = x[:, 2] > 0  # a 0/1 column: one live encoded column of its 4
    model = DeepEnsemble(replace(ENCODED, max_epochs=3, bin_edges="quantile")).fit(
        x, y, feature_names=NAMES, target_names=["v"], groups=groups
    )
    net = model._require_net()
    assert net.encoder is not None
    live = net.encoder.live()
    assert len(live) == 4 + 4 + 1 and tuple(net.weights[0].shape) == (1, 9, 64)
    path = model.save(tmp_path / "m")
    np.testing.assert_array_equal(DeepEnsemble.load(path).predict(x).mean, model.predict(x).mean)
    # a file written before the first layer kept only those rows: one row per encoded column
    tensors = torch.load(path / "weights.pt", weights_only=True)
    full = torch.zeros(1, 3 * ENCODED.encoding_bins, 64)
    full[:, live] = tensors["net.weights.0"]
    torch.save({**tensors, "net.weights.0": full}, path / "weights.pt")
    old = DeepEnsemble.load(path)
    assert tuple(old._require_net().weights[0].shape) == (1, 9, 64)
    np.testing.assert_array_equal(old.predict(x).mean, model.predict(x).mean)


def test_the_botorch_posterior_is_differentiable_through_the_encoding(
    encoded: DeepEnsemble,
) -> None:
    x = torch.from_numpy(_data(5, 2)[0]).double().unsqueeze(1).requires_grad_(True)  # (5, 1, 3)
    posterior = EnsembleModel(encoded).posterior(x)
    posterior.mean.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_training_is_deterministic_under_a_seed() -> None:
    x, y, groups = _data(200, 3)
    config = replace(ENCODED, max_epochs=5)
    fit = lambda: DeepEnsemble(config).fit(  # noqa: E731
        x, y, feature_names=NAMES, target_names=["v"], groups=groups
    )
    np.testing.assert_array_equal(fit().predict(x).mean, fit().predict(x).mean)


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="input_encoding"):
        EnsembleConfig(input_encoding="quantile")
    with pytest.raises(ValueError, match="encoding_bins"):
        EnsembleConfig(input_encoding="piecewise_linear", encoding_bins=1)
    with pytest.raises(ValueError, match="bin_edges must be one of"):
        EnsembleConfig(bin_edges="uniform")
    with pytest.raises(ValueError, match="shared_first_layer needs stop_on='ensemble_mae'"):
        EnsembleConfig(input_encoding="standard", shared_first_layer=True, stop_on="mse")


def test_a_model_of_another_encoding_is_retrained_from_scratch() -> None:
    table = synthetic_electrodes(seed=0, n_frameworks=30)
    plain = replace(ENCODED, input_encoding="standard", shared_first_layer=False, hidden=(16,))
    previous = train_electrode_model(table, config=replace(plain, max_epochs=3))
    model = retrain_electrode_model(table, previous, config=replace(ENCODED, hidden=(16,)))
    assert model.metadata["retraining"] == "scratch"
    assert "input_encoding" in model.metadata["warm_start_refused"]
    warm = retrain_electrode_model(table, model, config=replace(ENCODED, hidden=(16,)))
    assert warm.metadata["retraining"] == "warm-start"


MIXED = replace(ENCODED, input_encoding="mixed", members=5, encoded_first_width=48)


@pytest.fixture(scope="module")
def mixed() -> DeepEnsemble:
    x, y, groups = _data(800, 0)
    return DeepEnsemble(MIXED).fit(x, y, feature_names=NAMES, target_names=["v"], groups=groups)


def test_a_mixed_ensemble_has_plain_and_encoded_members(mixed: DeepEnsemble) -> None:
    plain, encoded_tower = mixed._require_net().towers
    used = len(mixed._used)
    # ceil(5 / 2) = 3 members on the standardized features, their first layers their own ...
    assert plain.encoder is None and tuple(plain.weights[0].shape) == (3, used, 64)
    # ... and 2 on the piecewise-linear encoding, through one shared 48-unit first layer
    assert encoded_tower.encoder is not None
    assert tuple(encoded_tower.weights[0].shape) == (1, used * MIXED.encoding_bins, 48)
    assert tuple(encoded_tower.weights[1].shape) == (2, 48, 32)
    x, y, _ = _data(1000, 1)
    means, _ = mixed.member_moments(torch.from_numpy(x))
    assert means.shape == (5, 1000, 1)
    for member in means:  # every member learned the step and the kink
        assert float((member[:, 0] - torch.from_numpy(y)).abs().mean()) < 0.2 * float(y.std())
    pred = mixed.predict(x)
    np.testing.assert_allclose(pred.mean[:, 0], means.mean(0)[:, 0].numpy(), rtol=1e-5, atol=1e-5)
    inside = np.abs(pred.mean[:, 0] - y) <= 1.96 * pred.std[:, 0]
    assert 0.88 <= inside.mean() <= 0.995


def test_a_mixed_ensemble_saves_loads_fine_tunes_and_serves_botorch(
    mixed: DeepEnsemble, tmp_path: Path
) -> None:
    x, y, groups = _data(300, 4)
    loaded = DeepEnsemble.load(mixed.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(x).mean, mixed.predict(x).mean)
    assert (
        json.loads((tmp_path / "m" / "manifest.json").read_text())["config"]["input_encoding"]
        == "mixed"
    )
    # fine-tuning starts from the loaded weights: zero epochs leave them as they were
    same = DeepEnsemble(replace(MIXED, max_epochs=0)).fit(
        x, y, feature_names=NAMES, target_names=["v"], groups=groups, init=loaded
    )
    np.testing.assert_allclose(same.predict(x).mean, mixed.predict(x).mean, rtol=1e-5)
    tuned = DeepEnsemble(replace(MIXED, max_epochs=3, learning_rate=1e-3)).fit(
        x, y, feature_names=NAMES, target_names=["v"], groups=groups, init=loaded
    )
    assert not np.array_equal(tuned.predict(x).mean, mixed.predict(x).mean)
    with pytest.raises(ValueError, match="encoded_first_width 48 != 256"):
        DeepEnsemble(replace(MIXED, encoded_first_width=256)).fit(
            x, y, feature_names=NAMES, target_names=["v"], groups=groups, init=loaded
        )
    q = torch.from_numpy(x[:5]).double().unsqueeze(1).requires_grad_(True)
    posterior = EnsembleModel(loaded).posterior(q)
    np.testing.assert_allclose(
        posterior.mean.detach().numpy()[:, 0, 0], loaded.predict(x[:5]).mean[:, 0], rtol=1e-4
    )
    posterior.mean.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0


def test_mixed_config_checks() -> None:
    assert EnsembleConfig().input_encoding == "mixed"  # the default
    with pytest.raises(ValueError, match=r"stop_on='ensemble_mae'.*set input_encoding='standard'"):
        EnsembleConfig(input_encoding="mixed", stop_on="nll")
    # one member has no partner to mix with: it is a standard member, and may stop on its own
    x, y, groups = _data(200, 2)
    one = EnsembleConfig(members=1, hidden=(16,), stop_on="mse", max_epochs=2)
    net = DeepEnsemble(one).fit(x, y, feature_names=NAMES, target_names=["v"], groups=groups)
    stack = net._require_net()
    assert isinstance(stack, _StackedMLP) and stack.encoder is None
    with pytest.raises(ValueError, match="encoded_first_width"):
        EnsembleConfig(input_encoding="mixed", encoded_first_width=0)
