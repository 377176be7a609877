"""``discover benchmark transfer``: does a surrogate pre-trained on other ions learn a new ion faster?

For each target ion and each repeat (seed ``k``):

1. **Split.** The target ion's rows are split by ``battery_id`` (:func:`discovery.data.group_split`,
   ``test_fraction`` of the rows, seed ``k``): test rows' frameworks are never trained on. Source
   rows (the other ions; ``--source`` to choose) that share a ``battery_id`` with a test row are
   dropped too, so no test framework is seen by any model.
2. **Pre-train** an ensemble on the source rows (seed ``k``).
3. **Learning curve.** The target's training rows are shuffled (seed ``k``); for each size ``n``
   (0, 10, 25, 50, 100 and all of them by default) the first ``n`` rows train two models:
   ``fine-tuned`` (the pre-trained ensemble trained further on the ``n`` rows with a smaller
   learning rate, :meth:`discovery.surrogate.DeepEnsemble.fit` with ``init``) and ``target-only``
   (the same ensemble trained from scratch on the ``n`` rows). ``n = 0`` is the pre-trained model
   as it is; a target-only model needs rows, so it has no value there. Both are scored on the
   test rows: voltage MAE and RMSE (V) and the fraction inside the 95 % interval.

**Permutation importance** (``importance.csv``): one ensemble trained on a grouped split of every
ion's rows (``test_fraction`` of the frameworks held out, seed 0); for each target ion, its
held-out rows' voltage MAE is recomputed with the columns of one feature group shuffled together
among those rows (``importance_repeats`` shuffles); importance = mean shuffled MAE - MAE (V). The
groups are the 22 Magpie element properties (all statistics of the discharged formula and of the
charge-to-discharge difference, which the model sees; the charged block is not a model input),
the element fractions (``frac:``), the pair quantities (``pair:``) and the formal oxidation states
(``redox:`` and ``ox:``). The ion descriptors are
constant within an ion, so shuffling them among one ion's rows changes nothing; they are left out.
"""

from __future__ import annotations

__all__ = [
    "TransferConfig",
    "TransferResult",
    "feature_groups",
    "permutation_importance",
    "run_transfer",
    "transfer_split",
]

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from discovery.benchmark.runner import default_workers
from discovery.errors import DiscoveryError

if TYPE_CHECKING:
    from discovery.surrogate import DeepEnsemble, EnsembleConfig

#: Ions of the default transfer study (the issue's list).
DEFAULT_TARGETS: tuple[str, ...] = ("Na", "K", "Mg", "Ca", "Zn", "Al")
#: Learning-curve sizes (target rows seen); "all" is added by ``all_rows``.
DEFAULT_SIZES: tuple[int, ...] = (0, 10, 25, 50, 100)
_VOLTAGE = "average_voltage"
_Z95 = 1.959963984540054
_SETTINGS = (
    "data",
    "source_ions",
    "sizes",
    "all_rows",
    "test_fraction",
    "members",
    "hidden",
    "max_epochs",
    "finetune_learning_rate",
    "finetune_epochs",
)


@dataclass(frozen=True)
class TransferConfig:
    """What ``discover benchmark transfer`` runs.

    Attributes:
        data: labeled electrode table (CSV or parquet); invalid rows are dropped.
        targets: target ions.
        out: output directory.
        source_ions: ions to pre-train on; empty: every ion of the table but the target.
        sizes: target rows seen (0 = the pre-trained model alone).
        all_rows: add a point with all the target's training rows.
        repeats: seeds 0 .. repeats-1 (split, pre-training, row order, training).
        test_fraction: fraction of the target's rows (whole frameworks) held out for testing.
        members, hidden, max_epochs: the ensemble of every model (pre-trained, fine-tuned,
            target-only; fine-tuning keeps the network shape).
        finetune_learning_rate: initial learning rate of fine-tuning (pre-training and
            target-only use the ensemble's default, 0.008).
        finetune_epochs: epoch cap of fine-tuning.
        importance: compute the permutation importance.
        importance_repeats: shuffles per feature group.
        workers: parallel processes (one per target and repeat).
    """

    data: Path
    targets: tuple[str, ...]
    out: Path
    source_ions: tuple[str, ...] = ()
    sizes: tuple[int, ...] = DEFAULT_SIZES
    all_rows: bool = True
    repeats: int = 3
    test_fraction: float = 0.3
    members: int = 8
    hidden: tuple[int, ...] = (96, 96, 96)
    max_epochs: int = 120
    finetune_learning_rate: float = 1e-3
    finetune_epochs: int = 100
    importance: bool = True
    importance_repeats: int = 3
    workers: int = field(default_factory=default_workers)

    def __post_init__(self) -> None:
        problems = []
        if not self.targets:
            problems.append("give at least one target ion")
        if set(self.targets) & set(self.source_ions):
            problems.append(
                f"target ions {sorted(set(self.targets) & set(self.source_ions))} are also "
                "source ions"
            )
        if any(n < 0 for n in self.sizes):
            problems.append(f"sizes must be >= 0, got {list(self.sizes)}")
        if self.repeats < 1:
            problems.append(f"repeats must be >= 1, got {self.repeats}")
        if not 0.0 < self.test_fraction < 1.0:
            problems.append(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.finetune_learning_rate <= 0:
            problems.append("finetune_learning_rate must be > 0")
        if self.finetune_epochs < 0:
            problems.append("finetune_epochs must be >= 0")
        if self.workers < 1:
            problems.append(f"workers must be >= 1, got {self.workers}")
        if problems:
            raise DiscoveryError("benchmark transfer: " + "; ".join(problems))

    def ensemble(self, seed: int, *, finetune: bool = False) -> EnsembleConfig:
        """The ensemble config of a model (``finetune``: the fine-tuning learning rate and cap)."""
        from discovery.surrogate import EnsembleConfig

        config = EnsembleConfig(
            members=self.members, hidden=self.hidden, max_epochs=self.max_epochs, seed=seed
        )
        if finetune:
            config = EnsembleConfig(
                **{
                    **asdict(config),
                    "learning_rate": self.finetune_learning_rate,
                    "max_epochs": self.finetune_epochs,
                }
            )
        return config

    def settings(self) -> dict[str, Any]:
        """The settings that define the results, as JSON values."""
        values = asdict(self)
        values["data"] = os.path.abspath(self.data)
        return json.loads(json.dumps({k: values[k] for k in _SETTINGS}))


def transfer_split(
    frame: pd.DataFrame,
    target: str,
    seed: int,
    test_fraction: float,
    source_ions: Sequence[str] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions ``(source, target_train, target_test)`` of one repeat (module docstring).

    The target's rows are split by ``battery_id``; ``target_train`` is shuffled with ``seed``
    (its first ``n`` rows are the ones a model of size ``n`` sees); source rows sharing a
    ``battery_id`` with a test row are left out.
    """
    from discovery.data import group_split

    ions = frame["working_ion"].to_numpy(dtype=object)
    groups = frame["battery_id"].astype(str).to_numpy(dtype=object)
    mine = np.flatnonzero(ions == target)
    if len(np.unique(groups[mine])) < 2:
        raise DiscoveryError(
            f"transfer: the target ion {target} has {len(mine)} row(s) in fewer than two "
            "frameworks (battery_id); a grouped split needs at least two"
        )
    train_pos, test_pos = group_split(groups[mine], test_fraction, seed)
    train = np.random.default_rng(seed).permutation(mine[train_pos])
    test = mine[test_pos]
    source_mask = (ions != target) if not source_ions else np.isin(ions, list(source_ions))
    source_mask &= ~np.isin(groups, np.unique(groups[test]))
    return np.flatnonzero(source_mask), train, test


def _scores(model: DeepEnsemble, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred = model.predict(x)
    mean, std = pred.column(_VOLTAGE)
    err = y - mean
    return {
        "mae_v": float(np.abs(err).mean()),
        "rmse_v": float(np.sqrt((err**2).mean())),
        "coverage_95": float((np.abs(err) <= _Z95 * std).mean()),
    }


@dataclass(frozen=True)
class _Task:
    config: TransferConfig
    target: str
    seed: int
    threads: int


def _frame(data: Path) -> pd.DataFrame:
    from discovery.data import load_electrodes

    frame = load_electrodes(data, drop_invalid=True)
    voltage = pd.to_numeric(frame[_VOLTAGE], errors="coerce")
    return frame[np.isfinite(voltage.to_numpy(dtype=np.float64))].reset_index(drop=True)


def _curve(task: _Task) -> pd.DataFrame:
    """One target and repeat: pre-train, then the learning curve of both arms."""
    import torch

    from discovery.features import electrode_features
    from discovery.surrogate import train_electrode_model

    if task.threads > 0:
        torch.set_num_threads(task.threads)
    config, seed = task.config, task.seed
    frame = _frame(config.data)
    source, train, test = transfer_split(
        frame, task.target, seed, config.test_fraction, config.source_ions
    )
    x_test = electrode_features(frame.iloc[test]).values
    y_test = frame[_VOLTAGE].to_numpy(dtype=np.float64)[test]
    start = time.perf_counter()
    pretrained = train_electrode_model(frame.iloc[source], config=config.ensemble(seed))
    pretrain_s = time.perf_counter() - start
    sizes = sorted({n for n in config.sizes if n <= len(train)})
    if config.all_rows and len(train) not in sizes:
        sizes.append(len(train))
    base = {
        "target": task.target,
        "seed": seed,
        "n_source": len(source),
        "n_test": len(test),
        "n_target_train": len(train),
        "pretrain_seconds": round(pretrain_s, 2),
    }
    rows = []
    for n in sizes:
        label = "all" if config.all_rows and n == len(train) else str(n)
        if n == 0:
            rows.append(
                {
                    **base,
                    "n": 0,
                    "size": label,
                    "arm": "fine-tuned",
                    "seconds": 0.0,
                    **_scores(pretrained, x_test, y_test),
                }
            )
            continue
        subset = frame.iloc[train[:n]]
        for arm in ("fine-tuned", "target-only"):
            start = time.perf_counter()
            try:
                model = train_electrode_model(
                    subset,
                    config=config.ensemble(seed, finetune=arm == "fine-tuned"),
                    init=pretrained if arm == "fine-tuned" else None,
                )
            except ValueError as exc:  # e.g. all n rows from one framework: no validation split
                rows.append(
                    {
                        **base,
                        "n": n,
                        "size": label,
                        "arm": arm,
                        "seconds": math.nan,
                        "mae_v": math.nan,
                        "rmse_v": math.nan,
                        "coverage_95": math.nan,
                        "note": str(exc),
                    }
                )
                continue
            rows.append(
                {
                    **base,
                    "n": n,
                    "size": label,
                    "arm": arm,
                    "seconds": round(time.perf_counter() - start, 2),
                    **_scores(model, x_test, y_test),
                }
            )
    return pd.DataFrame.from_records(rows)


def feature_groups(names: Sequence[str]) -> dict[str, list[int]]:
    """Column positions of each feature group: one per Magpie property (every statistic of the
    discharged formula and of the difference; the charged block is not a model input),
    ``element fractions`` (``frac:``), ``pair quantities`` (``pair:``) and ``oxidation states``
    (``redox:`` and ``ox:``)."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        block, _, rest = name.partition(":")
        if block in ("discharge", "delta") and rest.startswith("MagpieData "):
            prop = rest.split()[-1]
            groups.setdefault(prop, []).append(i)
        elif block == "frac":
            groups.setdefault("element fractions", []).append(i)
        elif block == "pair":
            groups.setdefault("pair quantities", []).append(i)
        elif block in ("redox", "ox"):
            groups.setdefault("oxidation states", []).append(i)
    return groups


def permutation_importance(
    model: DeepEnsemble,
    x: np.ndarray,
    y: np.ndarray,
    groups: dict[str, list[int]],
    repeats: int,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean increase of the voltage MAE (V) when a group's columns are shuffled together.

    Args:
        model: a trained ensemble whose first target is voltage.
        x: raw features of the held-out rows, (n, d).
        y: their true voltages (V), (n,).
        groups: column positions per group (:func:`feature_groups`).
        repeats: shuffles per group (the same row permutation for every column of a group).

    Returns:
        Columns ``group``, ``n_features``, ``importance_v`` (mean over shuffles) and
        ``importance_std_v``, sorted by importance, largest first.
    """
    rng = np.random.default_rng(seed)
    base = float(np.abs(model.predict(x).mean[:, 0] - y).mean())
    rows = []
    for name, cols in groups.items():
        increases = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, cols] = x[rng.permutation(len(x))][:, cols]
            increases.append(float(np.abs(model.predict(shuffled).mean[:, 0] - y).mean()) - base)
        rows.append(
            {
                "group": name,
                "n_features": len(cols),
                "importance_v": float(np.mean(increases)),
                "importance_std_v": float(np.std(increases)),
            }
        )
    out = pd.DataFrame.from_records(rows).sort_values("importance_v", ascending=False)
    out.attrs["mae_v"] = base
    return out.reset_index(drop=True)


def _importance(task: _Task) -> pd.DataFrame:
    """Permutation importance per target ion of one all-ion model (module docstring)."""
    import torch

    from discovery.data import group_split
    from discovery.features import electrode_features
    from discovery.surrogate import train_electrode_model

    if task.threads > 0:
        torch.set_num_threads(task.threads)
    config = task.config
    frame = _frame(config.data)
    train, test = group_split(frame["battery_id"].astype(str), config.test_fraction, 0)
    model = train_electrode_model(frame.iloc[train], config=config.ensemble(0))
    features = electrode_features(frame.iloc[test])
    groups = feature_groups(features.names)
    y = frame[_VOLTAGE].to_numpy(dtype=np.float64)[test]
    ions = frame["working_ion"].to_numpy(dtype=object)[test]
    parts = []
    for ion in config.targets:
        rows = np.flatnonzero(ions == ion)
        if len(rows) < 2:
            continue
        table = permutation_importance(
            model, features.values[rows], y[rows], groups, config.importance_repeats
        )
        parts.append(
            table.assign(
                ion=ion,
                n_rows=len(rows),
                mae_v=table.attrs["mae_v"],
                rank=np.arange(1, len(table) + 1),
            )
        )
    if not parts:
        return pd.DataFrame(columns=["ion", "rank", "group", "n_features", "importance_v"])
    out = pd.concat(parts, ignore_index=True)
    return out[
        [
            "ion",
            "rank",
            "group",
            "n_features",
            "importance_v",
            "importance_std_v",
            "n_rows",
            "mae_v",
        ]
    ]


# ----------------------------------------------------------------------------------- driver
@dataclass(frozen=True)
class TransferResult:
    """What :func:`run_transfer` produced: ``curves`` (every model scored, ``transfer.csv``),
    ``table`` (mean over repeats per target, size and arm), ``importance``, the files and the
    wall time of this invocation (s)."""

    out: Path
    curves: pd.DataFrame
    table: pd.DataFrame
    importance: pd.DataFrame
    files: list[Path]
    seconds: float


def _check_out(config: TransferConfig) -> None:
    config.out.mkdir(parents=True, exist_ok=True)
    path = config.out / "transfer.json"
    current = config.settings()
    if path.is_file():
        stored = json.loads(path.read_text())
        changed = sorted(k for k in _SETTINGS if stored.get(k) != current.get(k))
        if changed:
            raise DiscoveryError(
                f"{config.out}: this directory holds transfer results made with other settings "
                f"({', '.join(changed)}); use another --out"
            )
        return
    path.write_text(json.dumps(current, indent=2) + "\n")


def run_transfer(
    config: TransferConfig, *, line: Callable[[str], None] | None = None
) -> TransferResult:
    """Run every (target, repeat) and the importance not computed yet; write the outputs.

    Each finished piece is kept under ``OUT/parts/``, so a second invocation recomputes nothing.
    """
    say = line or (lambda _text: None)
    start = time.perf_counter()
    frame = _frame(config.data)
    known = set(frame["working_ion"])
    missing = [t for t in config.targets if t not in known]
    if missing:
        raise DiscoveryError(
            f"{config.data}: no valid labeled rows of the target ion(s) {', '.join(missing)}"
        )
    _check_out(config)
    parts = config.out / "parts"
    parts.mkdir(exist_ok=True)
    jobs: list[tuple[str, Callable[[_Task], pd.DataFrame], _Task]] = []
    workers = config.workers
    pieces = [(t, k) for t in config.targets for k in range(config.repeats)]
    todo_curves = [(t, k) for t, k in pieces if not (parts / f"{t}-seed{k:02d}.csv").is_file()]
    todo_importance = config.importance and not (parts / "importance.csv").is_file()
    n_jobs = len(todo_curves) + int(todo_importance)
    threads = max(1, default_workers() // max(1, min(workers, n_jobs))) if workers > 1 else 0
    if todo_importance:
        jobs.append(("importance.csv", _importance, _Task(config, "", 0, threads)))
    for t, k in todo_curves:
        jobs.append((f"{t}-seed{k:02d}.csv", _curve, _Task(config, t, k, threads)))
    say(
        f"transfer: {len(jobs)} piece(s) to compute, {len(pieces) + config.importance - len(jobs)} done"
    )
    _run_jobs(jobs, parts, min(workers, max(1, len(jobs))), say)
    curves = pd.concat(
        [pd.read_csv(parts / f"{t}-seed{k:02d}.csv") for t, k in pieces], ignore_index=True
    )
    importance = (
        pd.read_csv(parts / "importance.csv")
        if config.importance
        else pd.DataFrame(columns=["ion", "rank", "group", "importance_v"])
    )
    importance = importance[importance["ion"].isin(config.targets)]
    seconds = time.perf_counter() - start
    from discovery.benchmark.transfer_report import write_transfer_outputs

    table, files = write_transfer_outputs(config, curves, importance, seconds)
    return TransferResult(config.out, curves, table, importance, files, seconds)


def _run_jobs(
    jobs: Sequence[tuple[str, Callable[[_Task], pd.DataFrame], _Task]],
    parts: Path,
    workers: int,
    say: Callable[[str], None],
) -> None:
    def save(name: str, table: pd.DataFrame, i: int) -> None:
        tmp = parts / f"{name}.tmp"
        table.to_csv(tmp, index=False)
        tmp.replace(parts / name)
        say(f"[{i}/{len(jobs)}] {name.removesuffix('.csv')} done")

    if workers <= 1:
        for i, (name, func, task) in enumerate(jobs, 1):
            save(name, func(task), i)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as executor:
        futures = {executor.submit(func, task): name for name, func, task in jobs}
        for i, future in enumerate(as_completed(futures), 1):
            save(futures[future], future.result(), i)
