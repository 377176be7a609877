"""Retrospective benchmarks of acquisition strategies, and transfer of surrogates across ions.

- :func:`run_benchmark` (``discover benchmark``): campaigns of several strategies on the same
  seeds, replayed from a labeled table, with hypervolume, front and surrogate-error traces, the
  acceleration and enhancement factors over random, and plots.
- :func:`run_transfer` (``discover benchmark transfer``): voltage learning curves on a target
  ion, pre-trained on the other ions and fine-tuned against trained on the target alone, and the
  permutation importance of the composition features per ion.

Heavy modules are imported on first use (PEP 562), so importing this package stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from discovery.benchmark.metrics import (
        acceleration_factor,
        calls_to_reach,
        enhancement_factor,
        summarize_acceleration,
    )
    from discovery.benchmark.pool import BenchmarkPool, load_benchmark_pool
    from discovery.benchmark.runner import BenchmarkConfig, BenchmarkResult, run_benchmark
    from discovery.benchmark.transfer import TransferConfig, TransferResult, run_transfer

_WHERE = {
    "acceleration_factor": "discovery.benchmark.metrics",
    "calls_to_reach": "discovery.benchmark.metrics",
    "enhancement_factor": "discovery.benchmark.metrics",
    "summarize_acceleration": "discovery.benchmark.metrics",
    "BenchmarkPool": "discovery.benchmark.pool",
    "load_benchmark_pool": "discovery.benchmark.pool",
    "BenchmarkConfig": "discovery.benchmark.runner",
    "BenchmarkResult": "discovery.benchmark.runner",
    "run_benchmark": "discovery.benchmark.runner",
    "TransferConfig": "discovery.benchmark.transfer",
    "TransferResult": "discovery.benchmark.transfer",
    "run_transfer": "discovery.benchmark.transfer",
}

__all__ = [
    "BenchmarkConfig",
    "BenchmarkPool",
    "BenchmarkResult",
    "TransferConfig",
    "TransferResult",
    "acceleration_factor",
    "calls_to_reach",
    "enhancement_factor",
    "load_benchmark_pool",
    "run_benchmark",
    "run_transfer",
    "summarize_acceleration",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
