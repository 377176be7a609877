"""Train/test splits that keep every electrode framework (``battery_id``) on one side.

:func:`framework_labels` gives a stricter grouping for :func:`group_split`: the framework's
composition, so that no composition a model saw in training (under another ``battery_id``: a
polymorph, or the same host with another working ion) reaches the test side.
"""

from __future__ import annotations

__all__ = ["framework_labels", "group_split", "random_split"]

from collections.abc import Sequence

import numpy as np

from discovery.chemistry.formula import framework, parse_formula
from discovery.errors import FormulaError


def group_split(
    groups: Sequence[object] | np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split row positions so that rows sharing a group label never straddle the split.

    Groups are shuffled with ``seed`` and taken into the test side until it holds about
    ``test_fraction`` of the rows. Returns sorted ``(train_rows, test_rows)`` int arrays.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    if len(labels) < 2:
        raise ValueError("a grouped split needs at least two distinct groups")
    order = np.random.default_rng(seed).permutation(len(labels))
    sizes = np.bincount(inverse, minlength=len(labels))
    target = test_fraction * len(inverse)
    cumulative = np.cumsum(sizes[order])
    n_test_groups = max(1, min(len(labels) - 1, int(np.searchsorted(cumulative, target)) + 1))
    is_test_group = np.zeros(len(labels), dtype=bool)
    is_test_group[order[:n_test_groups]] = True
    test = is_test_group[inverse]
    return np.flatnonzero(~test), np.flatnonzero(test)


def random_split(n_rows: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n_rows`` row positions at random; returns sorted ``(train_rows, test_rows)``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n_rows)
    n_test = max(1, round(test_fraction * n_rows))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def framework_labels(formula_charge: Sequence[str], working_ion: Sequence[str] | str) -> np.ndarray:
    """One label per row: the composition of the framework, as atom fractions.

    The framework is the charged formula without its working ion, normalized to one atom
    (``LiFePO4`` and ``FePO4`` -> ``"Fe0.1667 O0.6667 P0.1667"``, elements sorted). Rows with
    the same label hold the same framework composition, which a composition-only model cannot tell
    apart: polymorphs (each its own ``battery_id``) and one host with several working ions
    (Materials Project gives each ion its own ``battery_id``). Raises
    :class:`~discovery.errors.FormulaError`, naming the row (0-based), for a formula that does not
    parse or holds nothing but the working ion.
    """
    ions = [working_ion] * len(formula_charge) if isinstance(working_ion, str) else working_ion
    if len(ions) != len(formula_charge):
        raise ValueError(f"{len(formula_charge)} formulas but {len(ions)} working ions")
    labels: dict[tuple[str, str], str] = {}  # each distinct (formula, ion) pair parsed once
    for row, pair in enumerate(zip(formula_charge, ions)):
        if pair not in labels:
            try:
                parsed = parse_formula(pair[0])
            except FormulaError as err:
                raise FormulaError(pair[0], f"row {row}: {err.reason}") from err
            amounts = framework(parsed, pair[1])
            total = sum(amounts.values())
            if total <= 0:
                raise FormulaError(pair[0], f"row {row}: no framework besides the ion {pair[1]}")
            labels[pair] = " ".join(f"{el}{a / total:.4f}" for el, a in sorted(amounts.items()))
    return np.array([labels[pair] for pair in zip(formula_charge, ions)], dtype=object)
