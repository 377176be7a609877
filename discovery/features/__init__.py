"""Model features: Magpie composition statistics (exactly matminer's) and electrode-pair features."""

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

__all__ = [
    "MAGPIE_COLUMNS",
    "MAGPIE_PROPERTIES",
    "MAGPIE_STATS",
    "PAIR_FEATURES",
    "ElectrodeFeatures",
    "electrode_feature_names",
    "electrode_features",
    "magpie",
    "magpie_from_parsed",
    "magpie_matrix",
    "magpie_table",
]
