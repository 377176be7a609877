"""One campaign round end to end, and the memory of a round on a million candidates.

A round is what ``discover run`` does between two oracle batches: retrain the 32-member ensemble on
every labeled row (the shared Materials Project table, ~4,200 valid rows), score the whole pool,
choose a batch of 8 by qLogNEHVI on the short list, record it in the ledger. The pool is a table of
generated candidates (``bench.bench_space``'s frameworks, seven ions, charge balanced), sampled to
100,000 rows (and 1,000,000 for the memory figure) and written to ``bench/out/`` as parquet, so
the round also validates and featurizes it. Each size runs in its own process; the figures are the
wall time of :meth:`Campaign.run` for one round, split by phase, and the process's peak RSS.

Targets (issue 3, 2 cores): a round on 100,000 candidates in <= 60 s; a 1,000,000-candidate pool
under 8 GiB peak memory.

After the round, the same process times a warm-started retraining
(:func:`discovery.surrogate.retrain_electrode_model` from the round's saved model, on the same
rows: what the next round's training costs when it fine-tunes instead of training from
scratch), and reports the round time with it in place of the full training.

Run: ``python -m bench.bench_campaign [--sizes 100000,1000000] [--encoding standard]`` (the
surrogate's input encoding; default the model's default, mixed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import OUT, REPO, peak_rss_gib, print_table, save, shared_csv_or_exit


def _pool(size: int) -> Path:
    """A parquet pool of ``size`` generated candidates (cached under bench/out/)."""
    path = OUT / f"pool-{size}.parquet"
    if path.is_file():
        return path
    from bench.bench_space import frameworks
    from discovery.space import generate_pool

    pool = generate_pool(frameworks(), ["Li", "Na", "K", "Mg", "Ca", "Zn", "Al"])
    if len(pool) > size:
        pool = pool.sample(n=size, random_state=0)
    OUT.mkdir(parents=True, exist_ok=True)
    pool[["candidate_id", "working_ion", "formula_charge", "formula_discharge"]].reset_index(
        drop=True
    ).to_parquet(path)
    return path


def one_round(size: int, encoding: str = "mixed") -> dict[str, float]:
    """Run one qLogNEHVI round on a pool of ``size`` candidates; phase times in s, peak RSS."""
    from discovery.campaign import Campaign, CampaignSpec
    from discovery.campaign.progress import Reporter

    data = shared_csv_or_exit().resolve()
    pool = _pool(size).resolve()
    marks: list[tuple[str, float]] = []

    class Clock(Reporter):
        def line(self, text: str) -> None:
            marks.append((text, time.perf_counter()))

    spec = CampaignSpec.model_validate(
        {
            "name": "bench-round",
            "ions": ["Li", "Na", "K", "Mg", "Ca", "Zn", "Al"],
            "space": {"kind": "table", "path": str(pool)},
            "initial_data": {"path": str(data)},
            "constraints": [{"name": "average_voltage", "min": 1.5, "max": 4.5}],
            "batch_size": 8,
            "budget": {"rounds": 1},
            "oracle": {"name": "replay", "options": {"path": str(data)}},
            "surrogate": {"input_encoding": encoding},
        }
    )
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        Campaign(spec, base_dir=REPO, workdir=workdir, reporter=Clock()).run()
        total = time.perf_counter() - start
        warm_s = _warm_retrain_seconds(spec, Path(workdir), data)
    pool_ready = next(t for text, t in marks if text.startswith("candidate pool"))
    choosing = next(t for text, t in marks if "choosing" in text)
    proposed = next(t for text, t in marks if "proposed" in text)
    train_s = choosing - pool_ready
    return {
        "candidates": size,
        "prepare_s": pool_ready - start,
        "train_s": train_s,
        "propose_s": proposed - choosing,
        "round_s": total,
        "warm_train_s": warm_s,
        "warm_round_s": total - train_s + warm_s,
        "peak_rss_gib": peak_rss_gib(),
    }


def _warm_retrain_seconds(spec: Any, workdir: Path, data: Path) -> float:
    """Seconds to fine-tune the round's saved model on the same rows (a warm-started retraining)."""
    from discovery.data import load_electrodes
    from discovery.surrogate import DeepEnsemble, retrain_electrode_model

    previous = DeepEnsemble.load(next((workdir / "models").iterdir()))
    frame = load_electrodes(data, drop_invalid=True)  # every valid row, as the round trained on
    start = time.perf_counter()
    model = retrain_electrode_model(
        frame, previous, warm_start=True, config=spec.surrogate.to_config(seed=spec.seed + 1)
    )
    seconds = time.perf_counter() - start
    if model.metadata["retraining"] != "warm-start":
        raise SystemExit(f"warm start refused: {model.metadata.get('warm_start_refused')}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument(
        "--encoding", choices=("mixed", "standard", "piecewise_linear"), default="mixed"
    )
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_round(args.child, args.encoding)))
        return
    shared_csv_or_exit()
    rows = []
    figures = {}
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.bench_campaign",
                "--child",
                str(size),
                "--encoding",
                args.encoding,
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        if out.returncode != 0:
            raise SystemExit(f"round on {size} candidates failed:\n{out.stderr[-3000:]}")
        fig = json.loads(out.stdout.strip().splitlines()[-1])
        figures[str(size)] = fig
        rows.append(
            [
                f"{size:,}",
                fig["prepare_s"],
                fig["train_s"],
                fig["propose_s"],
                fig["round_s"],
                fig["warm_train_s"],
                fig["warm_round_s"],
                fig["peak_rss_gib"],
            ]
        )
    print_table(
        f"one campaign round, qLogNEHVI, batch 8, 32 members, {args.encoding} encoding "
        f"({os.cpu_count()} cores)",
        [
            "pool",
            "validate+featurize s",
            "train s",
            "score+choose s",
            "round s",
            "warm train s",
            "round warm s",
            "peak GiB",
        ],
        rows,
    )
    name = "bench_campaign" if args.encoding == "mixed" else f"bench_campaign-{args.encoding}"
    print(f"\nsaved {save(name, figures)}")


if __name__ == "__main__":
    main()
