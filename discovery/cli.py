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
    max_epochs: Annotated[int, typer.Option(min=1, help="Upper bound on epochs.")] = 120,
    drop_invalid: Annotated[
        bool, typer.Option("--drop-invalid", help="Drop invalid rows instead of failing.")
    ] = False,
) -> None:
    """Train a calibrated deep ensemble on an electrode table and save it as a directory."""
    from discovery.data import load_electrodes
    from discovery.surrogate import EnsembleConfig, train_electrode_model

    frame = load_electrodes(data, drop_invalid=drop_invalid)
    typer.echo(frame.attrs["validation"])
    config = EnsembleConfig(members=members, seed=seed, max_epochs=max_epochs)
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
) -> None:
    """Predict voltage (V) with its std, and exact capacity (mAh/g) and energy (Wh/kg)."""
    from discovery.data import load_electrodes, write_table
    from discovery.surrogate import DeepEnsemble, predict_electrodes

    ensemble = DeepEnsemble.load(model)
    frame = load_electrodes(input, drop_invalid=drop_invalid, labeled=False)
    unseen = sorted(set(frame["working_ion"]) - set(ensemble.metadata.get("ions_seen", [])))
    if unseen:
        _echo(
            f"warning: ions not in the training data, predictions extrapolate: {', '.join(unseen)}"
        )
    result = predict_electrodes(ensemble, frame)
    write_table(result, out)
    typer.echo(f"wrote {len(result)} predictions to {out}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
