"""Model features: Magpie composition statistics (exactly matminer's), electrode-pair features and
formal oxidation states by charge balance."""

from __future__ import annotations

from discovery.features.electrode import (
    PAIR_FEATURES,
    ElectrodeFeatures,
    electrode_feature_names,
    electrode_features,
)
from discovery.features.magpie import (
    MAGPIE_COLUMNS,
    MAGPIE_PROPERTIES,
    MAGPIE_STATS,
    magpie,
    magpie_from_parsed,
    magpie_matrix,
    magpie_table,
)
from discovery.features.redox import REDOX_FEATURES, redox_feature_names, redox_features

__all__ = [
    "MAGPIE_COLUMNS",
    "MAGPIE_PROPERTIES",
    "MAGPIE_STATS",
    "PAIR_FEATURES",
    "REDOX_FEATURES",
    "ElectrodeFeatures",
    "electrode_feature_names",
    "electrode_features",
    "magpie",
    "magpie_from_parsed",
    "magpie_matrix",
    "magpie_table",
    "redox_feature_names",
    "redox_features",
]
