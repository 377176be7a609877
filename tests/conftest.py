"""Shared fixtures: the shared Materials Project table (skipped when absent), a small synthetic one,
and a throwaway site-packages folder to install plugin distributions into."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CSV = REPO.parent / "shared" / "data" / "mp_insertion_electrodes_2019.csv"


@pytest.fixture(scope="session")
def shared_csv() -> Path:
    """Path of the shared Materials Project electrode table; skips the test when it is absent."""
    if not SHARED_CSV.is_file():
        pytest.skip(
            "../shared/data/mp_insertion_electrodes_2019.csv is absent (a clone outside the workplace)"
        )
    return SHARED_CSV


@pytest.fixture(scope="session")
def shared_frame(shared_csv: Path) -> pd.DataFrame:
    return pd.read_csv(shared_csv)


_METALS = {"Mn": 0.6, "Fe": 0.2, "Co": 1.1, "Ni": 0.9, "V": -0.3, "Ti": -0.9, "Cr": 0.4, "Cu": 0.7}
_HOSTS = {"O2": 0.5, "PO4": 1.0, "S2": -1.0, "F3": 1.5}
_IONS = {"Li": 0.3, "Na": 0.0, "Mg": -0.6}


def synthetic_electrodes(seed: int = 0, n_frameworks: int = 60) -> pd.DataFrame:
    """A made-up electrode table (not Materials Project data) whose voltage is a smooth function of
    the transition metal, the anion group, the ion and the insertion amount, plus 0.05 V noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_frameworks):
        metal = list(_METALS)[k % len(_METALS)]
        host = list(_HOSTS)[(k // len(_METALS)) % len(_HOSTS)]
        ion = list(_IONS)[k % len(_IONS)]
        x = [0.5, 1.0][k % 2]
        charge = f"{metal}{host}"
        for step in (1, 2):
            amount = x * step / 2
            formula_charge = charge if step == 1 else f"{ion}{x / 2:g}{charge}"
            formula_discharge = f"{ion}{amount:g}{charge}"
            voltage = 3.0 + _METALS[metal] + _HOSTS[host] + _IONS[ion] - 0.4 * (step - 1)
            rows.append(
                {
                    "battery_id": f"synthetic-{k:03d}_{ion}",
                    "working_ion": ion,
                    "formula_charge": formula_charge,
                    "formula_discharge": formula_discharge,
                    "average_voltage": voltage + rng.normal(0, 0.05),
                    "max_delta_volume": 0.02 * step + rng.normal(0, 0.005) ** 2,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def synthetic_frame() -> pd.DataFrame:
    return synthetic_electrodes()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site-packages folder on sys.path for this test; its modules are forgotten afterwards."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(folder)):
            del sys.modules[name]


def install(
    site: Path,
    package: str,
    modules: dict[str, str],
    hooks: dict[str, str] | None = None,
    oracles: dict[str, str] | None = None,
    version: str = "1.0",
) -> None:
    """Install ``modules`` (name -> source) as the distribution ``package`` into ``site`` with
    entry points ``hooks`` (group discovery.hooks) and ``oracles`` (group discovery.oracles)."""
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / f"{package.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
    lines = []
    for group, points in (("discovery.hooks", hooks), ("discovery.oracles", oracles)):
        if points:
            lines.append(f"[{group}]")
            lines += [f"{k} = {v}" for k, v in points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
