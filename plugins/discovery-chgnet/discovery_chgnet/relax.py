"""What a relaxation is (settings, cache key, record) and the on-disk cache of finished ones.

Light on purpose: the campaign process imports this module, the worker processes import
:mod:`discovery_chgnet._worker` (torch, CHGNet) to run relaxations.

A finished relaxation is a JSON *record* in ``<cache_dir>/<key>.json``. The key is a hash of the
input structure (lattice, species, fractional coordinates, rounded to 1e-6), the relaxation
settings (fmax, max steps, optimizer, cell filter, CHGNet model) and the installed chgnet version,
so the same structure relaxed the same way is computed once, by any campaign sharing the cache.
Records are written atomically (a temporary file renamed into place), so a killed worker never
leaves half a record. Relaxations that fail for a reason that would repeat (no convergence within
the step limit, a non-finite energy) are cached too; an exception (which may be transient, such as
running out of memory) is not.
"""

from __future__ import annotations

__all__ = [
    "CELL_FILTER",
    "MODEL_NAME",
    "OPTIMIZERS",
    "RECORD_VERSION",
    "RelaxSettings",
    "chgnet_version",
    "read_record",
    "structure_key",
    "write_record",
]

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pymatgen.core import Structure

#: The pretrained CHGNet model (trained on Materials Project GGA/GGA+U relaxation trajectories).
MODEL_NAME = "0.3.0"
#: ASE optimizers CHGNet's StructOptimizer offers that the oracle allows (BFGS, the default, needs
#: two to three times fewer steps than FIRE on these cells), and the cell filter that relaxes the
#: cell together with the positions.
OPTIMIZERS = ("BFGS", "LBFGS", "FIRE")
CELL_FILTER = "FrechetCellFilter"
#: Version of the record format and checks (part of the cache key: a new version recomputes).
RECORD_VERSION = 2


@dataclass(frozen=True)
class RelaxSettings:
    """How a structure is relaxed.

    Attributes:
        fmax_ev_per_a: convergence when every atomic force, and the cell filter's stress term,
            is below this, in eV/Å.
        max_steps: most optimizer steps; not converged by then is a failed relaxation.
        optimizer: one of :data:`OPTIMIZERS`.
        max_expansion: a relaxation whose cell volume grows by more than this fraction of the
            starting volume fails: layers or slabs have come apart (CHGNet has no dispersion
            term, so an empty layered framework can drift open), and its energy is no bulk energy.
    """

    fmax_ev_per_a: float
    max_steps: int
    optimizer: str = "BFGS"
    max_expansion: float = 0.5


@cache
def chgnet_version() -> str:
    """The installed chgnet package version (part of every cache key)."""
    from importlib.metadata import version

    return version("chgnet")


def structure_key(structure: Structure, settings: RelaxSettings) -> str:
    """The cache key of relaxing ``structure`` with ``settings`` (24 hex digits of SHA-256)."""
    frac = np.round(structure.frac_coords, 6) % 1.0
    payload = {
        "lattice": np.round(structure.lattice.matrix, 6).tolist(),
        "species": [site.specie.symbol for site in structure],
        "frac_coords": np.round(frac, 6).tolist(),
        "fmax_ev_per_a": settings.fmax_ev_per_a,
        "max_steps": settings.max_steps,
        "optimizer": settings.optimizer,
        "max_expansion": settings.max_expansion,
        "record": RECORD_VERSION,
        "cell_filter": CELL_FILTER,
        "model": MODEL_NAME,
        "chgnet": chgnet_version(),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def read_record(cache_dir: Path, key: str) -> dict[str, Any] | None:
    """The cached record of ``key``, or None (absent or unreadable)."""
    path = cache_dir / f"{key}.json"
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("key") == key else None


def write_record(cache_dir: Path, record: dict[str, Any]) -> None:
    """Write a record atomically (temporary file, then rename)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{record['key']}.json"
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, default=_plain))
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays as plain Python numbers and lists (for JSON)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to a cache record")
