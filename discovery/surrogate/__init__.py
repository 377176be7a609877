"""The surrogate: a calibrated deep ensemble of MLPs, its BoTorch adapter and electrode helpers.

``EnsembleModel`` (BoTorch) is imported lazily so that importing this package does not import
BoTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from discovery.surrogate.electrode import (
    VOLTAGE,
    WARM_START,
    model_fidelities,
    predict_electrodes,
    prediction_columns,
    retrain_electrode_model,
    train_electrode_model,
    warm_start_config,
)
from discovery.surrogate.ensemble import (
    ENCODING_PRESETS,
    DeepEnsemble,
    EnsembleConfig,
    Prediction,
)

if TYPE_CHECKING:
    from discovery.surrogate.adapter import EnsembleModel

__all__ = [
    "ENCODING_PRESETS",
    "VOLTAGE",
    "WARM_START",
    "DeepEnsemble",
    "EnsembleConfig",
    "EnsembleModel",
    "Prediction",
    "model_fidelities",
    "predict_electrodes",
    "prediction_columns",
    "retrain_electrode_model",
    "train_electrode_model",
    "warm_start_config",
]


def __getattr__(name: str) -> Any:
    if name == "EnsembleModel":
        from discovery.surrogate.adapter import EnsembleModel

        return EnsembleModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
