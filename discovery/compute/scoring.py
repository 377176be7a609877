"""The scorer interface, the local scorer and :func:`make_scorer` (no Ray import on this path)."""

from __future__ import annotations

__all__ = ["SCORE_BLOCK", "ComputeError", "LocalScorer", "Scorer", "make_scorer"]

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from discovery.errors import DiscoveryError

if TYPE_CHECKING:
    from discovery.campaign.spec import ComputeSpec
    from discovery.surrogate.ensemble import DeepEnsemble

#: Rows of the pool the local scorer passes to one ``DeepEnsemble.predict`` call (this bounds
#: the copy of the selected feature rows, 16,384 x 581 float32 = 38 MB, and sets how often the
#: progress bar moves).
SCORE_BLOCK = 16384


class ComputeError(DiscoveryError):
    """Scoring could not run where the ``compute`` section says (Ray missing, unreachable, too
    few resources for the workers, every worker lost)."""


class Scorer(Protocol):
    """Scores rows of a candidate pool with an ensemble; results in the order of ``rows``."""

    def predict(
        self, ensemble: DeepEnsemble, features: np.ndarray, rows: np.ndarray, chunk_rows: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mixture mean and total std, each float32 (len(rows), T) in target units (V, ...),
        of the pool rows ``rows`` of ``features`` (n, d)."""
        ...

    def close(self) -> None:
        """Release workers (no-op locally); the scorer is not used afterwards."""
        ...


class LocalScorer:
    """Scoring in this process: ``DeepEnsemble.predict`` on blocks of :data:`SCORE_BLOCK` rows;
    ``progress(done, total)`` (rows) is called after every block."""

    def __init__(self, progress: Callable[[int, int], None] | None = None) -> None:
        self.progress = progress

    def predict(
        self, ensemble: DeepEnsemble, features: np.ndarray, rows: np.ndarray, chunk_rows: int
    ) -> tuple[np.ndarray, np.ndarray]:
        t = len(ensemble.target_names)
        mean = np.empty((len(rows), t), dtype=np.float32)
        std = np.empty_like(mean)
        for lo in range(0, len(rows), SCORE_BLOCK):
            block = rows[lo : lo + SCORE_BLOCK]
            pred = ensemble.predict(features[block], chunk_rows=chunk_rows)
            mean[lo : lo + len(block)], std[lo : lo + len(block)] = pred.mean, pred.std
            if self.progress is not None:
                self.progress(lo + len(block), len(rows))
        return mean, std

    def close(self) -> None:
        pass


def make_scorer(
    compute: ComputeSpec, progress: Callable[[int, int], None] | None = None
) -> LocalScorer | Scorer:
    """The scorer a campaign's ``compute`` section asks for.

    ``backend: local`` gives a :class:`LocalScorer`; ``backend: ray`` connects to Ray (see
    :class:`discovery.compute.cluster.RayScorer`) and starts the workers now, so a cluster that
    cannot host them fails before any round. ``progress(done, total)`` is called after every
    block scored locally or chunk a Ray worker returns.
    """
    if compute.backend == "local":
        return LocalScorer(progress)
    try:
        from discovery.compute.cluster import RayScorer
    except ImportError as exc:  # pragma: no cover - ray is a dependency, but may be stripped
        raise ComputeError(
            f"compute.backend: 'ray' needs the ray package ({exc}); pip install 'ray>=2.9'"
        ) from exc
    return RayScorer(
        address=compute.address,
        workers=compute.workers,
        cpus_per_worker=compute.cpus_per_worker,
        gpus_per_worker=compute.gpus_per_worker,
        progress=progress,
    )
