"""``python -m bench``: every benchmark, each in its own process so peak memory is its own."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "bench.bench_features",
    "bench.bench_surrogate",
    "bench.bench_inference",
    "bench.bench_space",
    "bench.bench_campaign",
    "bench.bench_ray",
)


def main() -> int:
    failed = []
    for module in BENCHMARKS:
        print(f"\n=== {module}", flush=True)
        if subprocess.call([sys.executable, "-m", module]) != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
