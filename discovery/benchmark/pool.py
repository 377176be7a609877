"""The pool of a retrospective benchmark: every labeled electrode of the chosen ions, its true
values, its true Pareto set and the reference point that every run of the benchmark shares.

The pool is what a retrospective campaign searches and what the replay oracle answers from: the
rows of the data table whose working ion is one of the benchmark's ions, validated and
de-duplicated by candidate id exactly as a campaign's table space is
(:func:`discovery.space.load_pool`, first row of each id, as the replay oracle answers).

Objectives: maximize ``average_voltage`` (V) and ``capacity_grav`` (mAh/g). A row is *feasible*
when its voltage lies in the benchmark's voltage window (the campaign's outcome constraint); only
feasible rows count for the front and the hypervolume, as in ``discover export``.

Reference point (one for every run, every round and every strategy): the project's rule
(:func:`discovery.export.reference_point`, margin 0.1) applied to the feasible rows of the whole
pool, i.e. per objective ``min - 0.1 × (max - min)`` over the feasible pool. The maximum
hypervolume is the hypervolume of the whole feasible pool against that point.
"""

from __future__ import annotations

__all__ = ["MAXIMIZE", "OBJECTIVES", "BenchmarkPool", "load_benchmark_pool"]

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from discovery.chemistry.ions import DEFAULT_IONS, IonTable
from discovery.errors import DiscoveryError

#: The benchmark's objectives (both maximized): average voltage (V) and gravimetric capacity (mAh/g).
OBJECTIVES: tuple[str, str] = ("average_voltage", "capacity_grav")
MAXIMIZE: tuple[bool, bool] = (True, True)


@dataclass(frozen=True)
class BenchmarkPool:
    """The candidates of a benchmark and everything known about them.

    Attributes:
        frame: one row per candidate: ``candidate_id``, ``working_ion``, ``formula_charge``,
            ``formula_discharge``, ``battery_id`` (when the table has it), in pool order.
        voltage: true average voltage of each row, V, shape (n,).
        capacity: gravimetric capacity of each row, mAh/g, shape (n,): the table's value where it
            has one (what the replay oracle answers), else the exact formula value.
        feasible: voltage inside ``window``, shape (n,).
        window: the voltage window ``(min, max)`` in V; ``(-inf, inf)`` for none.
        ref_point: the shared reference point ``(V, mAh/g)``.
        max_hypervolume: hypervolume of the whole feasible pool, V·mAh/g.
        front: candidate ids of the pool's true Pareto set (feasible, non-dominated).
    """

    frame: pd.DataFrame
    voltage: np.ndarray
    capacity: np.ndarray
    feasible: np.ndarray
    window: tuple[float, float]
    ref_point: tuple[float, float]
    max_hypervolume: float
    front: frozenset[str]

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ids(self) -> np.ndarray:
        """Candidate ids, shape (n,)."""
        return self.frame["candidate_id"].to_numpy(dtype=object)

    def rows_of(self, candidate_ids: Iterable[str]) -> np.ndarray:
        """Pool row positions of the given ids (ids not in the pool are ignored)."""
        index = self._index()
        return np.array([index[c] for c in candidate_ids if c in index], dtype=np.int64)

    def _index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.frame["candidate_id"])}

    def hypervolume_of(self, rows: Sequence[int] | np.ndarray) -> float:
        """Hypervolume (V·mAh/g) of the feasible rows among ``rows`` against the shared point."""
        from discovery.export import hypervolume

        rows = np.asarray(rows, dtype=np.int64)
        rows = rows[self.feasible[rows]]
        values = np.c_[self.voltage[rows], self.capacity[rows]]
        return float(hypervolume(values, self.ref_point, MAXIMIZE))

    def front_found(self, candidate_ids: Iterable[str]) -> int:
        """How many of the pool's true Pareto set are among ``candidate_ids``."""
        return len(self.front & set(candidate_ids))


def load_benchmark_pool(
    path: str | Path,
    ions: Sequence[str],
    window: tuple[float, float] | None = None,
    *,
    ion_table: IonTable = DEFAULT_IONS,
) -> BenchmarkPool:
    """Read the benchmark pool of ``ions`` from a labeled electrode table.

    Args:
        path: CSV or parquet table with ``working_ion``, ``formula_charge``, ``formula_discharge``
            and ``average_voltage`` (V); invalid rows are dropped as a campaign's table space does.
        ions: working ions of the pool.
        window: voltage window ``(min, max)`` in V that a useful electrode must satisfy; None: no
            window.
        ion_table: the ion table.

    Raises:
        DiscoveryError: no ``average_voltage`` column, fewer than two rows with a voltage, or no
            feasible row.
    """
    from discovery.chemistry.pairs import insertion_pairs
    from discovery.export import hypervolume, pareto_mask, reference_point
    from discovery.space import load_pool

    pool = load_pool(path, ions, ion_table, drop_invalid=True)
    if "average_voltage" not in pool.columns:
        raise DiscoveryError(f"{path}: no average_voltage column; a benchmark needs labeled data")
    voltage = pd.to_numeric(pool["average_voltage"], errors="coerce").to_numpy(dtype=np.float64)
    labeled = np.isfinite(voltage)
    pool = pool[labeled].reset_index(drop=True)
    voltage = voltage[labeled]
    if len(pool) < 2:
        raise DiscoveryError(
            f"{path}: {len(pool)} labeled row(s) of the ions {', '.join(ions)}; a benchmark pool "
            "needs at least two"
        )
    pairs = insertion_pairs(
        pool["formula_charge"], pool["formula_discharge"], pool["working_ion"], ion_table
    )
    capacity = np.asarray(pairs.capacity_grav_mah_g, dtype=np.float64)
    if "capacity_grav" in pool.columns:
        table = pd.to_numeric(pool["capacity_grav"], errors="coerce").to_numpy(dtype=np.float64)
        capacity = np.where(np.isfinite(table), table, capacity)
    low, high = window if window is not None else (-np.inf, np.inf)
    feasible = (voltage >= low) & (voltage <= high)
    if not feasible.any():
        raise DiscoveryError(
            f"{path}: no row of the ions {', '.join(ions)} has a voltage inside the window "
            f"{low:g}–{high:g} V"
        )
    values = np.c_[voltage, capacity]
    ref = reference_point(values[feasible], MAXIMIZE, names=OBJECTIVES)
    max_hv = float(hypervolume(values[feasible], ref, MAXIMIZE))
    on_front = np.zeros(len(pool), dtype=bool)
    on_front[feasible] = pareto_mask(values[feasible], MAXIMIZE)
    keep = [
        c
        for c in (
            "candidate_id",
            "battery_id",
            "working_ion",
            "formula_charge",
            "formula_discharge",
        )
        if c in pool.columns
    ]
    return BenchmarkPool(
        frame=pool[keep].copy(),
        voltage=voltage,
        capacity=capacity,
        feasible=feasible,
        window=(float(low), float(high)),
        ref_point=(float(ref[0]), float(ref[1])),
        max_hypervolume=max_hv,
        front=frozenset(pool["candidate_id"][on_front]),
    )
