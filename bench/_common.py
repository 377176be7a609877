"""Helpers shared by the benchmark scripts: the shared data path and table printing."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_CSV = REPO.parent / "shared" / "data" / "mp_insertion_electrodes_2019.csv"
OUT = REPO / "bench" / "out"


def shared_csv_or_exit() -> Path:
    """The shared Materials Project table; exits with a message when it is absent."""
    if not SHARED_CSV.is_file():
        raise SystemExit(f"skipped: {SHARED_CSV.relative_to(REPO.parent)} is absent")
    return Path(os.path.relpath(SHARED_CSV))  # relative, so printed figures name no machine path


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, in GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    """Print a plain aligned table."""
    cells = [[str(c) for c in header]] + [
        [f"{c:.4g}" if isinstance(c, float) else str(c) for c in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print(
            "  "
            + "  ".join(
                c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))
            )
        )
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def save(name: str, figures: dict[str, Any]) -> Path:
    """Write figures as JSON under bench/out/ (ignored by git); returns the path from the repo root."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, default=float) + "\n")
    return path.relative_to(REPO)
