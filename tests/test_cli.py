"""The `discover` command line, end to end on real files (synthetic electrodes, no network)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from discovery.chemistry import capacity_grav_mah_g
from discovery.cli import app

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from conftest import synthetic_electrodes

    root = tmp_path_factory.mktemp("cli")
    data = root / "train.csv"
    synthetic_electrodes().to_csv(data, index=False)
    code, out, err = _invoke(
        "train", "--data", str(data), "--out", str(root / "model"), "--members", "4",
        "--max-epochs", "30", "--targets", "average_voltage,max_delta_volume",
    )  # fmt: skip
    assert code == 0, err
    assert "trained 4 members on 120 rows" in out
    return root, root / "model"


def test_help_is_fast_to_import() -> None:
    """`discover --help` must not import torch, pandas or pymatgen."""
    code = (
        "import sys, discovery.cli; "
        "heavy = [m for m in ('torch', 'pandas', 'pymatgen', 'botorch') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    done = subprocess.run(
        [sys.executable, "-m", "discovery.cli", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_train_then_predict(trained_model: tuple[Path, Path]) -> None:
    root, model = trained_model
    candidates = pd.DataFrame(
        {
            "name": ["a", "b"],
            "working_ion": ["Li", "Na"],
            "formula_charge": ["MnO2", "FePO4"],
            "formula_discharge": ["LiMnO2", "NaFePO4"],
        }
    )
    candidates.to_csv(root / "candidates.csv", index=False)
    code, out, err = _invoke(
        "predict", "--model", str(model), "--input", str(root / "candidates.csv"),
        "--out", str(root / "predicted.parquet"),
    )  # fmt: skip
    assert code == 0, err
    assert "wrote 2 predictions" in out
    predicted = pd.read_parquet(root / "predicted.parquet")
    assert list(predicted.columns[:4]) == list(candidates.columns)
    for column in ("voltage_mean", "voltage_std", "max_delta_volume_mean", "energy_grav_std"):
        assert np.isfinite(predicted[column]).all(), column
    expected = [
        capacity_grav_mah_g("MnO2", "LiMnO2", "Li"),
        capacity_grav_mah_g("FePO4", "NaFePO4", "Na"),
    ]
    np.testing.assert_allclose(predicted.capacity_grav, expected)
    np.testing.assert_allclose(
        predicted.energy_grav, predicted.voltage_mean * predicted.capacity_grav
    )
    assert (predicted.voltage_std > 0).all()


def test_train_takes_an_input_encoding(trained_model: tuple[Path, Path]) -> None:
    root, model = trained_model
    data, out = str(root / "train.csv"), str(root / "standard")
    code, _, err = _invoke(
        "train", "--data", data, "--out", out, "--members", "3", "--max-epochs", "2",
        "--encoding", "standard",
    )  # fmt: skip
    assert code == 0, err
    config = json.loads((root / "standard" / "manifest.json").read_text())["config"]
    assert (config["input_encoding"], config["members"]) == ("standard", 3)
    # without the option: the default, mixed
    default = json.loads((model / "manifest.json").read_text())["config"]
    assert default["input_encoding"] == "mixed"
    code, _, err = _invoke("train", "--data", data, "--out", out, "--encoding", "quantile")
    assert code == 2
    assert "--encoding: expected one of standard, mixed, piecewise_linear, got 'quantile'" in err


def test_predict_warns_about_unseen_ions(trained_model: tuple[Path, Path]) -> None:
    root, model = trained_model
    path = root / "k.csv"
    pd.DataFrame(
        {"working_ion": ["K"], "formula_charge": ["CoO2"], "formula_discharge": ["KCoO2"]}
    ).to_csv(path, index=False)
    code, _, err = _invoke(
        "predict", "--model", str(model), "--input", str(path), "--out", str(root / "k_out.csv")
    )
    assert code == 0
    assert "ions not in the training data, predictions extrapolate: K" in err


def test_bad_candidates_exit_2_naming_the_line(trained_model: tuple[Path, Path]) -> None:
    root, model = trained_model
    path = root / "bad.csv"
    path.write_text(
        "working_ion,formula_charge,formula_discharge\nLi,CoO2,LiCoO2\nQq,CoO2,LiCoO2\n"
    )
    code, _, err = _invoke(
        "predict", "--model", str(model), "--input", str(path), "--out", str(root / "o.csv")
    )
    assert code == 2
    assert f"{path}:3 working_ion: unknown working ion 'Qq'" in err
    assert not (root / "o.csv").exists()


def test_missing_model_directory(tmp_path: Path) -> None:
    code, _, err = _invoke(
        "predict", "--model", str(tmp_path / "none"), "--input", "x.csv", "--out", "y.csv"
    )
    assert code == 2
    assert "manifest.json: missing" in err


def test_data_check(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "battery_id,working_ion,formula_charge,formula_discharge,average_voltage\n"
        "a_Li,Li,CoO2,LiCoO2,3.9\n"
        "b_Li,Li,CoO2,LiCoO2,nan\n"
    )
    code, _, err = _invoke("data", "check", str(path))
    assert code == 2
    assert f"{path}:3 average_voltage: missing (NaN) voltage" in err
    code, out, _ = _invoke(
        "data", "check", str(path), "--drop-invalid", "--out", str(tmp_path / "clean.csv")
    )
    assert code == 0
    assert "2 rows, 1 valid, 1 invalid (invalid voltage: 1)" in out
    assert len(pd.read_csv(tmp_path / "clean.csv")) == 1


def test_data_check_missing_file(tmp_path: Path) -> None:
    code, _, err = _invoke("data", "check", str(tmp_path / "absent.csv"))
    assert code == 2
    assert "absent.csv: no such file" in err


def test_fetch_without_key_fails_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import responses

    monkeypatch.delenv("MP_API_KEY", raising=False)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        code, _, err = _invoke("data", "fetch", "--ions", "Li", "--out", str(tmp_path / "o.csv"))
        assert len(mock.calls) == 0
    assert code == 2
    assert "MP_API_KEY" in err
    code, _, err = _invoke("data", "fetch", "--ions", "Li,Qq", "--out", str(tmp_path / "o.csv"))
    assert code == 2
    assert "unknown working ion 'Qq'" in err
