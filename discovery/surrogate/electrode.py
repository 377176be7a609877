"""Electrode-level training and prediction: tables in, a calibrated voltage model out.

Voltage (and any other learned target) comes from the ensemble; gravimetric capacity and specific
energy come from physics (:mod:`discovery.chemistry`), with the energy's spread propagated from the
voltage's: ``energy_grav_std = voltage_std * capacity_grav``.
"""

from __future__ import annotations

__all__ = [
    "VOLTAGE",
    "WARM_START",
    "model_fidelities",
    "predict_electrodes",
    "prediction_columns",
    "retrain_electrode_model",
    "table_sha256",
    "train_electrode_model",
    "warm_start_config",
]

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from discovery.chemistry.ions import DEFAULT_IONS, IonTable
from discovery.errors import DiscoveryError, MissingColumnsError
from discovery.features import electrode_feature_names, electrode_features
from discovery.features.fidelity import fidelity_feature_names, with_fidelity
from discovery.surrogate.ensemble import NETWORK_SHAPE, DeepEnsemble, EnsembleConfig

#: The default learned target: average voltage vs the working-ion metal, in V.
VOLTAGE = "average_voltage"
_KEY_COLUMNS = ("battery_id", "working_ion", "formula_charge", "formula_discharge")

#: Default of ``warm_start`` in :func:`retrain_electrode_model`. Fine-tuning the previous round's
#: ensemble for :func:`warm_start_config`'s short schedule was as accurate as training from
#: scratch, in a quarter of the time (measurements in docs/surrogate.md, "Retraining").
WARM_START = True


def table_sha256(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """SHA-256 of the given columns' values, row order included (identifies training data)."""
    hashed = pd.util.hash_pandas_object(frame[list(columns)], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def train_electrode_model(
    frame: pd.DataFrame,
    *,
    targets: Sequence[str] = (VOLTAGE,),
    config: EnsembleConfig | None = None,
    ions: IonTable = DEFAULT_IONS,
    progress: Callable[[int, int], None] | None = None,
    fidelities: Sequence[str] = (),
    init: DeepEnsemble | None = None,
) -> DeepEnsemble:
    """Featurize a validated electrode table and train a deep ensemble on ``targets``.

    Rows with a missing value in one target still train the others. The manifest records the ions
    seen, the number of rows and a hash of the training data.

    ``fidelities``: with two or more levels, the table's ``fidelity`` column becomes an input (one
    indicator column per level, :mod:`discovery.features.fidelity`) and the levels are stored in
    the manifest, so predictions say at which fidelity they are made. One level or none: no input.

    ``init``: a trained model to fine-tune instead of training from scratch (its weights and
    scalers are the start; see :meth:`DeepEnsemble.fit`); give a ``config`` with the same network
    shape and a smaller learning rate. Its fidelity levels must equal ``fidelities``. The manifest
    records the pre-trained model's ions, rows and data hash under ``pretrained``.
    """
    levels = list(fidelities) if len(fidelities) > 1 else []
    missing = [t for t in targets if t not in frame.columns]
    if levels and "fidelity" not in frame.columns:
        missing.append("fidelity")
    if missing:
        raise MissingColumnsError("training data", missing, [str(c) for c in frame.columns])
    if init is not None and model_fidelities(init) != levels:
        raise DiscoveryError(
            f"the model to fine-tune takes the fidelities {model_fidelities(init) or 'none'}, "
            f"not {levels or 'none'}"
        )
    x, names = _feature_matrix(frame, ions, levels)
    y = frame[list(targets)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float32)
    metadata = {
        "ions_seen": sorted(set(frame["working_ion"])),
        "n_rows": len(frame),
        "data_sha256": table_sha256(
            frame, [*_KEY_COLUMNS, *targets, *(["fidelity"] * bool(levels))]
        ),
        "fidelities": levels,
    }
    if init is not None:
        seen = [str(i) for i in init.metadata.get("ions_seen", [])]
        metadata["ions_seen"] = sorted(set(seen) | set(frame["working_ion"]))
        metadata["pretrained"] = {
            k: init.metadata.get(k) for k in ("ions_seen", "n_rows", "data_sha256")
        }
    return DeepEnsemble(config).fit(
        x,
        y,
        feature_names=names,
        target_names=list(targets),
        groups=frame["battery_id"].astype(str).to_numpy(),
        metadata=metadata,
        progress=progress,
        init=init,
    )


def _feature_matrix(
    frame: pd.DataFrame, ions: IonTable, levels: list[str]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Electrode features of ``frame``, with the fidelity indicators when there are levels."""
    features = electrode_features(frame, ions)
    x, names = features.values, features.names
    if levels:
        x, names = with_fidelity(x, names, frame["fidelity"].astype(str).tolist(), levels)
    return x, tuple(names)


def prediction_columns(target: str) -> tuple[str, str]:
    """Output column names ``(mean, std)`` of a target: ``voltage_mean``/``voltage_std`` for voltage."""
    stem = "voltage" if target == VOLTAGE else target
    return f"{stem}_mean", f"{stem}_std"


def model_fidelities(model: DeepEnsemble) -> list[str]:
    """The fidelity levels a model takes as input (empty: a single-fidelity model)."""
    return list(model.metadata.get("fidelities") or [])


def predict_electrodes(
    model: DeepEnsemble,
    frame: pd.DataFrame,
    *,
    ions: IonTable = DEFAULT_IONS,
    fidelity: str | None = None,
) -> pd.DataFrame:
    """Predict every row of a candidate table (formula_charge, formula_discharge, working_ion).

    Returns a copy of ``frame`` with ``voltage_mean`` and ``voltage_std`` (V) (``<target>_mean``
    and ``<target>_std`` for other targets), ``capacity_grav`` (mAh/g, exact), ``energy_grav``
    (Wh/kg) and ``energy_grav_std`` (Wh/kg). An input column of the same name is kept as
    ``<name>_input``.

    ``fidelity``: the fidelity to predict at; required when the model was trained on several
    (:func:`model_fidelities`), ignored otherwise.
    """
    features = electrode_features(frame, ions)
    x, names = features.values, features.names
    levels = model_fidelities(model)
    if levels:
        if fidelity is None:
            raise DiscoveryError(
                f"this model was trained on the fidelities {', '.join(levels)}: say which one to "
                "predict at"
            )
        x, names = with_fidelity(x, names, fidelity, levels)
    model.check_features(names)
    prediction = model.predict(x)
    capacity = features.pairs.capacity_grav_mah_g
    added: dict[str, np.ndarray] = {}
    for t, target in enumerate(model.target_names):
        mean_col, std_col = prediction_columns(target)
        added[mean_col] = prediction.mean[:, t].astype(np.float64)
        added[std_col] = prediction.std[:, t].astype(np.float64)
    added["capacity_grav"] = capacity
    if VOLTAGE in model.target_names:
        added["energy_grav"] = added["voltage_mean"] * capacity
        added["energy_grav_std"] = added["voltage_std"] * capacity
    out = frame.copy()
    out = out.rename(columns={name: f"{name}_input" for name in added if name in out.columns})
    for name, values in added.items():
        out[name] = values
    return out


def warm_start_config(config: EnsembleConfig) -> EnsembleConfig:
    """The fine-tuning schedule of a warm-started retraining, from the full-training ``config``.

    The same network, bootstrap and seed, a quarter of the learning rate (cosine-annealed) and
    at most 20 epochs with a patience of 10.
    """
    return replace(
        config,
        learning_rate=config.learning_rate / 4,
        max_epochs=min(config.max_epochs, 20),
        patience=min(config.patience, 10),
    )


def _warm_start_refusal(
    previous: DeepEnsemble,
    config: EnsembleConfig,
    targets: Sequence[str],
    ions: IonTable,
    levels: list[str],
) -> str | None:
    """Why ``previous`` cannot be fine-tuned into the model asked for, or None when it can."""
    names = (*electrode_feature_names(ions), *fidelity_feature_names(levels))
    if previous.feature_names != names:
        return "its features differ (another ion table, fidelity levels or feature version)"
    if list(previous.target_names) != list(targets):
        return f"it learned {list(previous.target_names)}, not {list(targets)}"
    if model_fidelities(previous) != levels:
        return f"it takes the fidelities {model_fidelities(previous) or 'none'}"
    for key in (*NETWORK_SHAPE, "exclude_prefixes"):
        if getattr(previous.config, key) != getattr(config, key):
            return f"its {key} {getattr(previous.config, key)!r} != {getattr(config, key)!r}"
    return None


def retrain_electrode_model(
    frame: pd.DataFrame,
    previous: DeepEnsemble | None,
    *,
    warm_start: bool = WARM_START,
    targets: Sequence[str] = (VOLTAGE,),
    config: EnsembleConfig | None = None,
    ions: IonTable = DEFAULT_IONS,
    progress: Callable[[int, int], None] | None = None,
    fidelities: Sequence[str] = (),
) -> DeepEnsemble:
    """Retrain a campaign's ensemble on every labeled row after a round, warm or from scratch.

    With ``warm_start`` and a ``previous`` model of the same features, targets, fidelity levels
    and network shape, the previous round's weights and scalers are fine-tuned on ``frame`` with
    :func:`warm_start_config` (``config``'s network, seed and bootstrap; a quarter of the learning
    rate; at most 20 epochs). The previous model's validation groups
    (:attr:`DeepEnsemble.validation_groups`) validate, with 10 % of the groups it never saw, and
    every other row trains, so early stopping and recalibration see rows neither model trained
    on, new ones among them. Otherwise the model is trained from scratch
    with ``config``. The manifest says which under ``metadata["retraining"]``: ``"warm-start"``
    or ``"scratch"``, with the reason a warm start was not possible in
    ``metadata["warm_start_refused"]``.

    The other arguments are those of :func:`train_electrode_model`.
    """
    config = config or EnsembleConfig()
    levels = list(fidelities) if len(fidelities) > 1 else []
    refusal = None
    if warm_start and previous is not None:
        refusal = _warm_start_refusal(previous, config, targets, ions, levels)
    if warm_start and previous is not None and refusal is None:
        unused = previous.unused_features(_feature_matrix(frame, ions, levels)[0])
        if unused:  # e.g. the first answers at a second fidelity: no weights to learn them with
            more = f" and {len(unused) - 3} more" if len(unused) > 3 else ""
            refusal = (
                f"{len(unused)} feature(s) constant in its training data vary now "
                f"({', '.join(unused[:3])}{more})"
            )
    warm = warm_start and previous is not None and refusal is None
    model = train_electrode_model(
        frame,
        targets=targets,
        config=warm_start_config(config) if warm else config,
        ions=ions,
        progress=progress,
        fidelities=fidelities,
        init=previous if warm else None,
    )
    model.metadata["retraining"] = "warm-start" if warm else "scratch"
    if refusal is not None:
        model.metadata["warm_start_refused"] = refusal
    return model
