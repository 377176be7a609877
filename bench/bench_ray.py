"""Ray scoring throughput: rows x members per second, in this process and on Ray actors.

CPU mode (default). Pools of 100,000 and 1,000,000 candidates (the shared table's feature rows
repeated, as in ``bench.bench_inference``), a 32-member ensemble of the default architecture
(weights after two epochs; throughput does not depend on their values), chunks of a campaign's
default ``compute.chunk_rows``. Scored side by side in one run: in this process by ``LocalScorer``,
with torch on every core and on one thread (measured first, before the process connects to Ray),
and by ``RayScorer`` on a local Ray instance the benchmark starts, with 1 worker of every core and
with one single-core worker per core. "speed vs local" divides by the every-core local time. A Ray
round is what a campaign round pays: the model to the object store, the chunk calls, gathering in
pool order. Paid once per run and shown apart: "start", the actors' start-up, and "first call", a
one-row call that sends the feature matrix to the object store and has each actor read it and load
the model. Every Ray result is checked against the local one (largest absolute difference printed).

The featurization-included path (``RayScorer.score_table``: the actors featurize table chunks
with ``electrode_features`` and score them) is timed on 100,000 distinct generated candidates
(``bench.bench_space``'s frameworks and ions) against ``electrode_features`` + ``predict`` here,
after a warm-up call on the actors.

GPU mode (``--gpu``, for a machine with a CUDA card and Ray-visible GPUs): 10,000,000 candidates
(the 1.07 M distinct generated candidates, repeated) x 32 members, featurized and scored on the
actors end to end, ``--workers`` actors (default: one per core) sharing the GPUs; target <= 10 s.

Run: ``python -m bench.bench_ray [--sizes 100000,1000000] [--gpu [--rows N --workers W]]``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench._common import peak_rss_gib, print_table, save, shared_csv_or_exit
from discovery.campaign.spec import ComputeSpec
from discovery.compute import LocalScorer
from discovery.data import load_electrodes
from discovery.features import electrode_features
from discovery.surrogate import DeepEnsemble, EnsembleConfig

#: Rows per chunk: what a campaign's ``compute`` section uses unless it says otherwise.
CHUNK_ROWS: int = ComputeSpec().chunk_rows


def _model(members: int) -> tuple[DeepEnsemble, np.ndarray]:
    """A default-architecture ensemble (two epochs) and the shared table's feature rows."""
    frame = load_electrodes(shared_csv_or_exit(), drop_invalid=True)
    features = electrode_features(frame)
    model = DeepEnsemble(replace(EnsembleConfig(), members=members, max_epochs=2)).fit(
        features.values,
        frame["average_voltage"].to_numpy(),
        feature_names=features.names,
        target_names=["average_voltage"],
        groups=frame["battery_id"].to_numpy(dtype=str),
    )
    return model, features.values


def _generated(rows: int) -> pd.DataFrame:
    """``rows`` generated candidates: distinct up to the 1.07 M of the pool, then repeated."""
    from bench.bench_space import IONS, frameworks
    from discovery.space import generate_pool

    pool = generate_pool(frameworks(), IONS)[["working_ion", "formula_charge", "formula_discharge"]]
    if rows <= len(pool):
        return pool.sample(n=rows, random_state=0).reset_index(drop=True)
    reps = -(-rows // len(pool))
    return pd.concat([pool] * reps, ignore_index=True).iloc[:rows]


def _timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cpu(sizes: list[int], members: int) -> dict[str, Any]:
    from discovery.compute.cluster import RayScorer, connect

    cores = os.cpu_count() or 1
    model, base = _model(members)
    pools = {size: np.tile(base, (-(-size // len(base)), 1))[:size] for size in sizes}
    figures: dict[str, Any] = {"cores": cores, "members": members, "chunk_rows": CHUNK_ROWS}
    local: dict[int, tuple[float, np.ndarray]] = {}
    table: dict[int, list[list[Any]]] = {size: [] for size in sizes}
    model.predict(base[:10_000])  # warm-up
    for size, x in pools.items():  # local first, in a process not connected to Ray
        rows = np.arange(size)
        fig: dict[str, Any] = figures.setdefault(str(size), {})
        for threads in (cores, 1):
            torch.set_num_threads(threads)
            seconds, (mean, _) = _timed(
                lambda x=x, rows=rows: LocalScorer().predict(model, x, rows, CHUNK_ROWS)
            )
            fig[f"local_{threads}_threads"] = {
                "round_s": seconds,
                "rows_members_per_s": size * members / seconds,
            }
            if threads == cores:
                local[size] = (seconds, mean)
            ratio = local[size][0] / seconds
            rate = size * members / seconds
            table[size].append([f"{size:,}", "local", f"1 x {threads}", "", "", seconds, rate,
                                ratio, ""])  # fmt: skip
        torch.set_num_threads(cores)
    connect(None, num_cpus=cores)
    for size, x in pools.items():
        rows = np.arange(size)
        for workers, cpus in [(1, float(cores)), (cores, 1.0)]:
            start_s, scorer = _timed(
                lambda w=workers, c=cpus: RayScorer(workers=w, cpus_per_worker=c)
            )
            try:
                first_s, _ = _timed(
                    lambda x=x, s=scorer: s.predict(model, x, np.arange(1), CHUNK_ROWS)
                )
                round_s, (mean, _) = _timed(
                    lambda x=x, rows=rows, s=scorer: s.predict(model, x, rows, CHUNK_ROWS)
                )
                per_worker = scorer.stats.per_worker
            finally:
                scorer.close()
            diff = float(np.abs(mean - local[size][1]).max())
            rate = size * members / round_s
            figures[str(size)][f"ray_{workers}x{cpus:g}"] = {
                "start_s": start_s,
                "first_call_s": first_s,
                "round_s": round_s,
                "rows_members_per_s": rate,
                "vs_local": local[size][0] / round_s,
                "chunks_per_worker": per_worker,
                "max_abs_diff": diff,
            }
            table[size].append([f"{size:,}", "ray", f"{workers} x {cpus:g}", start_s, first_s,
                                round_s, rate, local[size][0] / round_s, f"{diff:.1e}"])  # fmt: skip
    del pools
    print_table(
        f"Scoring, {members} members, chunks of {CHUNK_ROWS} rows ({cores} cores)",
        [
            "pool",
            "where",
            "workers x cores",
            "start s",
            "first call s",
            "round s",
            "rows x members/s",
            "speed vs local",
            "max |diff|",
        ],
        [row for size in sizes for row in table[size]],
    )
    figures["featurized"] = _featurized(model, members, [(1, float(cores)), (cores, 1.0)])
    figures["peak_rss_gib"] = peak_rss_gib()
    return figures


def _featurized(
    model: DeepEnsemble, members: int, layouts: list[tuple[int, float]], size: int = 100_000
) -> dict[str, Any]:
    """Featurize + score ``size`` distinct generated candidates: here, then on the actors."""
    from discovery.compute.cluster import RayScorer

    candidates = _generated(size)
    cores = os.cpu_count() or 1
    figures: dict[str, Any] = {"rows": size}
    table = []
    for threads in (cores, 1):
        torch.set_num_threads(threads)
        seconds, pred = _timed(
            lambda: model.predict(electrode_features(candidates).values, chunk_rows=CHUNK_ROWS)
        )
        local_s = figures.setdefault("local_s", seconds)
        figures[f"local_{threads}_threads_s"] = seconds
        table.append([f"1 x {threads}", "local", seconds, size * members / seconds,
                      local_s / seconds, ""])  # fmt: skip
    torch.set_num_threads(cores)
    for workers, cpus in layouts:
        scorer = RayScorer(workers=workers, cpus_per_worker=cpus)
        try:
            scorer.score_table(model, candidates.iloc[: 2 * workers * CHUNK_ROWS])  # warm-up
            seconds, (mean, _) = _timed(
                lambda s=scorer: s.score_table(model, candidates, chunk_rows=CHUNK_ROWS)
            )
        finally:
            scorer.close()
        diff = float(np.abs(mean - pred.mean).max())
        figures[f"ray_{workers}x{cpus:g}"] = {"seconds": seconds, "max_abs_diff": diff}
        table.append(
            [
                f"{workers} x {cpus:g}",
                "ray",
                seconds,
                size * members / seconds,
                local_s / seconds,
                f"{diff:.1e}",
            ]
        )
    print_table(
        f"Featurize + score {size:,} distinct generated candidates, {members} members",
        ["workers x cores", "where", "seconds", "rows x members/s", "speed vs local", "max |diff|"],
        table,
    )
    return figures


def gpu(rows: int, members: int, workers: int, gpus_per_worker: float, task_rows: int) -> Any:
    """10 M candidates featurized and scored on GPU actors, end to end (after a warm-up)."""
    from discovery.compute.cluster import RayScorer, connect

    if not torch.cuda.is_available():
        raise SystemExit("--gpu: torch sees no CUDA device on this machine")
    model, _ = _model(members)
    candidates = _generated(rows)
    connect(None, num_cpus=workers)
    scorer = RayScorer(workers=workers, cpus_per_worker=1, gpus_per_worker=gpus_per_worker)
    try:
        devices = sorted({i["device"] for i in scorer.worker_info()})
        scorer.score_table(model, candidates.iloc[: workers * task_rows], chunk_rows=task_rows)
        seconds, (mean, _) = _timed(
            lambda: scorer.score_table(
                model, candidates, chunk_rows=task_rows, rows_per_task=task_rows
            )
        )
    finally:
        scorer.close()
    assert np.isfinite(mean).all()
    figures = {
        "rows": rows,
        "members": members,
        "workers": workers,
        "gpus_per_worker": gpus_per_worker,
        "rows_per_task": task_rows,
        "devices": devices,
        "gpu": torch.cuda.get_device_name(0),
        "seconds": seconds,
        "rows_members_per_s": rows * members / seconds,
        "target_s": 10.0,
    }
    print_table(
        f"GPU: featurize + score {rows:,} candidates x {members} members end to end",
        ["workers", "GPU each", "devices", "seconds", "rows x members/s"],
        [[workers, gpus_per_worker, ",".join(devices), seconds, rows * members / seconds]],
    )
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--gpu", action="store_true", help="the 10 M-candidate GPU figure")
    parser.add_argument("--rows", type=int, default=10_000_000, help="--gpu: candidates")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="--gpu: actors")
    parser.add_argument("--gpus-per-worker", type=float, default=None, help="--gpu: default 1/W")
    parser.add_argument("--task-rows", type=int, default=65536, help="--gpu: rows per call")
    args = parser.parse_args(argv)
    if args.gpu:
        share = args.gpus_per_worker or max(torch.cuda.device_count(), 1) / args.workers
        figures = gpu(args.rows, args.members, args.workers, share, args.task_rows)
        print(f"figures saved to {save('bench_ray_gpu', figures)}")
        return figures
    load_before = os.getloadavg()[0]
    figures = cpu([int(s) for s in args.sizes.split(",")], args.members)
    figures["load_avg_1min"] = [load_before, os.getloadavg()[0]]
    print(f"\nload average (1 min) before and after: {load_before:.1f}, {os.getloadavg()[0]:.1f}")
    print(f"figures saved to {save('bench_ray', figures)}")
    return figures


if __name__ == "__main__":
    main()
