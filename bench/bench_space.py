"""Candidate-space throughput: generating and featurizing a pool of a million candidates.

The pool: five host frameworks × site mixings × seven working ions (Li, Na, K, Mg, Ca, Zn, Al) ×
insertion amounts x, charge balanced and de-duplicated by ``discovery.space.generate_pool``:

* ``A_x M O2``, ``A_x M2 (PO4)3`` and ``A_x M F3``: site M mixes up to 3 of 12 metals (Ti V Cr Mn
  Fe Co Ni Cu Nb Mo Al Mg) in steps of 0.05;
* ``A_x M S2``: the same metals in steps of 0.1;
* ``A_x M1 M2 O4``: two sites, each up to 2 of 8 metals in steps of 0.25.

Timed once each (a second run is within a few per cent): ``generate_pool`` (enumeration, charge
filter, formula strings, candidate ids, de-duplication) and ``electrode_features`` on the whole
pool (the float32 feature matrix the surrogate scores), then ``ContinuousSpace.features`` (torch,
double) on points of an NMC-like continuous space. Peak RSS is that of the whole process.

Run: ``python -m bench.bench_space [--continuous N]``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from typing import Any

from bench._common import peak_rss_gib, print_table, save
from discovery.features import electrode_features
from discovery.space import ContinuousSpace, generate_pool

METALS = ["Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Nb", "Mo", "Al", "Mg"]
IONS = ["Li", "Na", "K", "Mg", "Ca", "Zn", "Al"]


@dataclass
class Site:
    elements: list[str]
    max_elements: int = 1
    fraction_step: float = 1.0


@dataclass
class Framework:
    template: str
    sites: dict[str, Site]
    x: list[float]
    name: str | None = None


@dataclass
class Constraint:
    coefficients: dict[str, float]
    min: float | None = None
    max: float | None = None


@dataclass
class ContinuousSpec:
    template: str = "A_x M O2"
    site: str = "M"
    working_ion: str = "Li"
    elements: list[str] = field(default_factory=lambda: ["Ni", "Mn", "Co", "Al"])
    bounds: dict[str, tuple[float, float]] = field(default_factory=lambda: {"Ni": (0.3, 0.9)})
    max_wt_percent: dict[str, float] = field(default_factory=lambda: {"Co": 10.0})
    linear_constraints: list[Constraint] = field(
        default_factory=lambda: [Constraint({"Mn": 1.0, "Co": 1.0}, max=0.5)]
    )
    x: tuple[float, float] = (0.2, 1.0)


def frameworks() -> list[Framework]:
    """The five frameworks of the benchmark pool (see the module docstring)."""
    return [
        Framework("A_x M O2", {"M": Site(METALS, 3, 0.05)}, [0.25, 0.5, 0.75, 1.0]),
        Framework("A_x M2 (PO4)3", {"M": Site(METALS, 3, 0.05)}, [1.0, 2.0, 3.0]),
        Framework("A_x M S2", {"M": Site(METALS, 3, 0.1)}, [0.25, 0.5, 1.0]),
        Framework("A_x M F3", {"M": Site(METALS, 3, 0.05)}, [0.5, 1.0]),
        Framework(
            "A_x M1 M2 O4",
            {"M1": Site(METALS[:8], 2, 0.25), "M2": Site(METALS[:8], 2, 0.25)},
            [0.5, 1.0],
        ),
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--continuous", type=int, default=100_000, help="points for ContinuousSpace.features"
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    pool = generate_pool(frameworks(), IONS)
    generate_s = time.perf_counter() - start
    rss_generate = peak_rss_gib()

    start = time.perf_counter()
    features = electrode_features(pool)
    featurize_s = time.perf_counter() - start
    rss_featurize = peak_rss_gib()
    n = len(pool)
    feature_gib = features.values.nbytes / 2**30
    del features

    import torch

    space = ContinuousSpace(ContinuousSpec())
    points = torch.tensor(space.sample(args.continuous, seed=0))
    start = time.perf_counter()
    space.features(points)
    continuous_s = time.perf_counter() - start

    per_framework = pool["framework"].value_counts().to_dict()
    figures: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "candidates": n,
        "candidates_per_framework": per_framework,
        "generate_seconds": generate_s,
        "generate_rows_per_s": n / generate_s,
        "featurize_seconds": featurize_s,
        "featurize_rows_per_s": n / featurize_s,
        "feature_matrix_gib": feature_gib,
        "peak_rss_after_generate_gib": rss_generate,
        "peak_rss_gib": rss_featurize,
        "continuous_points": args.continuous,
        "continuous_features_per_s": args.continuous / continuous_s,
    }
    print(
        f"pool: {n:,} charge-balanced candidates from {len(per_framework)} frameworks × "
        f"{len(IONS)} ions ({os.cpu_count()} CPUs)"
    )
    print_table(
        "Candidate pool, end to end",
        ["step", "rows", "seconds", "rows/s", "peak RSS GiB"],
        [
            ["generate_pool (ids, de-duplication)", n, generate_s, n / generate_s, rss_generate],
            ["electrode_features (float32)", n, featurize_s, n / featurize_s, rss_featurize],
            [
                "ContinuousSpace.features (torch, double)",
                args.continuous,
                continuous_s,
                args.continuous / continuous_s,
                peak_rss_gib(),
            ],
        ],
    )
    print(
        f"\nfeature matrix {feature_gib:.2f} GiB; peak RSS of the process {peak_rss_gib():.2f} GiB"
    )
    print(f"figures saved to {save('bench_space', figures)}")
    return figures


if __name__ == "__main__":
    main()
