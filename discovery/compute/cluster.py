"""Scoring on long-lived Ray actors: :class:`RayScorer` and :func:`connect`.

Each round the ensemble goes to the object store once, as the bytes of ``DeepEnsemble.save``
(a tensor-only ``weights.pt``, loaded back with ``weights_only=True``, and ``manifest.json``);
the pool's feature matrix goes there once per scorer (once per campaign run). A chunk of
``chunk_rows`` pool rows is one actor call carrying only its row indices; the actor keeps the
latest model and pool it has read, on the GPU when Ray gave it one and CUDA is present, on the
CPU otherwise. Each worker has a few chunks in flight and gets the next one as soon as one
returns, so faster workers take more chunks.

Faults: an actor whose process dies is restarted by Ray (:data:`MAX_RESTARTS`) and the calls
it had in flight are re-run there (:data:`MAX_TASK_RETRIES`). A chunk whose call still fails
(the actor is gone for good) goes back to the queue for the other workers, at most
:data:`MAX_CHUNK_ATTEMPTS` times. Results are written by chunk index, once: a chunk that came
back twice or never would be an error, not a silent gap.
"""

from __future__ import annotations

__all__ = [
    "MAX_CHUNK_ATTEMPTS",
    "MAX_RESTARTS",
    "MAX_TASK_RETRIES",
    "RayScorer",
    "ScoreStats",
    "ScoringWorker",
    "connect",
]

import math
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError

from discovery.compute.scoring import ComputeError

if TYPE_CHECKING:
    import pandas as pd

    from discovery.chemistry.ions import IonTable
    from discovery.surrogate.ensemble import DeepEnsemble

#: Restarts Ray grants a scoring actor whose process died.
MAX_RESTARTS = 4
#: Times Ray re-runs a call that an actor's death interrupted (on the restarted actor).
MAX_TASK_RETRIES = 2
#: Submissions of one chunk before scoring gives up (after Ray's own retries).
MAX_CHUNK_ATTEMPTS = 3
#: Chunks each worker has queued or running at once.
IN_FLIGHT = 2


def connect(address: str | None, *, num_cpus: float | None = None) -> bool:
    """Connect this process to Ray. Returns True when this call did it (close it with
    ``ray.shutdown()``), False when Ray was already initialized here.

    ``address`` None: the cluster named by ``RAY_ADDRESS`` if set, else a new Ray instance on
    this machine with ``num_cpus`` logical CPUs (at least the machine's cores) and the GPUs Ray
    detects. ``"auto"`` or ``host:port``: an existing cluster (``ray start --head``).
    """
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    try:
        if address is None:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network from a laptop run
            cores = max(os.cpu_count() or 1, math.ceil(num_cpus or 0))
            ray.init(num_cpus=cores, include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise ComputeError(f"compute.address: cannot connect to {where}: {exc}") from exc
    return True


@dataclass
class ScoreStats:
    """Bookkeeping of the last scoring call (tests and benchmarks read it).

    Attributes:
        chunks: chunks of the call, each written exactly once.
        per_worker: chunks each worker returned (sums to ``chunks``).
        pids: the processes that returned chunks, per worker (a restarted actor adds one).
        resubmitted: chunks sent again after their worker was lost for good.
        seconds: wall time of the call, s.
    """

    chunks: int = 0
    per_worker: list[int] = field(default_factory=list)
    pids: list[set[int]] = field(default_factory=list)
    resubmitted: int = 0
    seconds: float = 0.0


class ScoringWorker:
    """The body of a scoring actor (created by :class:`RayScorer` with ``ray.remote``)."""

    def __init__(self, index: int, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.index = index
        self.device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
        self._model_key: str | None = None
        self._model: DeepEnsemble | None = None
        self._data_key: str | None = None
        self._data: Any = None

    def info(self) -> dict[str, Any]:
        """Where this actor runs: pid, node id, Ray's GPU ids, CUDA_VISIBLE_DEVICES, device."""
        return {
            "index": self.index,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device": self.device,
        }

    def _ensemble(self, ref: list[ray.ObjectRef]) -> DeepEnsemble:
        key = ref[0].hex()
        if key != self._model_key:
            from discovery.surrogate.ensemble import DeepEnsemble

            files: dict[str, bytes] = ray.get(ref[0])
            with tempfile.TemporaryDirectory() as tmp:
                for name, blob in files.items():
                    (Path(tmp) / name).write_bytes(blob)
                self._model = DeepEnsemble.load(tmp).to(self.device)
            self._model_key = key
        assert self._model is not None
        return self._model

    def _cached(self, ref: list[ray.ObjectRef]) -> Any:
        key = ref[0].hex()
        if key != self._data_key:
            self._data, self._data_key = None, None  # drop the old pool before reading the new
            self._data, self._data_key = ray.get(ref[0]), key
        return self._data

    def score_rows(
        self,
        model: list[ray.ObjectRef],
        pool: list[ray.ObjectRef],
        chunk: int,
        rows: np.ndarray,
        chunk_rows: int,
    ) -> tuple[int, int, np.ndarray, np.ndarray]:
        """(chunk, pid, mean, std) for the pool rows ``rows``."""
        pred = self._ensemble(model).predict(self._cached(pool)[rows], chunk_rows=chunk_rows)
        return chunk, os.getpid(), pred.mean, pred.std

    def score_table(
        self,
        model: list[ray.ObjectRef],
        ions: list[ray.ObjectRef],
        chunk: int,
        frame: pd.DataFrame,
        chunk_rows: int,
    ) -> tuple[int, int, np.ndarray, np.ndarray]:
        """(chunk, pid, mean, std) of candidates featurized here (``electrode_features``)."""
        from discovery.features import electrode_features

        x = electrode_features(frame, self._cached(ions)).values
        pred = self._ensemble(model).predict(x, chunk_rows=chunk_rows)
        return chunk, os.getpid(), pred.mean, pred.std


def _model_files(ensemble: DeepEnsemble) -> dict[str, bytes]:
    """The files of ``ensemble.save`` as bytes: tensors and a JSON manifest, no pickled code."""
    with tempfile.TemporaryDirectory() as tmp:
        ensemble.save(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir()}


class RayScorer:
    """Scores pool chunks on ``workers`` Ray actors (see the module docstring).

    Args:
        address: None (``RAY_ADDRESS`` or a new local Ray), ``"auto"`` or ``host:port``.
        workers: scoring actors, each with ``cpus_per_worker`` CPUs (torch threads) and
            ``gpus_per_worker`` GPUs (may be fractional).
        progress: called as ``progress(done, total)`` after every returned chunk.
        ready_timeout_s: seconds to wait for the actors to start before failing (a cluster
            without the resources would otherwise wait forever).
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int = 1,
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float = 0.0,
        progress: Callable[[int, int], None] | None = None,
        ready_timeout_s: float = 120.0,
    ) -> None:
        self.workers, self.cpus, self.gpus = workers, cpus_per_worker, gpus_per_worker
        self.progress = progress
        self.ready_timeout_s = ready_timeout_s
        self.stats = ScoreStats()
        self._owns_ray = connect(address, num_cpus=workers * cpus_per_worker)
        self._actors: list[Any] = [None] * workers
        self._pool_array: np.ndarray | None = None
        self._pool_ref: ray.ObjectRef | None = None
        try:
            self._check_resources()
            self._start_missing()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ actors
    def _check_resources(self) -> None:
        """Fail at once when no node of the cluster could ever host one worker."""
        nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
        for name, per in (("CPU", self.cpus), ("GPU", self.gpus)):
            largest = max((r.get(name, 0.0) for r in nodes), default=0.0)
            if per > largest:
                field_ = "cpus_per_worker" if name == "CPU" else "gpus_per_worker"
                raise ComputeError(
                    f"compute.{field_}: each worker asks for {per:g} {name}, the largest node of "
                    f"the Ray cluster has {largest:g}"
                )

    def _start_missing(self) -> None:
        """Create the actors that do not exist (first call, or lost for good) and wait for them."""
        remote = ray.remote(ScoringWorker)
        new = []
        for i, actor in enumerate(self._actors):
            if actor is None:
                self._actors[i] = remote.options(
                    num_cpus=self.cpus,
                    num_gpus=self.gpus,
                    max_restarts=MAX_RESTARTS,
                    max_task_retries=MAX_TASK_RETRIES,
                    scheduling_strategy="SPREAD",  # one per node where it can
                ).remote(i, int(self.cpus))
                new.append(self._actors[i].info.remote())
        if not new:
            return
        ready, _ = ray.wait(new, num_returns=len(new), timeout=self.ready_timeout_s)
        if len(ready) < len(new):
            raise ComputeError(
                f"compute.workers: {len(new) - len(ready)} of {len(new)} Ray worker(s) "
                f"({self.cpus:g} CPU, {self.gpus:g} GPU each) did not start within "
                f"{self.ready_timeout_s:g} s; the cluster has {ray.available_resources()} free"
            )
        ray.get(ready)

    def worker_info(self) -> list[dict[str, Any]]:
        """``ScoringWorker.info`` of every actor: pid, node, GPU ids, CUDA_VISIBLE_DEVICES, device."""
        self._start_missing()
        return list(ray.get([a.info.remote() for a in self._actors]))

    def close(self) -> None:
        """Kill the actors, drop the pool from the object store, disconnect if we connected."""
        for actor in getattr(self, "_actors", []):
            if actor is not None and ray.is_initialized():
                ray.kill(actor, no_restart=True)
        self._actors = [None] * self.workers
        self._pool_array, self._pool_ref = None, None
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False

    # ------------------------------------------------------------------ scoring
    def predict(
        self, ensemble: DeepEnsemble, features: np.ndarray, rows: np.ndarray, chunk_rows: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std (len(rows), T) float32 of pool rows ``rows``, scored on the actors.

        ``features`` is sent to the object store the first time this array object is seen
        (the campaign passes the same pool matrix every round); the model on every call.
        """
        if features is not self._pool_array:
            self._pool_ref = None  # release the previous pool first
            self._pool_ref = ray.put(np.ascontiguousarray(features, dtype=np.float32))
            self._pool_array = features
        pool, model = [self._pool_ref], [ray.put(_model_files(ensemble))]
        rows = np.asarray(rows, dtype=np.int64)

        def call(actor: Any, chunk: int) -> ray.ObjectRef:
            part = rows[chunk * chunk_rows : (chunk + 1) * chunk_rows]
            return actor.score_rows.remote(model, pool, chunk, part, chunk_rows)

        return self._gather(ensemble, len(rows), chunk_rows, call)

    def score_table(
        self,
        ensemble: DeepEnsemble,
        table: pd.DataFrame,
        ions: IonTable | None = None,
        *,
        chunk_rows: int = 1024,
        rows_per_task: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Featurize (``electrode_features``) and score a candidate table on the actors.

        ``table`` has ``formula_charge``, ``formula_discharge``, ``working_ion``; the model must
        take exactly the electrode features. Each call handles ``rows_per_task`` rows (default
        ``chunk_rows``), sent as its own small object; returns mean and std in table order.
        """
        from discovery.chemistry.ions import DEFAULT_IONS

        columns = ["formula_charge", "formula_discharge", "working_ion"]
        frame = table[columns].reset_index(drop=True)
        step = rows_per_task or chunk_rows
        model, ion_ref = [ray.put(_model_files(ensemble))], [ray.put(ions or DEFAULT_IONS)]

        def call(actor: Any, chunk: int) -> ray.ObjectRef:
            part = frame.iloc[chunk * step : (chunk + 1) * step]
            return actor.score_table.remote(model, ion_ref, chunk, part, chunk_rows)

        return self._gather(ensemble, len(frame), step, call)

    def _gather(
        self,
        ensemble: DeepEnsemble,
        n: int,
        step: int,
        call: Callable[[Any, int], ray.ObjectRef],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run chunk calls ``call(actor, chunk)`` over ``n`` rows in chunks of ``step``; place
        each result by its chunk index (see the module docstring for retries)."""
        start = time.perf_counter()
        self._start_missing()
        t = len(ensemble.target_names)
        mean, std = np.empty((n, t), dtype=np.float32), np.empty((n, t), dtype=np.float32)
        n_chunks = -(-n // step)
        stats = ScoreStats(n_chunks, [0] * self.workers, [set() for _ in range(self.workers)])
        self.stats = stats
        todo: deque[int] = deque(range(n_chunks))
        attempts = [0] * n_chunks
        done = np.zeros(n_chunks, dtype=bool)
        running: dict[ray.ObjectRef, tuple[int, int]] = {}

        def submit(worker: int) -> None:
            chunk = todo.popleft()
            attempts[chunk] += 1
            running[call(self._actors[worker], chunk)] = (chunk, worker)

        for _ in range(IN_FLIGHT):
            for w in range(self.workers):
                if todo:
                    submit(w)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            chunk, worker = running.pop(ready[0])
            try:
                got, pid, m, s = ray.get(ready[0])
            except RayTaskError as exc:  # the scoring code raised: no retry helps
                raise ComputeError(f"scoring chunk {chunk} failed on a Ray worker: {exc}") from exc
            except RayActorError as exc:  # Ray's restarts and retries are spent for this actor
                if attempts[chunk] >= MAX_CHUNK_ATTEMPTS:
                    raise ComputeError(
                        f"chunk {chunk} was lost {attempts[chunk]} times (workers died): {exc}"
                    ) from exc
                self._actors[worker] = None
                stats.resubmitted += 1
                todo.appendleft(chunk)
                alive = [w for w, a in enumerate(self._actors) if a is not None]
                if not alive:
                    raise ComputeError(f"every Ray scoring worker died: {exc}") from exc
                submit(min(alive, key=lambda w: sum(v[1] == w for v in running.values())))
                continue
            if got != chunk or done[chunk]:
                raise ComputeError(f"chunk {chunk} came back twice or as chunk {got}")
            done[chunk] = True
            lo = chunk * step
            mean[lo : lo + len(m)], std[lo : lo + len(m)] = m, s
            stats.per_worker[worker] += 1
            stats.pids[worker].add(pid)
            if self.progress is not None:
                self.progress(int(done.sum()), n_chunks)
            if todo and self._actors[worker] is not None:
                submit(worker)
        if not done.all():  # pragma: no cover - guarded by the loop above
            raise ComputeError(f"chunks {np.flatnonzero(~done)[:5].tolist()} were never scored")
        stats.seconds = time.perf_counter() - start
        return mean, std
