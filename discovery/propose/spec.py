"""What a proposal optimizes and what it returns: objectives, outcome constraints, the result.

This module costs NumPy and pandas only. Outcomes come in three kinds:

* **learned** targets of the ensemble (``ensemble.target_names``, e.g. ``average_voltage`` in V,
  ``max_delta_volume`` as a fraction, ``stability_discharge`` in eV/atom);
* **exact** outcomes computed from the formulas, :data:`EXACT_OUTCOMES` (``capacity_grav`` in
  mAh/g), given to the proposer as columns beside the features;
* **derived** outcomes, :data:`DERIVED_OUTCOMES` (``energy_grav`` in Wh/kg =
  ``average_voltage`` (V) × ``capacity_grav`` (mAh/g)), computed from the other two.
"""

from __future__ import annotations

__all__ = [
    "DERIVED_OUTCOMES",
    "EXACT_OUTCOMES",
    "Objective",
    "OutcomeConstraint",
    "OutcomeSet",
    "Proposal",
    "ProposalError",
]

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from discovery.errors import DiscoveryError

#: Exact outcomes, in the order of the exact columns (``pool_exact``, ``space.exact``).
EXACT_OUTCOMES: tuple[str, ...] = ("capacity_grav",)
#: Derived outcomes: name -> the two outcomes whose product it is.
DERIVED_OUTCOMES: dict[str, tuple[str, str]] = {
    "energy_grav": ("average_voltage", "capacity_grav"),
}
STRATEGIES: tuple[str, ...] = ("qlognehvi", "qnparego", "greedy", "random")


class ProposalError(DiscoveryError, ValueError):
    """A proposal request that cannot be served: unknown outcome or strategy, inconsistent
    shapes, a reference point of the wrong length, nothing left to propose."""


@dataclass(frozen=True)
class Objective:
    """One objective: an outcome name (learned, exact or derived) and its direction."""

    name: str
    direction: Literal["maximize", "minimize"] = "maximize"

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ProposalError(
                f"objective {self.name!r}: direction must be 'maximize' or 'minimize', "
                f"got {self.direction!r}"
            )

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


@dataclass(frozen=True)
class OutcomeConstraint:
    """Keep an outcome inside ``[lower, upper]`` (either bound may be None), in outcome units
    (e.g. a voltage window ``OutcomeConstraint("average_voltage", 1.5, 4.5)`` in V)."""

    name: str
    lower: float | None = None
    upper: float | None = None

    def __post_init__(self) -> None:
        if self.lower is None and self.upper is None:
            raise ProposalError(f"constraint on {self.name!r}: give a lower or an upper bound")
        for label, bound in (("lower", self.lower), ("upper", self.upper)):
            if bound is not None and not math.isfinite(bound):
                raise ProposalError(f"constraint on {self.name!r}: {label} bound is {bound}")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ProposalError(
                f"constraint on {self.name!r}: lower bound {self.lower} exceeds upper {self.upper}"
            )


@dataclass(frozen=True)
class Proposal:
    """A batch chosen by one strategy.

    Attributes:
        strategy: the strategy that chose it ("qlognehvi", "qnparego", "greedy", "random").
        acquisition_value: (q,) float, in selection order: for qlognehvi / qnparego the log
            acquisition value of each sequential-greedy step (given the points before it as
            pending); for greedy, pool: the maximize-oriented posterior mean (one objective) or
            minus the non-dominated layer of the posterior means (several; 0 = first layer),
            continuous: the qSimpleRegret value; NaN for random.
        ref_point: the hypervolume reference point used, one value per objective, in the
            objectives' own units (no sign change for minimized objectives).
        predicted: q rows, columns ``<outcome>_mean`` and ``<outcome>_std`` for every outcome
            (learned, exact with std 0, derived), in outcome units.
        indices: pool mode: (q,) int64 pool row indices, in selection order; else None.
        X: continuous mode: (q, dim) float64 decision vectors; else None.
        shortlist: pool mode with qlognehvi / qnparego: the pool rows the exact acquisition
            chose from; else None.
        seconds: wall-clock seconds per phase ("score", "shortlist", "acquisition", "total").
    """

    strategy: str
    acquisition_value: np.ndarray
    ref_point: tuple[float, ...]
    predicted: pd.DataFrame
    indices: np.ndarray | None = None
    X: np.ndarray | None = None
    shortlist: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)


class OutcomeSet:
    """The outcomes a model gives, in model-output order ``[*targets, *EXACT_OUTCOMES]``, plus
    the derived ones that can be computed from them."""

    def __init__(self, target_names: Sequence[str]) -> None:
        self.targets = tuple(target_names)
        clash = [n for n in self.targets if n in EXACT_OUTCOMES or n in DERIVED_OUTCOMES]
        if clash:
            raise ProposalError(
                f"ensemble target(s) {clash} clash with exact or derived outcomes; "
                "an exact outcome is computed from the formulas, not learned"
            )
        self.columns: tuple[str, ...] = (*self.targets, *EXACT_OUTCOMES)
        self.derived = {
            name: parts
            for name, parts in DERIVED_OUTCOMES.items()
            if all(p in self.columns for p in parts)
        }
        self.names: tuple[str, ...] = (*self.columns, *self.derived)

    def check(self, names: Sequence[str], what: str) -> None:
        """Raise :class:`ProposalError` for a name that is not an outcome of this model."""
        for i, name in enumerate(names):
            if name not in self.names:
                hint = ""
                if name in DERIVED_OUTCOMES:
                    parts = " and ".join(DERIVED_OUTCOMES[name])
                    hint = f" ({name} needs {parts}; train the ensemble on the missing target)"
                raise ProposalError(
                    f"{what}[{i}]: unknown outcome {name!r}; this model gives "
                    f"{', '.join(self.names)}{hint}"
                )

    def index(self, name: str) -> int:
        return self.columns.index(name)

    def moments(
        self, mean: np.ndarray, std: np.ndarray, name: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Marginal ``(mean, std)`` of one outcome from column moments ``(n, len(columns))``.

        A derived product takes its spread from its learned factor: the exact factor has none
        (``energy_grav_std = average_voltage_std * capacity_grav``).
        """
        if name in self.derived:
            a, b = (self.index(p) for p in self.derived[name])
            m = mean[:, a] * mean[:, b]
            s = np.sqrt((std[:, a] * mean[:, b]) ** 2 + (std[:, b] * mean[:, a]) ** 2)
            return m, s
        j = self.index(name)
        return mean[:, j], std[:, j]

    def predicted_frame(self, mean: np.ndarray, std: np.ndarray) -> pd.DataFrame:
        """``<outcome>_mean`` / ``<outcome>_std`` of every outcome, float64."""
        data: dict[str, np.ndarray] = {}
        for name in self.names:
            m, s = self.moments(mean, std, name)
            data[f"{name}_mean"] = np.asarray(m, dtype=np.float64)
            data[f"{name}_std"] = np.asarray(s, dtype=np.float64)
        return pd.DataFrame(data)

    def measured(self, values: pd.DataFrame, exact: np.ndarray, name: str) -> np.ndarray:
        """Measured values of one outcome (n,), NaN where unknown.

        Taken from the ``values`` column of that name; an exact outcome missing there comes from
        ``exact``; a derived one missing there is the product of its measured factors.
        """
        n = len(exact)
        if name in values.columns:
            column = pd.to_numeric(values[name], errors="coerce").to_numpy(dtype=np.float64)
            if name in EXACT_OUTCOMES:  # fill gaps from the formulas
                column = np.where(np.isnan(column), exact[:, EXACT_OUTCOMES.index(name)], column)
            return column
        if name in EXACT_OUTCOMES:
            return np.asarray(exact[:, EXACT_OUTCOMES.index(name)], dtype=np.float64)
        if name in DERIVED_OUTCOMES:
            a, b = DERIVED_OUTCOMES[name]
            return self.measured(values, exact, a) * self.measured(values, exact, b)
        return np.full(n, np.nan)
