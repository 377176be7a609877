"""Magpie featurization throughput: discovery.features.magpie against matminer, from formula strings.

Formulas: every distinct ``formula_charge`` / ``formula_discharge`` of the shared Materials Project
table plus the same formulas with every amount multiplied by 2, 3, ... written out (``Fe2O3`` ->
``Fe4O6``), until at least ``--formulas`` distinct strings (synthetic random formulas when the
shared table is absent; the output says which).

* ours: ``magpie(formulas)`` end to end (strings to DataFrame), best of ``--repeats`` runs after a
  warm-up on other formulas (which loads the element table).
* matminer: ``Composition(f)`` for each string, then
  ``ElementProperty.from_preset("magpie").featurize_dataframe`` with ``n_jobs=1`` (matminer's
  default process pool is slower on 2 cores), timed once on a seeded random subset of the same
  formulas and extrapolated per composition; the two results are compared on that subset.
* large: one million formulas made by repeating the list (each distinct string is parsed and
  featurized once, so this mostly measures the de-duplication), and one million distinct formulas
  (more scale factors), the honest unique-only rate.

Run: ``python -m bench.bench_features [--formulas N] [--matminer N] [--large N]``.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bench._common import SHARED_CSV, peak_rss_gib, print_table, save
from discovery.chemistry import ELEMENTS, parse_formula
from discovery.features import magpie


def _scaled(formula: str, factor: int) -> str:
    return "".join(f"{el}{amount * factor:.10g}" for el, amount in parse_formula(formula).items())


def _synthetic(n: int, seed: int) -> list[str]:
    """Random electrode-like formulas (not Materials Project data)."""
    rng = random.Random(seed)
    cations = ["Li", "Na", "K", "Mg", "Ca", "Zn", "Al"]
    metals = [el for el in ELEMENTS[20:31] + ELEMENTS[38:48] + ELEMENTS[56:72]]
    anions = ["O", "S", "F", "(PO4)", "(SO4)", "(SiO4)", "(BO3)", "Se", "N", "Cl"]
    out: dict[str, None] = {}
    while len(out) < n:
        parts = [f"{rng.choice(cations)}{rng.choice(['', '0.5', '2', '1.5', '3'])}"]
        parts += [f"{m}{rng.randint(1, 4)}" for m in rng.sample(metals, rng.randint(1, 3))]
        parts.append(f"{rng.choice(anions)}{rng.randint(1, 12)}")
        out["".join(parts)] = None
    return list(out)


def formula_list(n: int, seed: int = 0) -> tuple[list[str], str]:
    """At least n distinct formulas and a description of where they come from."""
    if not SHARED_CSV.is_file():
        return _synthetic(n, seed), "synthetic random formulas (shared data absent)"
    frame = pd.read_csv(SHARED_CSV, usecols=["formula_charge", "formula_discharge"])
    base = list(pd.unique(pd.concat([frame.formula_charge, frame.formula_discharge])))
    out = dict.fromkeys(base)
    factor = 2
    while len(out) < n:
        out.update(dict.fromkeys(_scaled(f, factor) for f in base))
        factor += 1
    factors = "2" if factor == 3 else f"2..{factor - 1}"
    return list(out), f"{len(base)} distinct shared-data formulas + amounts scaled by {factors}"


def _best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _matminer(formulas: list[str]) -> tuple[pd.DataFrame, float]:
    from matminer.featurizers.composition import ElementProperty
    from pymatgen.core import Composition

    featurizer = ElementProperty.from_preset("magpie")
    featurizer.set_n_jobs(1)
    start = time.perf_counter()
    frame = pd.DataFrame({"composition": [Composition(f) for f in formulas]})
    out = featurizer.featurize_dataframe(frame, "composition", pbar=False)
    seconds = time.perf_counter() - start
    return out.drop(columns="composition"), seconds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--formulas", type=int, default=10_000, help="distinct formulas (>= 10,000)"
    )
    parser.add_argument("--matminer", type=int, default=1_000, help="subset timed with matminer")
    parser.add_argument("--large", type=int, default=1_000_000, help="size of the large runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    formulas, source = formula_list(args.formulas, args.seed)
    magpie(["LiFePO4", "Li3V2(PO4)3", "He"])  # warm-up: loads the element table
    ours_s = _best(lambda: magpie(formulas), args.repeats)

    subset = random.Random(args.seed).sample(formulas, min(args.matminer, len(formulas)))
    reference, matminer_s = _matminer(subset)
    ours_subset = magpie(subset)
    assert list(ours_subset.columns) == list(reference.columns)
    a, b = ours_subset.to_numpy(), reference.to_numpy(dtype=float)
    max_rel = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(float).tiny)))

    repeated = (formulas * (-(-args.large // len(formulas))))[: args.large]
    repeated_s = _best(lambda: magpie(repeated), 1)
    distinct = formula_list(args.large, args.seed)[0][: args.large]
    distinct_s = _best(lambda: magpie(distinct), 1)

    ours_rate = len(formulas) / ours_s
    matminer_rate = len(subset) / matminer_s
    figures: dict[str, Any] = {
        "source": source,
        "cpu_count": os.cpu_count(),
        "n_formulas": len(formulas),
        "ours_seconds": ours_s,
        "ours_comps_per_s": ours_rate,
        "matminer_n_timed": len(subset),
        "matminer_seconds": matminer_s,
        "matminer_comps_per_s": matminer_rate,
        "speedup": ours_rate / matminer_rate,
        "max_rel_diff_vs_matminer": max_rel,
        "large_repeated_n": args.large,
        "large_repeated_distinct": len(formulas),
        "large_repeated_comps_per_s": args.large / repeated_s,
        "large_distinct_n": len(distinct),
        "large_distinct_comps_per_s": len(distinct) / distinct_s,
        "peak_rss_gib": peak_rss_gib(),
    }
    print(f"formulas: {source}; ours is single-threaded ({os.cpu_count()} CPUs available)")
    print_table(
        "Magpie features (132 per composition), end to end from formula strings",
        ["run", "compositions", "seconds", "comps/s"],
        [
            [f"ours, distinct (best of {args.repeats})", len(formulas), ours_s, ours_rate],
            ["matminer, random subset (n_jobs=1)", len(subset), matminer_s, matminer_rate],
            [
                f"ours, {len(formulas)} distinct repeated",
                args.large,
                repeated_s,
                args.large / repeated_s,
            ],
            ["ours, all distinct", len(distinct), distinct_s, len(distinct) / distinct_s],
        ],
    )
    print(
        f"\nspeedup ours/matminer: {figures['speedup']:.0f}x (matminer extrapolated per composition "
        f"from {len(subset)} of the {len(formulas)} formulas); max relative difference on them: "
        f"{max_rel:.3g}; repeated strings are parsed and featurized once; "
        f"peak RSS {figures['peak_rss_gib']:.2f} GiB"
    )
    print(f"figures saved to {save('bench_features', figures)}")
    return figures


if __name__ == "__main__":
    main()
