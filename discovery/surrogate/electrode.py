"""Electrode-level training and prediction: tables in, a calibrated voltage model out.

Voltage (and any other learned target) comes from the ensemble; gravimetric capacity and specific
energy come from physics (:mod:`discovery.chemistry`), with the energy's spread propagated from the
voltage's: ``energy_grav_std = voltage_std * capacity_grav``.
"""

from __future__ import annotations

__all__ = [
    "VOLTAGE",
    "model_fidelities",
    "predict_electrodes",
    "prediction_columns",
    "table_sha256",
    "train_electrode_model",
]

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from discovery.chemistry.ions import DEFAULT_IONS, IonTable
from discovery.errors import DiscoveryError, MissingColumnsError
from discovery.features import electrode_features
from discovery.features.fidelity import with_fidelity
from discovery.surrogate.ensemble import DeepEnsemble, EnsembleConfig

#: The default learned target: average voltage vs the working-ion metal, in V.
VOLTAGE = "average_voltage"
_KEY_COLUMNS = ("battery_id", "working_ion", "formula_charge", "formula_discharge")


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
    features = electrode_features(frame, ions)
    x, names = features.values, features.names
    if levels:
        x, names = with_fidelity(x, names, frame["fidelity"].astype(str).tolist(), levels)
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
