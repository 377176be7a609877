"""Inference throughput: 1,000,000 candidate rows through a 32-member ensemble, features precomputed.

The feature rows are the shared table's rows repeated to one million; the model has the default
architecture (weights after two epochs: throughput does not depend on the weight values). Peak
memory is the peak resident set of this process, which runs nothing else.

Run: ``python -m bench.bench_inference [--rows N] [--encoding standard|piecewise_linear]
[--bin-edges quantile]`` (the other input encodings of :data:`discovery.surrogate.ENCODING_PRESETS`
and bin edges of ``EnsembleConfig.bin_edges``; the defaults are mixed and target-aware bins).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from bench._common import peak_rss_gib, print_table, save, shared_csv_or_exit
from discovery.data import load_electrodes
from discovery.features import electrode_features
from discovery.surrogate import ENCODING_PRESETS, DeepEnsemble, EnsembleConfig


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument(
        "--encoding",
        choices=tuple(ENCODING_PRESETS),
        default="mixed",
        help="the input encoding (default: mixed, the model's default)",
    )
    parser.add_argument(
        "--bin-edges",
        choices=("target", "quantile"),
        default="target",
        help="the piecewise-linear encoding's bin edges (default: target, the model's default)",
    )
    args = parser.parse_args(argv)

    frame = load_electrodes(shared_csv_or_exit(), drop_invalid=True)
    features = electrode_features(frame)
    config = replace(
        EnsembleConfig(),
        members=args.members,
        max_epochs=2,
        bin_edges=args.bin_edges,
        **ENCODING_PRESETS[args.encoding],
    )
    model = DeepEnsemble(config).fit(
        features.values,
        frame["average_voltage"].to_numpy(),
        feature_names=features.names,
        target_names=["average_voltage"],
        groups=frame["battery_id"].to_numpy(dtype=str),
    )
    reps = -(-args.rows // len(frame))
    x = np.tile(features.values, (reps, 1))[: args.rows]
    before = peak_rss_gib()
    model.predict(x[:10_000])  # warm-up
    start = time.perf_counter()
    pred = model.predict(x)
    seconds = time.perf_counter() - start
    assert np.isfinite(pred.mean).all()
    figures = {
        "input_encoding": config.input_encoding,
        "bin_edges": config.bin_edges,
        "rows": args.rows,
        "members": args.members,
        "features": x.shape[1],
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "rows_per_s": args.rows / seconds,
        "input_gib": x.nbytes / 2**30,
        "peak_rss_before_gib": before,
        "peak_rss_gib": peak_rss_gib(),
    }
    print_table(
        f"Inference: {args.rows:,} rows x {args.members} members ({x.shape[1]} features, "
        f"{figures['threads']} threads)",
        ["seconds", "rows/s", "input GiB", "peak RSS GiB"],
        [[seconds, figures["rows_per_s"], figures["input_gib"], figures["peak_rss_gib"]]],
    )
    name = "inference" if args.encoding == "mixed" else f"inference-{args.encoding}"
    name += "" if args.bin_edges == "target" else f"-{args.bin_edges}"
    print(f"figures saved to {save(name, figures)}")
    return figures


if __name__ == "__main__":
    main()
