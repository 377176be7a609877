"""Where the ensemble scores a candidate pool: in this process or on Ray actors.

A :class:`Scorer` turns ``(ensemble, pool features, rows)`` into the mixture mean and std of
those rows, in their order. :class:`LocalScorer` calls ``DeepEnsemble.predict`` here;
:class:`~discovery.compute.cluster.RayScorer` sends the weights to the Ray object store once per
round and the pool once per run, and has long-lived actors score chunks of ``chunk_rows`` rows
(on a GPU where Ray gives them one). :func:`make_scorer` picks one from a campaign's ``compute``
section. :func:`~discovery.compute.tasks.submit_task` runs one oracle calculation as a Ray task
with its own resource request. See ``docs/scaling.md``.

Importing this package does not import Ray; ``discovery.compute.cluster`` and the task helpers
import it when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from discovery.compute.scoring import (
    SCORE_BLOCK,
    ComputeError,
    LocalScorer,
    Scorer,
    make_scorer,
)

if TYPE_CHECKING:
    from discovery.compute.cluster import RayScorer, ScoreStats, connect
    from discovery.compute.tasks import TaskFailed, TaskHandle, finished, submit_task

__all__ = [
    "SCORE_BLOCK",
    "ComputeError",
    "LocalScorer",
    "RayScorer",
    "ScoreStats",
    "Scorer",
    "TaskFailed",
    "TaskHandle",
    "connect",
    "finished",
    "make_scorer",
    "submit_task",
]

_LAZY = {
    "RayScorer": "discovery.compute.cluster",
    "ScoreStats": "discovery.compute.cluster",
    "connect": "discovery.compute.cluster",
    "TaskFailed": "discovery.compute.tasks",
    "TaskHandle": "discovery.compute.tasks",
    "finished": "discovery.compute.tasks",
    "submit_task": "discovery.compute.tasks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
