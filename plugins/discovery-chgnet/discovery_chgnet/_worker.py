"""The worker side: CHGNet loaded once per process, one relaxation per task.

Imported by the worker processes (and preloaded into the forkserver so that workers start with
torch and CHGNet already imported). :func:`init_worker` runs once per worker: one torch thread, the
pretrained model loaded, warnings and CHGNet's prints silenced. :func:`relax_task` relaxes one
structure (cell and positions: CHGNet's StructOptimizer calculator and ASE optimizer, under
ASE's FrechetCellFilter) and returns its record, which it also writes to the cache.
"""

from __future__ import annotations

__all__ = ["init_worker", "relax_structure", "relax_task"]

import contextlib
import io
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from discovery_chgnet.relax import (
    CELL_FILTER,
    MODEL_NAME,
    RelaxSettings,
    chgnet_version,
    read_record,
    write_record,
)

_STATE: dict[str, Any] = {}


def init_worker(device: str = "cpu", threads: int = 1) -> None:
    """Limit torch, BLAS and OpenMP to ``threads`` threads and load CHGNet once for this process.

    The BLAS limit matters as much as torch's: ASE's FrechetCellFilter calls SciPy's matrix
    exponential on 3x3 matrices a dozen times per step, and a multi-threaded OpenBLAS spinning on
    a loaded machine makes each of those calls take milliseconds instead of microseconds.
    """
    warnings.filterwarnings("ignore")
    import scipy.linalg  # noqa: F401  (load the BLAS that threadpoolctl is to limit)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)
    _optimizer(device)


def _optimizer(device: str = "cpu", optimizer: str = "BFGS") -> Any:
    """The process's CHGNet StructOptimizer with the given ASE optimizer (the model is loaded
    once, on first use)."""
    from chgnet.model import CHGNet, StructOptimizer

    if "model" not in _STATE:
        with contextlib.redirect_stdout(io.StringIO()):
            _STATE["model"] = CHGNet.load(model_name=MODEL_NAME, use_device=device, verbose=False)
    key = f"optimizer-{optimizer}"
    if key not in _STATE:
        with contextlib.redirect_stdout(io.StringIO()):
            _STATE[key] = StructOptimizer(
                model=_STATE["model"], optimizer_class=optimizer, use_device=device
            )
    return _STATE[key]


def relax_structure(
    key: str, structure: dict[str, Any], settings: RelaxSettings, device: str = "cpu"
) -> dict[str, Any]:
    """Relax one structure (a pymatgen ``Structure.as_dict()``); return its record.

    The record holds ``key``, ``status`` (``"ok"`` or ``"failed"``), ``message``, ``cacheable``
    (False for exceptions, which may not repeat), ``energy_ev`` (total, eV), ``n_atoms``,
    ``volume_a3`` and ``initial_volume_a3`` (Å^3), ``formula``, ``steps``, ``converged``, ``max_force_ev_per_a``,
    ``seconds`` and ``final_structure`` (as_dict), plus the settings and versions.
    """
    from ase import filters
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    initial = Structure.from_dict(structure)
    record: dict[str, Any] = {
        "key": key,
        "formula": initial.composition.formula.replace(" ", ""),
        "n_atoms": len(initial),
        "fmax_ev_per_a": settings.fmax_ev_per_a,
        "max_steps": settings.max_steps,
        "optimizer": settings.optimizer,
        "max_expansion": settings.max_expansion,
        "cell_filter": CELL_FILTER,
        "model": MODEL_NAME,
        "chgnet": chgnet_version(),
    }
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            threadpool_limits(limits=1),  # see init_worker
        ):
            warnings.simplefilter("ignore")
            opt = _optimizer(device, settings.optimizer)
            atoms = AseAtomsAdaptor().get_atoms(initial)
            atoms.calc = opt.calculator
            cell_filter = getattr(filters, CELL_FILTER)(atoms)
            dyn = opt.optimizer_class(cell_filter, logfile=None)
            converged = bool(dyn.run(fmax=settings.fmax_ev_per_a, steps=settings.max_steps))
            energy = float(atoms.get_potential_energy())
            max_force = float(np.linalg.norm(cell_filter.get_forces(), axis=1).max())
        final = AseAtomsAdaptor.get_structure(atoms)
        for name in list(final.site_properties):
            final.remove_site_property(name)
    except Exception as exc:  # any failure of the calculation is reported, never hidden
        record |= {
            "status": "failed",
            "cacheable": False,
            "message": f"CHGNet raised {type(exc).__name__}: {exc}",
            "seconds": time.perf_counter() - start,
        }
        return record
    expansion = final.volume / initial.volume - 1.0
    record |= {
        "energy_ev": energy,
        "volume_a3": float(final.volume),
        "initial_volume_a3": float(initial.volume),
        "steps": int(dyn.nsteps),
        "converged": converged,
        "max_force_ev_per_a": max_force,
        "seconds": time.perf_counter() - start,
        "final_structure": final.as_dict(),
        "cacheable": True,
    }
    if not math.isfinite(energy) or not math.isfinite(final.volume):
        record |= {"status": "failed", "message": f"non-finite energy ({energy} eV)"}
    elif expansion > settings.max_expansion:
        record |= {
            "status": "failed",
            "message": (
                f"the cell expanded by {expansion:.0%} during relaxation (limit "
                f"{settings.max_expansion:.0%}): layers or slabs came apart, which CHGNet, "
                "without a dispersion term, can favour; no bulk energy"
            ),
        }
    elif not converged:
        record |= {
            "status": "failed",
            "message": (
                f"did not converge within {settings.max_steps} steps (max force "
                f"{max_force:.3g} eV/Å > fmax {settings.fmax_ev_per_a:g} eV/Å)"
            ),
        }
    else:
        record |= {"status": "ok", "message": ""}
    return record


def relax_task(
    key: str,
    structure: dict[str, Any],
    settings: RelaxSettings,
    cache_dir: str,
    device: str = "cpu",
) -> dict[str, Any]:
    """Relax one structure unless the cache already holds it; cache the record when it is final."""
    cached = read_record(Path(cache_dir), key)
    if cached is not None:
        return cached
    record = relax_structure(key, structure, settings, device)
    if record["cacheable"]:
        write_record(Path(cache_dir), record)
    return record
