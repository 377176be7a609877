"""Retrospective benchmarks (`discover benchmark`) and transfer across ions: the factor arithmetic
on hand-made traces, real quick benchmarks (synthetic table always, the shared Materials Project
table when present), resuming, grouped transfer splits and fine-tuning from pre-trained weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_electrodes
from typer.testing import CliRunner

from discovery.benchmark.metrics import (
    acceleration_factor,
    calls_to_reach,
    enhancement_factor,
    summarize_acceleration,
    value_at,
)
from discovery.benchmark.report import run_table
from discovery.benchmark.runner import BenchmarkConfig, campaign_spec, run_benchmark, run_dir
from discovery.benchmark.transfer import (
    TransferConfig,
    feature_groups,
    permutation_importance,
    run_transfer,
    transfer_split,
)
from discovery.campaign import Campaign
from discovery.campaign.report import open_ledger
from discovery.cli import app
from discovery.errors import DiscoveryError
from discovery.features import electrode_feature_names, electrode_features, redox_feature_names
from discovery.surrogate import DeepEnsemble, EnsembleConfig, train_electrode_model

runner = CliRunner()


# ------------------------------------------------------------------------------ arithmetic
def test_calls_to_reach_and_value_at() -> None:
    calls = [16, 24, 32, 40]
    assert calls_to_reach(calls, [0.5, 0.89, 0.9, 0.95], 0.9) == 32
    assert calls_to_reach(calls, [0.95, 0.96, 0.97, 0.98], 0.9) == 16
    assert math.isnan(calls_to_reach(calls, [0.5, float("nan"), 0.7, 0.8], 0.9))
    assert value_at(calls, [0.1, 0.2, 0.3, 0.4], 30) == 0.2
    assert value_at(calls, [0.1, 0.2, 0.3, 0.4], 40) == 0.4
    assert math.isnan(value_at(calls, [0.1, 0.2, 0.3, 0.4], 8))


def test_acceleration_factor_reached_and_censored() -> None:
    assert acceleration_factor(96, 32, 120, 400) == (3.0, 3.0, False)
    # never reached within 120 calls: the factor lies in [96/400, 96/120)
    low, high, censored = acceleration_factor(96, math.nan, 120, 400)
    assert censored and low == pytest.approx(0.24) and high == pytest.approx(0.8)


def test_median_under_censoring_is_an_interval_only_when_it_can_move() -> None:
    # seeds: 4×, 2×, 6× reached; two runs never reached (bounds 0.5–1.5 and 0.4–1.2)
    low = [4.0, 2.0, 6.0, 0.5, 0.4]
    high = [4.0, 2.0, 6.0, 1.5, 1.2]
    cens = [False, False, False, True, True]
    s = summarize_acceleration(low, high, cens)
    assert (s.median_low, s.median_high) == (2.0, 2.0)  # two censored runs stay below the median
    assert s.median == 2.0 and s.n_censored == 2 and s.n_runs == 5
    assert s.text().startswith("2.00×")
    # three censored runs of five: the median is only known to lie in an interval
    s = summarize_acceleration(
        [4.0, 0.5, 0.4, 0.3], [4.0, 1.5, 1.2, 2.0], [False, True, True, True]
    )
    assert s.median_low == pytest.approx(0.45) and s.median_high == pytest.approx(1.75)
    assert math.isnan(s.median) and s.text().startswith("between 0.45× and 1.75×")


def test_enhancement_factor_is_a_ratio_of_means() -> None:
    assert enhancement_factor([0.9, 0.7], [0.4, 0.4]) == pytest.approx(2.0)
    assert math.isnan(enhancement_factor([0.5], [0.0]))


def _trace(strategy: str, seed: int, values: list[float]) -> pd.DataFrame:
    calls = [16 + 8 * i for i in range(len(values))]
    return pd.DataFrame(
        {
            "strategy": strategy,
            "seed": seed,
            "round": range(len(values)),
            "calls": calls,
            "hv_norm": values,
            "front_fraction": values,
            "mae_v": 0.5,
            "coverage_95": 0.9,
            "run_seconds": 1.0,
        }
    )


def test_run_table_uses_the_random_extension_and_censors_the_strategy() -> None:
    results = pd.concat(
        [
            _trace("qlognehvi", 0, [0.5, 0.95, 0.97]),  # reaches 90 % at 24 calls
            _trace("qlognehvi", 1, [0.5, 0.6, 0.7]),  # never within 32 calls
            _trace("random", 0, [0.5, 0.6, 0.7]),  # continued below: reaches at 72
            _trace("random", 1, [0.5, 0.6, 0.91]),  # reaches at 32 within its budget
        ]
    )
    extensions = pd.DataFrame(
        {
            "seed": [0] * 6,
            "calls": [40, 48, 56, 64, 72, 80],
            "hv_norm": [0.7, 0.75, 0.8, 0.85, 0.9, 0.95],
            "front_fraction": 0.5,
        }
    )
    runs = run_table(results, extensions, pool_size=100, target=0.9).set_index(["strategy", "seed"])
    assert runs.loc[("random", 0), "random_calls_to_target"] == 72
    assert runs.loc[("random", 0), "af"] == 1.0 and not runs.loc[("random", 0), "censored"]
    assert runs.loc[("qlognehvi", 0), "af"] == pytest.approx(72 / 24)
    censored = runs.loc[("qlognehvi", 1)]
    assert censored["censored"] and math.isnan(censored["af"])
    assert censored["af_low"] == pytest.approx(32 / 100)
    assert censored["af_high"] == pytest.approx(32 / 32)


# ------------------------------------------------------------------------------ benchmark runs
def _ledger_round(workdir: Path, round_: int) -> list[str]:
    ledger = open_ledger(workdir)
    try:
        return sorted(ledger.proposals(round_)["candidate_id"])
    finally:
        ledger.close()


@pytest.fixture
def synthetic_csv(tmp_path: Path) -> Path:
    path = tmp_path / "electrodes.csv"
    synthetic_electrodes().to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_quick_benchmark_on_the_synthetic_table(synthetic_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    config = BenchmarkConfig.create(
        quick=True, data=synthetic_csv, ions=["Na", "Mg"], out=out, budget=24, init=12,
        batch=4, window=None, workers=1,
    )  # fmt: skip
    # one run was interrupted after two rounds (as a killed process leaves it): it is resumed
    interrupted = run_dir(out, "qlognehvi", 0)
    Campaign(campaign_spec(config, "qlognehvi", 0), workdir=interrupted).run(max_rounds=2)
    first_rounds = [_ledger_round(interrupted, r) for r in (0, 1)]

    result = run_benchmark(config)
    assert result.ran == 4
    assert [_ledger_round(interrupted, r) for r in (0, 1)] == first_rounds
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 2 * 2 * 4  # strategies × seeds × rounds (12 + 3 × 4 = 24 calls)
    for _, trace in results.groupby(["strategy", "seed"]):
        assert trace["calls"].tolist() == [12, 16, 20, 24]
        assert trace["hv_norm"].is_monotonic_increasing
        assert trace["hv_norm"].between(0, 1).all() and trace["front_fraction"].between(0, 1).all()
        assert math.isnan(trace["mae_v"].iloc[0])  # round 0 is the random design: no model
        assert trace["mae_v"].iloc[1:].notna().all()
        assert trace["n_unmeasured"].iloc[1:].tolist() == [80 - c for c in [12, 16, 20]]
    # every strategy of a seed starts from the same random design; seeds differ
    for seed in (0, 1):
        designs = [_ledger_round(run_dir(out, s, seed), 0) for s in ("qlognehvi", "random")]
        assert designs[0] == designs[1] and len(designs[0]) == 12
    assert _ledger_round(run_dir(out, "random", 0), 0) != _ledger_round(
        run_dir(out, "random", 1), 0
    )
    # round models are deleted once the trace is written
    assert not (run_dir(out, "qlognehvi", 0) / "models").exists()
    for name in ("summary.md", "runs.csv", "hv_vs_calls.png", "front_found.png"):
        assert (out / name).is_file()
    summary = (out / "summary.md").read_text()
    assert "acceleration vs random" in summary and "| qlognehvi |" in summary

    # finished runs are not recomputed, and the tables come out the same
    stamp = (run_dir(out, "qlognehvi", 1) / "trace.csv").stat().st_mtime_ns
    again = run_benchmark(config)
    assert again.ran == 0
    assert (run_dir(out, "qlognehvi", 1) / "trace.csv").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), results)
    # the same directory with another budget is refused
    with pytest.raises(DiscoveryError, match="budget: 24 -> 40"):
        run_benchmark(BenchmarkConfig.create(**{**config.__dict__, "budget": 40}))


@pytest.mark.slow
@pytest.mark.shared_data
def test_quick_benchmark_on_the_shared_table(shared_csv: Path, tmp_path: Path) -> None:
    """The test-sized benchmark of the issue, through the command line, two worker processes."""
    out = tmp_path / "bench"
    result = runner.invoke(
        app,
        ["benchmark", "--data", str(shared_csv), "--ions", "Na,K", "--quick", "--workers", "2",
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(zip(runs["strategy"], runs["seed"])) == [
        ("qlognehvi", 0), ("qlognehvi", 1), ("random", 0), ("random", 1)
    ]  # fmt: skip
    assert (runs["calls"] == 40).all()
    # random is never censored: its extension continues until the pool is exhausted
    assert runs.loc[runs["strategy"] == "random", "af"].eq(1.0).all()
    extension = pd.read_csv(out / "random_extension.csv")
    assert extension.groupby("seed")["hv_norm"].max().eq(1.0).all()
    assert "qlognehvi: acceleration vs random" in result.stdout


def test_bad_benchmark_settings_exit_2(tmp_path: Path, synthetic_csv: Path) -> None:
    result = runner.invoke(app, ["benchmark", "--data", str(synthetic_csv), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "give --ions" in result.stderr
    result = runner.invoke(
        app,
        ["benchmark", "--data", str(synthetic_csv), "--ions", "Na", "--out", str(tmp_path),
         "--strategies", "qlognehvi,bogus"],
    )  # fmt: skip
    assert result.exit_code == 2 and "unknown strategy ['bogus']" in result.stderr


# ------------------------------------------------------------------------------ transfer
def test_transfer_split_has_no_battery_id_leakage() -> None:
    frame = synthetic_electrodes()
    # a Li row that shares a framework id with a Na row: it must leave the source when that Na
    # framework is tested
    shared = frame[frame["working_ion"] == "Na"].iloc[[0]].assign(working_ion="Li")
    shared = shared.assign(formula_discharge=shared["formula_discharge"].str.replace("Na", "Li"))
    shared = shared.assign(formula_charge=shared["formula_charge"].str.replace("Na", "Li"))
    frame = pd.concat([frame, shared], ignore_index=True)
    shared_id = shared["battery_id"].iloc[0]
    dropped_once = False
    for seed in range(8):
        source, train, test = transfer_split(frame, "Na", seed, 0.3, ())
        ids = frame["battery_id"].to_numpy()
        assert set(ids[test]).isdisjoint(set(ids[source]) | set(ids[train]))
        assert set(frame["working_ion"].iloc[test]) == {"Na"}
        assert set(frame["working_ion"].iloc[train]) == {"Na"}
        assert "Na" not in set(frame["working_ion"].iloc[source])
        assert len(train) + len(test) == int((frame["working_ion"] == "Na").sum())
        dropped_once |= shared_id in set(ids[test])
    assert dropped_once  # the shared framework was tested (and so left out of the source) once


@pytest.fixture(scope="module")
def pretrained() -> DeepEnsemble:
    """A small ensemble trained on the Li and Mg rows of the synthetic table."""
    frame = synthetic_electrodes()
    config = EnsembleConfig(members=4, hidden=(32, 32), max_epochs=20, input_encoding="standard")
    return train_electrode_model(frame[frame["working_ion"] != "Na"], config=config)


def test_fine_tuning_starts_from_the_pretrained_model(pretrained: DeepEnsemble) -> None:
    target = synthetic_electrodes().query("working_ion == 'Na'")
    x = electrode_features(target).values
    before = pretrained.predict(x)

    def tune(**changes: object) -> DeepEnsemble:
        # standard members: on this table a mixed ensemble's 20-row fine-tune never beats its
        # start on validation, so it keeps the start's weights (as designed); the mechanics
        # under test are the same
        config = EnsembleConfig(
            members=4, hidden=(32, 32), learning_rate=1e-3, max_epochs=20, input_encoding="standard"
        )
        config = EnsembleConfig(**{**config.__dict__, **changes})
        return train_electrode_model(target.iloc[:20], config=config, init=pretrained)

    zero = tune(max_epochs=0)
    assert np.array_equal(zero.predict(x).mean, before.mean)
    assert zero.metadata["pretrained"]["ions_seen"] == ["Li", "Mg"]
    assert zero.metadata["ions_seen"] == ["Li", "Mg", "Na"]
    assert not np.array_equal(tune().predict(x).mean, before.mean)
    with pytest.raises(ValueError, match="members 4 != 8"):
        tune(members=8)


def test_feature_groups_and_permutation_importance(pretrained: DeepEnsemble) -> None:
    names = electrode_feature_names()
    groups = feature_groups(names)
    others = ("element fractions", "pair quantities", "oxidation states")
    assert len([g for g in groups if g not in others]) == 22
    assert len(groups["CovalentRadius"]) == 12  # 6 statistics × (discharged formula, difference)
    assert len(groups["pair quantities"]) == 4
    assert len(groups["oxidation states"]) == len(redox_feature_names())
    rows = synthetic_electrodes().query("working_ion == 'Li'")
    x = electrode_features(rows).values
    y = rows["average_voltage"].to_numpy()
    # NfValence is 0 for every element of the synthetic table: shuffling it changes nothing;
    # shuffling every composition feature at once leaves the model nothing to go on
    everything = sorted(i for cols in groups.values() for i in cols)
    table = permutation_importance(
        pretrained, x, y, {"NfValence": groups["NfValence"], "all": everything}, repeats=2
    )
    by_group = table.set_index("group")["importance_v"]
    assert by_group["NfValence"] == 0.0
    assert by_group["all"] > 0.3
    assert table["group"].tolist() == ["all", "NfValence"]  # largest first


@pytest.mark.slow
def test_transfer_on_the_synthetic_table(synthetic_csv: Path, tmp_path: Path) -> None:
    config = TransferConfig(
        data=synthetic_csv, targets=("Na",), out=tmp_path / "transfer", sizes=(0, 10),
        repeats=2, members=4, hidden=(32, 32), max_epochs=30, finetune_epochs=20,
        importance_repeats=1, workers=1,
    )  # fmt: skip
    result = run_transfer(config)
    curves = pd.read_csv(tmp_path / "transfer" / "transfer.csv")
    assert set(curves["size"]) == {"0", "10", "all"}
    assert (curves["n"] == 0).sum() == 2  # the pre-trained model alone, one per repeat
    assert set(curves.loc[curves["n"] == 10, "arm"]) == {"fine-tuned", "target-only"}
    assert curves["mae_v"].notna().all() and (curves["n_test"] > 0).all()
    assert set(result.importance["ion"]) == {"Na"}
    for name in ("summary.md", "learning_curves.png", "importance.csv", "transfer_table.csv"):
        assert (tmp_path / "transfer" / name).is_file()
    assert "## With 25 target rows" not in (tmp_path / "transfer" / "summary.md").read_text()
    assert run_transfer(config).curves.equals(result.curves)  # resumed: nothing recomputed
