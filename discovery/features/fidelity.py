"""Fidelity as a model input: one indicator column per fidelity level.

Answers come at different fidelities: Materials Project GGA(+U) voltages (``mp-gga``), a machine-
learned potential (``chgnet``), experiments (``experiment``). Their systematic differences (CHGNet's
voltages sit some tenths of a volt off GGA+U for some chemistries; experiment and DFT differ by the
functional's error) are learned when the fidelity is an input: a row at fidelity ``f`` gets 1 in the
column ``fidelity=f`` and 0 in the others, so one model trains on all answers and predicts at the
fidelity a campaign asks for. A campaign with one fidelity adds no column.
"""

from __future__ import annotations

__all__ = [
    "FIDELITY_PREFIX",
    "fidelity_feature_names",
    "fidelity_features",
    "with_fidelity",
]

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from discovery.errors import DiscoveryError

FIDELITY_PREFIX = "fidelity="


def fidelity_feature_names(levels: Sequence[str]) -> tuple[str, ...]:
    """Feature names of the indicator columns, in ``levels`` order."""
    return tuple(f"{FIDELITY_PREFIX}{level}" for level in levels)


def fidelity_features(
    labels: Sequence[str] | NDArray[np.object_] | str, levels: Sequence[str], n: int | None = None
) -> NDArray[np.float32]:
    """Indicator matrix (rows × levels, float32) of fidelity ``labels``.

    Args:
        labels: one label per row, or one label for all ``n`` rows.
        levels: the model's fidelity levels (their order is the column order).
        n: the number of rows when ``labels`` is a single label.

    Raises:
        DiscoveryError: a label that is not one of ``levels`` (names the label and the levels).
    """
    index = {level: i for i, level in enumerate(levels)}
    if isinstance(labels, str):
        labels = [labels] * (1 if n is None else n)
    codes = np.array([index.get(str(label), -1) for label in labels], dtype=np.int64)
    if (codes < 0).any():
        unknown = sorted({str(label) for label, c in zip(labels, codes) if c < 0})
        raise DiscoveryError(
            f"fidelity {', '.join(map(repr, unknown))} is not one of the model's fidelities "
            f"({', '.join(levels)})"
        )
    out = np.zeros((len(codes), len(levels)), dtype=np.float32)
    out[np.arange(len(codes)), codes] = 1.0
    return out


def with_fidelity(
    values: NDArray[np.float32],
    names: Sequence[str],
    labels: Sequence[str] | str,
    levels: Sequence[str],
) -> tuple[NDArray[np.float32], tuple[str, ...]]:
    """Features and their names with the indicator columns of ``labels`` appended (one label per
    row, or one for every row)."""
    fid = fidelity_features(labels, levels, len(values))
    return np.hstack([values, fid]), (*names, *fidelity_feature_names(levels))
