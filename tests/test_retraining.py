"""Retraining after new answers: warm start from the previous model, or from scratch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from discovery.surrogate import (
    DeepEnsemble,
    EnsembleConfig,
    retrain_electrode_model,
    train_electrode_model,
    warm_start_config,
)
from tests.conftest import synthetic_electrodes

TINY = EnsembleConfig(members=3, hidden=(16,), max_epochs=8, batch_size=32, seed=0)


@pytest.fixture(scope="module")
def rounds() -> tuple[pd.DataFrame, pd.DataFrame, DeepEnsemble]:
    """A first model on 60 frameworks, and the table with 20 new frameworks added."""
    first = synthetic_electrodes(seed=0, n_frameworks=60)
    more = synthetic_electrodes(seed=1, n_frameworks=80).iloc[120:]
    more = more.assign(battery_id=more["battery_id"].str.replace("synthetic", "added"))
    grown = pd.concat([first, more], ignore_index=True)
    return first, grown, train_electrode_model(first, config=TINY)


def test_warm_start_fine_tunes_and_keeps_the_validation_groups(
    rounds: tuple[pd.DataFrame, pd.DataFrame, DeepEnsemble], tmp_path: Path
) -> None:
    first, grown, previous = rounds
    assert previous.validation_groups  # whole battery_id groups were held out
    assert set(previous.validation_groups) <= set(first["battery_id"])
    # Saving and loading keeps them, so a resumed campaign warm-starts the same way.
    loaded = DeepEnsemble.load(previous.save(tmp_path / "previous"))
    assert loaded.validation_groups == previous.validation_groups
    assert loaded.training_groups == previous.training_groups
    assert set(previous.training_groups) == set(first["battery_id"]) - set(
        previous.validation_groups
    )

    model = retrain_electrode_model(grown, loaded, config=replace(TINY, seed=1))
    assert model.metadata["retraining"] == "warm-start"
    assert model.metadata["pretrained"]["n_rows"] == len(first)
    # The previous validation groups still validate; of the groups neither model has seen, a
    # share validates too (so early stopping sees what the new rows teach) and the rest train.
    # No group the previous model trained on ever validates.
    fresh = set(grown["battery_id"]) - set(first["battery_id"])
    added = set(model.validation_groups) - set(previous.validation_groups)
    assert set(previous.validation_groups) <= set(model.validation_groups)
    assert added and added < fresh
    assert not set(model.validation_groups) & set(previous.training_groups)
    assert set(model.training_groups) == set(grown["battery_id"]) - set(model.validation_groups)
    assert model.history.epochs <= warm_start_config(TINY).max_epochs
    assert model.config.learning_rate == TINY.learning_rate / 4
    # It starts from the previous weights: they differ from a fresh start with the same seed.
    scratch = retrain_electrode_model(
        grown, previous, warm_start=False, config=replace(TINY, seed=1)
    )
    assert scratch.metadata["retraining"] == "scratch"
    x = np.zeros((1, len(model.feature_names)), dtype=np.float32)
    assert not np.allclose(model.predict(x).mean, scratch.predict(x).mean)


def test_an_incompatible_previous_model_means_training_from_scratch(
    rounds: tuple[pd.DataFrame, pd.DataFrame, DeepEnsemble],
) -> None:
    _, grown, previous = rounds
    wider = retrain_electrode_model(grown, previous, config=replace(TINY, hidden=(8,)))
    assert wider.metadata["retraining"] == "scratch"
    assert "hidden" in wider.metadata["warm_start_refused"]
    two_targets = retrain_electrode_model(
        grown, previous, config=TINY, targets=["average_voltage", "max_delta_volume"]
    )
    assert two_targets.metadata["retraining"] == "scratch"
    assert "learned" in two_targets.metadata["warm_start_refused"]
    assert retrain_electrode_model(grown, None, config=TINY).metadata["retraining"] == "scratch"


def test_first_answers_at_a_second_fidelity_mean_training_from_scratch() -> None:
    """A first model on DFT rows only has no weights for the proxy's indicator (constant then,
    so dropped): fine-tuning it could never learn the offset, so the retraining starts over."""
    levels = ["mp-gga", "chgnet"]
    dft = synthetic_electrodes(seed=0, n_frameworks=40).assign(fidelity="mp-gga")
    previous = train_electrode_model(dft, config=TINY, fidelities=levels)
    proxy = dft.iloc[::2].assign(
        fidelity="chgnet", average_voltage=lambda t: t["average_voltage"] - 0.5
    )
    both = pd.concat([dft, proxy], ignore_index=True)
    model = retrain_electrode_model(both, previous, config=TINY, fidelities=levels)
    assert model.metadata["retraining"] == "scratch"
    assert "fidelity=chgnet" in model.metadata["warm_start_refused"]
    # once both levels were seen, the next retraining fine-tunes
    again = retrain_electrode_model(both, model, config=TINY, fidelities=levels)
    assert again.metadata["retraining"] == "warm-start"


def test_config_rejects_unknown_bootstrap_and_stopping_rules() -> None:
    with pytest.raises(ValueError, match="bootstrap_weights"):
        EnsembleConfig(bootstrap_weights="jackknife")
    with pytest.raises(ValueError, match="stop_on"):
        EnsembleConfig(stop_on="mae_per_member")
