"""The ``discover`` command line: a thin shim over the Python API.

Heavy modules (torch, pandas, pymatgen, mp-api) are imported inside the commands, so
``discover --help`` stays fast. Any :class:`~discovery.errors.DiscoveryError` becomes a message on
stderr and exit status 2.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from discovery import __version__
from discovery.errors import DiscoveryError

__all__ = ["app", "main"]

app = typer.Typer(
    name="discover",
    help="Active-learning discovery of battery electrode materials.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Electrode tables: check, clean and download.", no_args_is_help=True)
app.add_typer(data_app, name="data")

#: Fewest valid rows ``discover train`` accepts (rows are split by battery_id into training and
#: calibration rows, and each part needs rows that differ).
MIN_TRAINING_ROWS = 4

P = ParamSpec("P")
R = TypeVar("R")


def _echo(message: str) -> None:
    typer.echo(message, err=True)


def _user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn domain errors into a message on stderr and exit status 2."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except DiscoveryError as exc:
            _echo(f"error: {exc}")
            raise typer.Exit(2) from None

    return wrapper


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def version() -> None:
    """Print the discovery version."""
    typer.echo(__version__)


@data_app.command("check")
@_user_errors
def data_check(
    path: Annotated[Path, typer.Argument(help="Electrode table (.csv or .parquet).")],
    drop_invalid: Annotated[
        bool, typer.Option("--drop-invalid", help="Drop invalid rows instead of failing.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Write the valid rows to this file (.csv or .parquet).")
    ] = None,
    unlabeled: Annotated[
        bool, typer.Option("--unlabeled", help="A candidate table: no battery_id or voltage.")
    ] = False,
) -> None:
    """Validate an electrode table; list every invalid row with its line and reason."""
    from discovery.data import load_electrodes, write_table

    frame = load_electrodes(path, drop_invalid=drop_invalid, labeled=not unlabeled)
    typer.echo(frame.attrs["validation"])
    if out is not None:
        write_table(frame, out)
        typer.echo(f"wrote {len(frame)} rows to {out}")


@data_app.command("fetch")
@_user_errors
def data_fetch(
    ions: Annotated[str, typer.Option(help="Working ions, comma-separated: Li,Na,Mg.")],
    out: Annotated[Path, typer.Option(help="Output table (.csv or .parquet).")],
) -> None:
    """Download insertion electrodes from the Materials Project (API key in MP_API_KEY)."""
    from discovery.data import write_table
    from discovery.data.fetch import fetch_insertion_electrodes

    wanted = [ion.strip() for ion in ions.split(",") if ion.strip()]
    frame = fetch_insertion_electrodes(wanted)
    write_table(frame, out)
    typer.echo(f"wrote {len(frame)} voltage pairs for {', '.join(wanted)} to {out}")


@app.command()
@_user_errors
def train(
    data: Annotated[Path, typer.Option(help="Labeled electrode table (.csv or .parquet).")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    members: Annotated[int, typer.Option(min=1, help="Ensemble members.")] = 32,
    seed: Annotated[int, typer.Option(help="Random seed (training is deterministic).")] = 0,
    targets: Annotated[
        str, typer.Option(help="Learned targets, comma-separated column names.")
    ] = "average_voltage",
    max_epochs: Annotated[int, typer.Option(min=1, help="Upper bound on epochs.")] = 80,
    encoding: Annotated[
        str,
        typer.Option(
            help="Input encoding: 'mixed' (half the members on a piecewise-linear encoding of "
            "the features, the most accurate, docs/surrogate.md), 'standard' or "
            "'piecewise_linear'."
        ),
    ] = "mixed",
    drop_invalid: Annotated[
        bool, typer.Option("--drop-invalid", help="Drop invalid rows instead of failing.")
    ] = False,
) -> None:
    """Train a calibrated deep ensemble on an electrode table and save it as a directory."""
    from discovery.data import load_electrodes
    from discovery.surrogate import ENCODING_PRESETS, EnsembleConfig, train_electrode_model

    if encoding not in ENCODING_PRESETS:
        raise DiscoveryError(
            f"--encoding: expected one of {', '.join(ENCODING_PRESETS)}, got {encoding!r}"
        )
    frame = load_electrodes(data, drop_invalid=drop_invalid)
    typer.echo(frame.attrs["validation"])
    groups = frame["battery_id"].nunique()
    if len(frame) < MIN_TRAINING_ROWS or groups < 2:
        raise DiscoveryError(
            f"{data}: {len(frame)} valid row(s) of {groups} battery_id(s); training needs at least "
            f"{MIN_TRAINING_ROWS} rows of at least 2 different battery_ids (frameworks)"
        )
    config = EnsembleConfig(
        members=members, seed=seed, max_epochs=max_epochs, **ENCODING_PRESETS[encoding]
    )
    target_list = [t.strip() for t in targets.split(",") if t.strip()]
    model = train_electrode_model(frame, targets=target_list, config=config)
    model.save(out)
    scales = ", ".join(
        f"{t} x{s:.3f}" for t, s in zip(model.target_names, model.calibration_scale.tolist())
    )
    typer.echo(
        f"trained {members} members on {len(frame)} rows in {model.history.seconds:.1f} s "
        f"({model.history.epochs} epochs; std calibration {scales}); saved to {out}"
    )


@app.command()
@_user_errors
def predict(
    model: Annotated[Path, typer.Option(help="Model directory written by `discover train`.")],
    input: Annotated[Path, typer.Option(help="Candidate table (.csv or .parquet).")],
    out: Annotated[Path, typer.Option(help="Output table (.csv or .parquet).")],
    drop_invalid: Annotated[
        bool, typer.Option("--drop-invalid", help="Drop invalid rows instead of failing.")
    ] = False,
    fidelity: Annotated[
        str | None,
        typer.Option(help="Fidelity to predict at (models trained on several, e.g. 'mp-gga')."),
    ] = None,
) -> None:
    """Predict voltage (V) with its std, and exact capacity (mAh/g) and energy (Wh/kg).

    CSV output: text cells starting with = + - @, tab or CR get a leading ' (spreadsheet formulas).
    """
    from discovery.data import load_electrodes, write_table
    from discovery.surrogate import DeepEnsemble, predict_electrodes

    ensemble = DeepEnsemble.load(model)
    frame = load_electrodes(input, drop_invalid=drop_invalid, labeled=False)
    unseen = sorted(set(frame["working_ion"]) - set(ensemble.metadata.get("ions_seen", [])))
    if unseen:
        _echo(
            f"warning: ions not in the training data, predictions extrapolate: {', '.join(unseen)}"
        )
    result = predict_electrodes(ensemble, frame, fidelity=fidelity)
    write_table(result, out, spreadsheet_safe=True)
    typer.echo(f"wrote {len(result)} predictions to {out}")


# ---------------------------------------------------------------------------- campaigns
@app.command()
@_user_errors
def schema() -> None:
    """Print the JSON schema of campaign files."""
    import json

    from discovery.campaign import campaign_schema

    typer.echo(json.dumps(campaign_schema(), indent=2))


@app.command()
@_user_errors
def validate(
    campaign: Annotated[Path, typer.Argument(help="Campaign file (YAML).")],
) -> None:
    """Check a campaign file without running anything (exit 2 with file:line field: reason)."""
    from discovery.campaign import load_campaign

    spec = load_campaign(campaign)
    typer.echo(
        f"{campaign}: ok (campaign {spec.name!r}, {spec.space.kind} space, oracle {spec.oracle.name!r})"
    )


@app.command()
@_user_errors
def run(
    campaign: Annotated[Path, typer.Argument(help="Campaign file (YAML).")],
    workdir: Annotated[
        Path | None,
        typer.Option(help="Work directory (default: the file's `workdir`, else runs/<name>)."),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Wait for oracle results, or exit until they come."),
    ] = True,
    poll_interval: Annotated[float, typer.Option(help="Seconds between oracle polls.")] = 2.0,
    propose_ahead: Annotated[
        bool, typer.Option("--propose-ahead", help="Propose the next batch while one is still out.")
    ] = False,
    max_rounds: Annotated[
        int | None, typer.Option(help="Start at most this many new rounds, then stop.")
    ] = None,
    export: Annotated[
        bool,
        typer.Option(
            "--export/--no-export",
            help="When the campaign finishes, write its exports to <workdir>/exports and summarize.",
        ),
    ] = True,
) -> None:
    """Run or resume a campaign: train, propose, ask the oracle, record, repeat."""
    from discovery.campaign import Campaign
    from discovery.campaign.progress import RichReporter

    camp = Campaign.from_file(campaign, workdir=workdir, reporter=RichReporter())
    outcome = camp.run(
        wait=wait, poll_interval_s=poll_interval, propose_ahead=propose_ahead, max_rounds=max_rounds
    )
    typer.echo(
        f"{outcome.message} ({outcome.rounds_complete} round(s) complete, "
        f"{outcome.oracle_calls} oracle call(s)); work directory: {camp.workdir}"
    )
    # An oracle may say what it waits for (the lab oracle: which file to fill in, where to save it).
    hint = getattr(getattr(camp, "oracle", None), "waiting_hint", None)
    if outcome.state == "waiting" and callable(hint) and (text := hint()):
        typer.echo(text)
    if outcome.state == "finished" and export:
        from discovery.campaign import export_campaign

        out = camp.workdir / "exports"
        paths = export_campaign(camp.workdir, out)
        _show_status(camp.workdir, top=3)
        typer.echo(f"exports in {out}: {', '.join(p.name for p in paths)}")


@app.command()
@_user_errors
def status(
    workdir: Annotated[Path, typer.Argument(help="Campaign work directory.")],
    top: Annotated[int, typer.Option(help="Best candidates shown per ion.")] = 3,
) -> None:
    """Rounds, pending jobs, best candidates per ion and the hypervolume trace of a campaign."""
    _show_status(workdir, top)


def _show_status(workdir: Path, top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from discovery.campaign import campaign_status

    st = campaign_status(workdir, top=top)
    console = Console()
    c = st.counts
    console.print(
        f"[bold]{st.name}[/bold]: {len(st.rounds)} round(s), {c['submissions']} oracle call(s), "
        f"{c['results_ok']} ok, {c['results_failed']} failed, {c['results_rejected']} rejected, "
        f"{c['open_jobs']} pending",
        highlight=False,
    )
    rounds = Table(title="rounds")
    for col in ("round", "strategy", "state", "results", "hypervolume", "voltage MAE (V)"):
        rounds.add_column(col)
    for r in st.rounds.itertuples():
        m = r.metrics
        rounds.add_row(
            str(r.round),
            str(r.strategy),
            r.state,
            str(m.get("results_ok", "")),
            _fmt(m.get("hypervolume")),
            _fmt(m.get("voltage_mae_v")),
        )
    console.print(rounds)
    if len(st.open_jobs):
        console.print(
            f"pending jobs: {', '.join(st.open_jobs['job_id'].astype(str))}", highlight=False
        )
    for r in st.failures.tail(10).itertuples():  # the latest failures, each with its reason
        console.print(f"failed: {r.candidate_id} (round {r.round}): {r.message}", highlight=False)
    if len(st.failures) > 10:
        console.print(f"... {len(st.failures) - 10} earlier failure(s)", highlight=False)
    if len(st.best):
        best = Table(title=f"best measured per ion (top {top} by specific energy)")
        for col in ("ion", "charge", "discharge", "V", "mAh/g", "Wh/kg", "round"):
            best.add_column(col)
        for r in st.best.itertuples():
            best.add_row(
                r.working_ion,
                r.formula_charge,
                r.formula_discharge,
                _fmt(r.average_voltage),
                _fmt(r.capacity_grav),
                _fmt(r.energy_grav),
                str(r.round),
            )
        console.print(best)
    if len(st.front):
        front = Table(title=f"Pareto front of everything measured ({len(st.front)} electrodes)")
        for col in ("ion", "charge", "discharge", "V", "mAh/g", "Wh/kg", "fidelity", "round"):
            front.add_column(col)
        for r in st.front.head(12).itertuples():
            front.add_row(
                str(r.working_ion),
                str(r.formula_charge),
                str(r.formula_discharge),
                _fmt(r.average_voltage),
                _fmt(r.capacity_grav),
                _fmt(r.energy_grav),
                str(getattr(r, "fidelity", "")),
                str(r.round),
            )
        console.print(front)
    if len(st.hypervolume):
        trace = ", ".join(
            f"{int(r.round)}: {r.hypervolume:.4g}" for r in st.hypervolume.itertuples()
        )
        console.print(
            f"hypervolume by round (reference point {st.reference_point}): {trace}", highlight=False
        )


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else ""


@app.command()
@_user_errors
def export(
    workdir: Annotated[Path, typer.Argument(help="Campaign work directory.")],
    out: Annotated[Path, typer.Option(help="Output directory.")],
) -> None:
    """Write pareto.csv/.json/.png/.html, history.csv and hypervolume.csv."""
    from discovery.campaign import export_campaign

    paths = export_campaign(workdir, out)
    typer.echo(f"wrote {len(paths)} file(s) to {out}: {', '.join(p.name for p in paths)}")


@app.command()
@_user_errors
def plugins(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (a list of plugins) instead of a table.")
    ] = False,
) -> None:
    """List installed oracles and hook plugins with their package, version and hooks.

    Exits with status 2 when a plugin cannot be loaded or its hooks do not match the
    specifications (each problem is printed).
    """
    import dataclasses
    import json

    from discovery.plugins import installed_plugins

    found = installed_plugins()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(p) for p in found], indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="installed plugins")
        for col in ("kind", "name", "package", "version", "target", "hooks"):
            table.add_column(col)
        for p in found:
            hooks = ", ".join(h.removeprefix("discovery_") for h in p.hooks)
            table.add_row(
                p.kind,
                p.name,
                p.package,
                p.version,
                p.target,
                "[red]cannot be used[/red]" if p.error else hooks or "-",
            )
        Console(width=max(120, Console().width)).print(table)
    broken = [p for p in found if p.error]
    for p in broken:
        _echo(f"error: {p.error}")
    if broken:
        raise typer.Exit(2)


# ---------------------------------------------------------------------------- benchmarks
benchmark_app = typer.Typer(
    help=(
        "Retrospective benchmarks: strategies against random on a replayed pool "
        "(`discover benchmark --data FILE --ions Na,K`), and transfer across ions "
        "(`discover benchmark transfer`)."
    ),
)
app.add_typer(benchmark_app, name="benchmark")


def _names(text: str | None) -> list[str] | None:
    """A comma-separated list (None stays None)."""
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _window(text: str) -> tuple[float, float] | None:
    if text.strip().lower() == "none":
        return None
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise DiscoveryError(
            f"--voltage-window: expected 'MIN,MAX' in V or 'none', got {text!r}"
        ) from None
    return low, high


@benchmark_app.callback(invoke_without_command=True)
@_user_errors
def benchmark(
    ctx: typer.Context,
    data: Annotated[
        Path | None, typer.Option(help="Labeled electrode table: the pool and the oracle.")
    ] = None,
    ions: Annotated[str | None, typer.Option(help="Working ions of the pool, e.g. Na,K.")] = None,
    strategies: Annotated[
        str | None,
        typer.Option(help="Strategies to compare (default: qlognehvi,qnparego,greedy,random)."),
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per strategy (default: 10).")] = None,
    budget: Annotated[
        int | None,
        typer.Option(help="Oracle calls per run, initial design included (default: 120)."),
    ] = None,
    batch: Annotated[int | None, typer.Option(help="Candidates per round (default: 8).")] = None,
    init: Annotated[
        int | None,
        typer.Option(help="Seeded random initial design, shared by the strategies (default: 16)."),
    ] = None,
    voltage_window: Annotated[
        str, typer.Option(help="Voltage window MIN,MAX in V (a constraint), or 'none'.")
    ] = "1.5,4.5",
    prior_ions: Annotated[
        str | None,
        typer.Option(help="Ions of the table the surrogate also trains on (never proposed)."),
    ] = None,
    members: Annotated[int | None, typer.Option(help="Ensemble members (default: 8).")] = None,
    max_epochs: Annotated[
        int | None, typer.Option(help="Training epoch cap per round (default: 100).")
    ] = None,
    target: Annotated[
        float, typer.Option(help="Fraction of the maximum hypervolume to reach (acceleration).")
    ] = 0.9,
    out: Annotated[Path | None, typer.Option(help="Output directory.")] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Test-sized: qlognehvi and random, 2 seeds, 40 calls, a small surrogate.",
        ),
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Parallel processes (default: the machine's cores).")
    ] = None,
    keep_models: Annotated[
        bool, typer.Option("--keep-models", help="Keep each round's model.")
    ] = False,
) -> None:
    """Run retrospective campaigns of several strategies on the same seeds and initial designs.

    Writes results.csv, runs.csv, summary.md, hv_vs_calls.png and front_found.png to --out; a
    second invocation skips the finished runs.
    """
    if ctx.invoked_subcommand is not None:
        return
    missing = [f"--{n}" for n, v in (("data", data), ("ions", ions), ("out", out)) if v is None]
    if missing:
        raise DiscoveryError(f"discover benchmark: give {', '.join(missing)}")
    from discovery.benchmark.runner import BenchmarkConfig, run_benchmark

    config = BenchmarkConfig.create(
        quick=quick,
        data=data,
        ions=_names(ions),
        out=out,
        strategies=_names(strategies),
        seeds=seeds,
        budget=budget,
        batch=batch,
        init=init,
        window=_window(voltage_window),
        prior_ions=_names(prior_ions),
        members=members,
        max_epochs=max_epochs,
        target=target,
        workers=workers,
        keep_models=keep_models,
    )
    result = run_benchmark(config, line=typer.echo)
    typer.echo(
        f"benchmark written to {result.out} in {result.seconds / 60:.1f} min: "
        + ", ".join(p.name for p in result.files)
    )
    for row in result.summary.itertuples():
        typer.echo(f"  {row.strategy}: acceleration vs random {row.af_text}")


@benchmark_app.command("transfer")
@_user_errors
def benchmark_transfer(
    data: Annotated[Path, typer.Option(help="Labeled electrode table (invalid rows dropped).")],
    target: Annotated[
        str, typer.Option(help="Target ion(s), comma-separated, e.g. Na or Na,K,Mg,Ca,Zn,Al.")
    ],
    out: Annotated[Path, typer.Option(help="Output directory.")],
    source: Annotated[
        str | None, typer.Option(help="Ions to pre-train on (default: every other ion).")
    ] = None,
    sizes: Annotated[
        str, typer.Option(help="Target rows seen; 'all' adds all the training rows.")
    ] = "0,10,25,50,100,all",
    repeats: Annotated[int, typer.Option(min=1, help="Repeats (seeds).")] = 3,
    members: Annotated[int, typer.Option(min=1, help="Ensemble members.")] = 8,
    max_epochs: Annotated[int, typer.Option(min=1, help="Epoch cap (pre-training).")] = 120,
    finetune_lr: Annotated[float, typer.Option(help="Fine-tuning learning rate.")] = 1e-3,
    importance: Annotated[
        bool, typer.Option("--importance/--no-importance", help="Permutation importance.")
    ] = True,
    importance_repeats: Annotated[
        int, typer.Option(min=1, help="Shuffles per feature group (importance).")
    ] = 3,
    workers: Annotated[
        int | None, typer.Option(help="Parallel processes (default: the machine's cores).")
    ] = None,
) -> None:
    """Voltage learning curves on target ions: pre-trained on the other ions and fine-tuned,
    against trained on the target alone (grouped by battery_id); permutation importance."""
    from discovery.benchmark.transfer import TransferConfig, run_transfer

    items = _names(sizes) or []
    try:
        numbers = tuple(int(s) for s in items if s != "all")
    except ValueError:
        raise DiscoveryError(f"--sizes: expected integers and 'all', got {sizes!r}") from None
    settings: dict[str, object] = {
        "data": data,
        "targets": tuple(_names(target) or []),
        "out": out,
        "source_ions": tuple(_names(source) or []),
        "sizes": numbers,
        "all_rows": "all" in items,
        "repeats": repeats,
        "members": members,
        "max_epochs": max_epochs,
        "finetune_learning_rate": finetune_lr,
        "importance": importance,
        "importance_repeats": importance_repeats,
    }
    if workers is not None:
        settings["workers"] = workers
    result = run_transfer(TransferConfig(**settings), line=typer.echo)  # type: ignore[arg-type]
    typer.echo(
        f"transfer results written to {result.out} in {result.seconds / 60:.1f} min: "
        + ", ".join(p.name for p in result.files)
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
