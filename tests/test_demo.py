"""The offline demo behind `make run` (campaigns/demo.yaml), with a reduced budget: a generated pool
answered by the real CHGNet oracle, one BoTorch round after the initial design, exports checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from discovery.campaign import load_campaign

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "campaigns" / "demo.yaml"


def test_demo_campaign_is_valid_and_every_candidate_has_a_prototype() -> None:
    pytest.importorskip("chgnet")
    from discovery_chgnet.prototypes import plan_pair

    from discovery.space import generate_pool

    spec = load_campaign(DEMO)
    assert spec.oracle.name == "chgnet" and {"Na", "K", "Mg"} <= set(spec.ions)
    pool = generate_pool(spec.space.frameworks, spec.ions, spec.ion_table())  # type: ignore[union-attr]
    assert len(pool) > 100
    for row in pool.itertuples():  # no candidate the oracle would have to fail
        plan_pair(row.working_ion, row.formula_charge, row.formula_discharge, spec.ion_table())


@pytest.mark.slow
def test_demo_runs_offline_with_a_reduced_budget(tmp_path: Path) -> None:
    pytest.importorskip("chgnet")
    doc = yaml.safe_load(DEMO.read_text())
    # fewer candidates (one framework, two ions), a 10-candidate design and one BoTorch round
    doc["ions"] = ["Na", "K"]
    doc["space"]["frameworks"] = [
        {
            "name": "layered-O3",
            "template": "A_x M O2",
            "sites": {"M": {"elements": ["Fe", "Co", "Ni", "Cr"], "max_elements": 2}},
            "x": [1.0],
        }
    ]
    doc["budget"] = {"rounds": 2, "initial_random": 10}
    doc["batch_size"] = 2
    doc["surrogate"] = {"members": 4, "hidden": [32, 32], "max_epochs": 60}
    doc.pop("workdir")
    campaign = tmp_path / "demo.yaml"
    campaign.write_text(yaml.safe_dump(doc))
    workdir = tmp_path / "runs" / "demo"

    run = subprocess.run(
        [sys.executable, "-m", "discovery.cli", "run", str(campaign), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "campaign finished" in run.stdout and "Pareto front" in run.stdout

    exports = workdir / "exports"
    assert {"pareto.csv", "pareto.json", "history.csv", "hypervolume.csv", "pareto.png"} <= {
        p.name for p in exports.iterdir()
    }
    history = pd.read_csv(exports / "history.csv")
    assert len(history) == 12 and set(history["round"]) == {0, 1}
    ok = history[history["status"] == "ok"]
    assert len(ok) >= 10 and set(ok["fidelity"]) == {"chgnet"}
    assert ok["average_voltage"].between(-1, 7).all()
    front = pd.read_csv(exports / "pareto.csv")
    assert len(front) >= 1
    assert json.loads((exports / "pareto.json").read_text())
