"""``discover benchmark``: retrospective campaigns of several strategies on the same seeds.

Every run is a real campaign (:class:`discovery.campaign.Campaign`) built in code: the pool of the
benchmark's ions as a table space, the replay oracle answering from the same table, objectives
``average_voltage`` (V) and ``capacity_grav`` (mAh/g), both maximized, the voltage window as an
outcome constraint, a budget of ``budget`` oracle calls of which the first ``init`` are a seeded
random design. The campaign seed is the benchmark seed, so all strategies of a seed start from the
same random design and train their first model with the same seed; each run has its own work
directory ``OUT/runs/<strategy>-seed<NN>/`` (ledger, and the round models until the trace is
written).

After a run, its trace (``trace.csv`` in its work directory) is computed from the ledger, one row
per round: oracle calls so far, hypervolume of the measured feasible set against the pool's shared
reference point and normalized by the pool's maximum, the number and fraction of the pool's true
Pareto set found, and the round model's voltage MAE and 95 % interval coverage on the pool rows not
yet proposed when it was trained (round 0, the random design, has no model). A run with a
``trace.csv`` is finished and is not run again; an interrupted run resumes from its ledger.

Random runs are continued model-free beyond the budget (``extension.csv``): uniform draws, in
batches of ``batch``, from the candidates not yet measured, until the pool is exhausted, seeded by
the run's seed. Random's choices do not depend on a model, so this is what the campaign would have
done with a larger budget; it lets the acceleration factor use random's true calls to the target
instead of a censored value (:mod:`discovery.benchmark.metrics`).
"""

from __future__ import annotations

__all__ = [
    "QUICK",
    "STRATEGIES",
    "BenchmarkConfig",
    "BenchmarkResult",
    "campaign_spec",
    "run_benchmark",
    "run_dir",
]

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from discovery.errors import DiscoveryError

if TYPE_CHECKING:
    from discovery.benchmark.pool import BenchmarkPool
    from discovery.campaign import Campaign, CampaignSpec

#: Acquisition strategies a benchmark can compare.
STRATEGIES: tuple[str, ...] = ("qlognehvi", "qnparego", "greedy", "random")
#: Settings ``--quick`` uses for whatever is not given explicitly (a test-sized benchmark).
QUICK: dict[str, Any] = {
    "strategies": ("qlognehvi", "random"),
    "seeds": 2,
    "budget": 40,
    "members": 4,
    "hidden": (32, 32),
    "max_epochs": 40,
    "mc_samples": 32,
    "shortlist": 32,
}
#: Settings that define a run: a benchmark directory refuses a second invocation that changes one.
RUN_SETTINGS = (
    "data",
    "ions",
    "window",
    "prior_ions",
    "budget",
    "batch",
    "init",
    "members",
    "hidden",
    "max_epochs",
    "patience",
    "mc_samples",
    "shortlist",
)
_TRACE = "trace.csv"
_EXTENSION = "extension.csv"
_RUN_INFO = "run.json"
_CONFIG_FILE = "benchmark.json"


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class BenchmarkConfig:
    """What ``discover benchmark`` runs.

    Attributes:
        data: labeled electrode table (CSV or parquet) that is both the pool and the oracle.
        ions: working ions of the pool.
        strategies: acquisition strategies to compare (``random`` is needed for the factors).
        seeds: seeds 0 .. seeds-1; every strategy runs on each.
        budget: oracle calls per run, the initial design included.
        batch: candidates per model-based round.
        init: size of the seeded random initial design (round 0).
        out: output directory.
        window: voltage window (min, max) in V; None: no constraint.
        prior_ions: ions of the data table the surrogate is also trained on from the start (not
            in the pool, never proposed); empty: the surrogate knows only what the run measured.
        members, hidden, max_epochs, patience: the surrogate ensemble (see
            :class:`discovery.surrogate.EnsembleConfig`).
        mc_samples, shortlist: acquisition settings (see ``docs/proposals.md``).
        target: fraction of the pool's maximum hypervolume a run must reach for the
            acceleration factor.
        workers: parallel processes.
        keep_models: keep each round's model after the trace is written (they are deleted by
            default: about 0.6 MB per round and run).
    """

    data: Path
    ions: tuple[str, ...]
    out: Path
    strategies: tuple[str, ...] = STRATEGIES
    seeds: int = 10
    budget: int = 120
    batch: int = 8
    init: int = 16
    window: tuple[float, float] | None = (1.5, 4.5)
    prior_ions: tuple[str, ...] = ()
    members: int = 8
    hidden: tuple[int, ...] = (64, 64)
    max_epochs: int = 100
    patience: int = 20
    mc_samples: int = 64
    shortlist: int = 64
    target: float = 0.9
    workers: int = field(default_factory=default_workers)
    keep_models: bool = False

    def __post_init__(self) -> None:
        problems = []
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            problems.append(
                f"unknown strateg{'ies' if len(unknown) > 1 else 'y'} {unknown}; "
                f"known: {', '.join(STRATEGIES)}"
            )
        if not self.strategies:
            problems.append("give at least one strategy")
        if len(set(self.strategies)) != len(self.strategies):
            problems.append("a strategy is listed twice")
        if not self.ions:
            problems.append("give at least one ion")
        if set(self.ions) & set(self.prior_ions):
            problems.append(
                f"prior ions {sorted(set(self.ions) & set(self.prior_ions))} are also pool ions"
            )
        if self.seeds < 1:
            problems.append(f"seeds must be >= 1, got {self.seeds}")
        if self.batch < 1:
            problems.append(f"batch must be >= 1, got {self.batch}")
        if not self.prior_ions and self.init < 10:
            problems.append(
                f"init must be >= 10 (the first model needs 10 labeled rows), got {self.init}"
            )
        if self.init < 1:
            problems.append(f"init must be >= 1, got {self.init}")
        if self.budget <= self.init:
            problems.append(f"budget ({self.budget}) must exceed init ({self.init})")
        if self.shortlist < self.batch:
            problems.append(f"shortlist ({self.shortlist}) must be >= batch ({self.batch})")
        if not 0.0 < self.target <= 1.0:
            problems.append(f"target must be in (0, 1], got {self.target}")
        if self.workers < 1:
            problems.append(f"workers must be >= 1, got {self.workers}")
        if self.window is not None and not self.window[0] < self.window[1]:
            problems.append(f"voltage window {self.window} must be (min, max) with min < max")
        if problems:
            raise DiscoveryError("benchmark: " + "; ".join(problems))

    @classmethod
    def create(cls, *, quick: bool = False, **given: Any) -> BenchmarkConfig:
        """A config from the given settings; ``quick`` fills what is not given from :data:`QUICK`
        (None counts as not given)."""
        settings = {k: v for k, v in given.items() if v is not None}
        if quick:
            settings = {**QUICK, **settings}
        for key in ("ions", "strategies", "prior_ions", "hidden"):
            if key in settings:
                settings[key] = tuple(settings[key])
        settings["data"] = Path(settings["data"])
        settings["out"] = Path(settings["out"])
        return cls(**settings)

    def run_settings(self) -> dict[str, Any]:
        """The settings that define a run, as JSON values (the data path made absolute)."""
        values = asdict(self)
        values["data"] = os.path.abspath(self.data)
        values = {k: values[k] for k in RUN_SETTINGS}
        return json.loads(json.dumps(values))


def run_dir(out: Path, strategy: str, seed: int) -> Path:
    """The work directory of one run."""
    return out / "runs" / f"{strategy}-seed{seed:02d}"


def campaign_spec(config: BenchmarkConfig, strategy: str, seed: int) -> CampaignSpec:
    """The campaign of one run (see the module docstring)."""
    from discovery.campaign import CampaignSpec

    data = os.path.abspath(config.data)
    spec: dict[str, Any] = {
        "name": f"benchmark-{strategy}-seed{seed:02d}",
        "seed": seed,
        "ions": list(config.ions),
        "space": {"kind": "table", "path": data},
        "objectives": [
            {"name": "average_voltage", "direction": "maximize"},
            {"name": "capacity_grav", "direction": "maximize"},
        ],
        "surrogate": {
            "members": config.members,
            "hidden": list(config.hidden),
            "max_epochs": config.max_epochs,
            "patience": config.patience,
        },
        "acquisition": {
            "strategy": strategy,
            "mc_samples": config.mc_samples,
            "shortlist": config.shortlist,
        },
        "batch_size": config.batch,
        "budget": {"oracle_calls": config.budget, "initial_random": config.init},
        "oracle": {"name": "replay", "options": {"path": data}},
    }
    if config.window is not None:
        low, high = config.window
        spec["constraints"] = [{"name": "average_voltage", "min": low, "max": high}]
    if config.prior_ions:
        spec["initial_data"] = {"path": data, "ions": list(config.prior_ions)}
    return CampaignSpec.model_validate(spec)


@lru_cache(maxsize=4)
def _pool(data: str, ions: tuple[str, ...], window: tuple[float, float] | None) -> BenchmarkPool:
    from discovery.benchmark.pool import load_benchmark_pool

    return load_benchmark_pool(data, ions, window)


# ----------------------------------------------------------------------------------- one run
@dataclass(frozen=True)
class _Task:
    config: BenchmarkConfig
    strategy: str
    seed: int
    threads: int


def _run_one(task: _Task) -> dict[str, Any]:
    """Run (or resume) one campaign and write its trace; returns its run info."""
    import torch

    from discovery.campaign import Campaign

    if task.threads > 0:
        torch.set_num_threads(task.threads)
    config = task.config
    workdir = run_dir(config.out, task.strategy, task.seed)
    start = time.perf_counter()
    campaign = Campaign(campaign_spec(config, task.strategy, task.seed), workdir=workdir)
    outcome = campaign.run()
    pool = _pool(os.path.abspath(config.data), config.ions, config.window)
    trace = run_trace(campaign, pool)
    trace.insert(0, "seed", task.seed)
    trace.insert(0, "strategy", task.strategy)
    if task.strategy == "random":
        extension = random_extension(pool, workdir, config.batch, task.seed)
        _write_csv(extension, workdir / _EXTENSION)
    info = {
        "strategy": task.strategy,
        "seed": task.seed,
        "state": outcome.state,
        "oracle_calls": outcome.oracle_calls,
        "seconds": round(time.perf_counter() - start, 2),
        "threads": task.threads,
    }
    (workdir / _RUN_INFO).write_text(json.dumps(info, indent=2) + "\n")
    _write_csv(trace, workdir / _TRACE)  # last: its presence marks the run finished
    if not config.keep_models:
        shutil.rmtree(workdir / "models", ignore_errors=True)
    return info


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically, so a killed process never leaves a half-written file behind."""
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def run_trace(campaign: Campaign, pool: BenchmarkPool) -> pd.DataFrame:
    """One row per complete round of a finished campaign (see the module docstring).

    Columns: ``round``; ``calls`` (oracle calls up to and including the round); ``n_ok``;
    ``hypervolume`` (V·mAh/g); ``hv_norm`` (fraction of the pool's maximum); ``front_found``;
    ``front_fraction``; ``n_train`` (rows the round's model was trained on); ``mae_v`` (V) and
    ``coverage_95`` (fraction) of the round's model on the ``n_unmeasured`` pool rows not proposed
    before the round.
    """
    from discovery.campaign.report import open_ledger
    from discovery.surrogate import DeepEnsemble

    ledger = open_ledger(campaign.workdir)
    try:
        rounds = ledger.rounds()
        proposals = ledger.proposals()
        results = ledger.results(("ok",))
        model_dirs = {int(r): ledger.round_model(int(r)) for r in rounds["round"]}
    finally:
        ledger.close()
    assert campaign.pool is not None
    features = campaign.pool_features
    feature_row = {c: i for i, c in enumerate(campaign.pool["candidate_id"])}
    pool_ids = pool.ids
    pool_feature_rows = np.array([feature_row[c] for c in pool_ids], dtype=np.int64)
    records = []
    for round_ in sorted(int(r) for r in rounds.loc[rounds["state"] == "complete", "round"]):
        ok_ids = set(results.loc[results["round"] <= round_, "candidate_id"])
        measured = pool.rows_of(ok_ids)
        hv = pool.hypervolume_of(measured)
        found = pool.front_found(ok_ids)
        record: dict[str, Any] = {
            "round": round_,
            "calls": int((proposals["round"] <= round_).sum()),
            "n_ok": len(ok_ids),
            "hypervolume": hv,
            "hv_norm": hv / pool.max_hypervolume,
            "front_found": found,
            "front_fraction": found / len(pool.front),
            "n_train": math.nan,
            "mae_v": math.nan,
            "coverage_95": math.nan,
            "n_unmeasured": math.nan,
        }
        saved, n_train = model_dirs.get(round_, (None, None))
        if saved is not None and (campaign.workdir / saved / "manifest.json").is_file():
            model = DeepEnsemble.load(campaign.workdir / saved)
            before = set(proposals.loc[proposals["round"] < round_, "candidate_id"])
            unmeasured = np.flatnonzero(~np.isin(pool_ids, list(before)))
            if len(unmeasured):
                pred = model.predict(features[pool_feature_rows[unmeasured]])
                mean, std = pred.column("average_voltage")
                err = np.abs(pool.voltage[unmeasured] - mean)
                record.update(
                    n_train=n_train,
                    mae_v=float(err.mean()),
                    coverage_95=float((err <= 1.959963984540054 * std).mean()),
                    n_unmeasured=len(unmeasured),
                )
        records.append(record)
    return pd.DataFrame.from_records(records)


def random_extension(pool: BenchmarkPool, workdir: Path, batch: int, seed: int) -> pd.DataFrame:
    """A random run continued beyond its budget, model-free, until the pool is exhausted.

    Starts from the run's measured set (ok answers in its ledger) and adds uniform draws without
    replacement from the rest of the pool, ``batch`` at a time, seeded by ``seed``. Columns:
    ``calls``, ``hv_norm``, ``front_fraction`` at the end of each extra batch.
    """
    from discovery.campaign.report import open_ledger

    ledger = open_ledger(workdir)
    try:
        calls = ledger.submission_count()
        measured_ids = set(ledger.results(("ok",))["candidate_id"])
    finally:
        ledger.close()
    measured = np.isin(pool.ids, list(measured_ids))
    rest = np.random.default_rng([seed, 1]).permutation(np.flatnonzero(~measured))
    taken: list[int] = np.flatnonzero(measured).tolist()
    ids = pool.ids
    found = set(ids[taken])
    records = []
    for start in range(0, len(rest), batch):
        chunk = rest[start : start + batch]
        taken.extend(chunk.tolist())
        found.update(ids[chunk])
        calls += len(chunk)
        records.append(
            {
                "calls": calls,
                "hv_norm": pool.hypervolume_of(taken) / pool.max_hypervolume,
                "front_fraction": pool.front_found(found) / len(pool.front),
            }
        )
    return pd.DataFrame.from_records(records, columns=["calls", "hv_norm", "front_fraction"])


# ----------------------------------------------------------------------------------- all runs
@dataclass(frozen=True)
class BenchmarkResult:
    """What :func:`run_benchmark` produced.

    Attributes:
        out: the output directory.
        results: every round of every run (``results.csv``).
        runs: one row per run with its calls to the target and factors (``runs.csv``).
        summary: per strategy (``summary.md`` in table form).
        seconds: wall time of this invocation.
        ran: runs computed by this invocation (the others were finished already).
        files: the files written.
    """

    out: Path
    results: pd.DataFrame
    runs: pd.DataFrame
    summary: pd.DataFrame
    seconds: float
    ran: int
    files: list[Path]


def _check_out(config: BenchmarkConfig) -> None:
    """Record the run settings in a new directory; refuse a directory made with other ones."""
    config.out.mkdir(parents=True, exist_ok=True)
    path = config.out / _CONFIG_FILE
    current = config.run_settings()
    if path.is_file():
        stored = json.loads(path.read_text())
        changed = sorted(k for k in RUN_SETTINGS if stored.get(k) != current.get(k))
        if changed:
            detail = ", ".join(f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in changed)
            raise DiscoveryError(
                f"{config.out}: this benchmark directory was made with other settings ({detail}); "
                "use another --out for a different benchmark"
            )
        return
    path.write_text(json.dumps(current, indent=2) + "\n")


def run_benchmark(
    config: BenchmarkConfig, *, line: Callable[[str], None] | None = None
) -> BenchmarkResult:
    """Run every (strategy, seed) not finished yet, then write results, summary and plots.

    ``line`` receives one line of progress per finished run.
    """
    from discovery.benchmark.report import write_outputs

    say = line or (lambda _text: None)
    start = time.perf_counter()
    pool = _pool(os.path.abspath(config.data), config.ions, config.window)
    _check_out(config)
    tasks = [
        (strategy, seed)
        for seed in range(config.seeds)
        for strategy in config.strategies
        if not (run_dir(config.out, strategy, seed) / _TRACE).is_file()
    ]
    done = config.seeds * len(config.strategies) - len(tasks)
    say(
        f"benchmark: {len(pool)} candidates ({int(pool.feasible.sum())} in the window), "
        f"{len(pool.front)} on the true front; {len(tasks)} run(s) to do, {done} finished"
    )
    _run_all(config, tasks, say)
    results = _collect(config)
    extensions = _collect_extensions(config)
    seconds = time.perf_counter() - start
    runs, summary, files = write_outputs(config, pool, results, extensions, seconds, len(tasks))
    return BenchmarkResult(config.out, results, runs, summary, seconds, len(tasks), files)


def _run_all(
    config: BenchmarkConfig, tasks: Sequence[tuple[str, int]], say: Callable[[str], None]
) -> None:
    if not tasks:
        return
    workers = min(config.workers, len(tasks))
    threads = max(1, default_workers() // workers)
    jobs = [_Task(config, s, k, threads if workers > 1 else 0) for s, k in tasks]
    if workers == 1:
        for i, job in enumerate(jobs, 1):
            _report(say, _run_one(job), i, len(jobs))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a fresh interpreter per worker, so no torch thread pool is inherited through fork.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as executor:
        futures = [executor.submit(_run_one, job) for job in jobs]
        try:
            for i, future in enumerate(as_completed(futures), 1):
                _report(say, future.result(), i, len(jobs))
        except BaseException:
            for future in futures:  # finished runs are kept; queued ones are not started
                future.cancel()
            raise


def _report(say: Callable[[str], None], info: dict[str, Any], i: int, n: int) -> None:
    say(
        f"[{i}/{n}] {info['strategy']} seed {info['seed']}: {info['oracle_calls']} calls, "
        f"{info['seconds']:.0f} s"
    )


def _collect(config: BenchmarkConfig) -> pd.DataFrame:
    frames = []
    for seed in range(config.seeds):
        for strategy in config.strategies:
            workdir = run_dir(config.out, strategy, seed)
            trace = pd.read_csv(workdir / _TRACE)
            info = json.loads((workdir / _RUN_INFO).read_text())
            frames.append(trace.assign(run_seconds=info["seconds"]))
    return pd.concat(frames, ignore_index=True)


def _collect_extensions(config: BenchmarkConfig) -> pd.DataFrame:
    frames = []
    if "random" in config.strategies:
        for seed in range(config.seeds):
            path = run_dir(config.out, "random", seed) / _EXTENSION
            if path.is_file():
                frames.append(pd.read_csv(path).assign(seed=seed))
    if not frames:
        return pd.DataFrame(columns=["seed", "calls", "hv_norm", "front_fraction"])
    frame = pd.concat(frames, ignore_index=True)
    return frame[["seed", "calls", "hv_norm", "front_fraction"]]
