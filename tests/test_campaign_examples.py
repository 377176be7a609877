"""Every shipped campaign runs (reduced budget), and qLogNEHVI finds more of the Na/K front than
random proposals with the same seeds, data and initial design. Needs the shared Materials Project
table; skipped without it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from discovery.campaign import Campaign, CampaignSpec, campaign_status, load_campaign
from discovery.campaign.report import history, hypervolume_table, open_ledger

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "campaigns").glob("*.yaml"))
#: The demo needs no shared data and runs in tests/test_demo.py with its own reduced budget.
EXAMPLES = [p for p in EXAMPLES if p.stem != "demo"]

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


def reduced(spec: CampaignSpec, **budget: Any) -> CampaignSpec:
    """The same campaign with a small budget and a small, quick surrogate."""
    data = spec.model_dump()
    data["budget"] = {"rounds": 2, "initial_random": 8, **budget}
    data["batch_size"] = 4
    data["surrogate"].update(members=4, max_epochs=20)
    data["acquisition"].update(mc_samples=32, shortlist=32, num_restarts=2, raw_samples=64)
    if data["oracle"]["name"] == "model":
        data["oracle"]["options"].update(members=4, max_epochs=20)
    return CampaignSpec.model_validate(data)


def test_there_are_example_campaigns() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"na-k-retrospective", "multivalent", "continuous-layered-na"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_campaign_runs(path: Path, shared_csv: Path, tmp_path: Path) -> None:
    spec = reduced(load_campaign(path))
    outcome = Campaign(spec, base_dir=path.parent, workdir=tmp_path / "run").run()
    assert outcome.state == "finished", outcome.message
    assert outcome.rounds_complete == 2
    st = campaign_status(tmp_path / "run")
    assert st.counts["submissions"] == 8 + 4
    assert st.counts["results_ok"] + st.counts["results_failed"] == 12
    assert st.counts["results_ok"] >= 10
    assert set(st.best["working_ion"]) <= set(spec.ions)


def _final_hypervolume(spec: CampaignSpec, base_dir: Path, workdir: Path) -> float:
    Campaign(spec, base_dir=base_dir, workdir=workdir).run()
    ledger = open_ledger(workdir)
    try:
        return float(hypervolume_table(ledger, history(ledger))["hypervolume"].iloc[-1])
    finally:
        ledger.close()


def test_qlognehvi_beats_random_on_the_na_k_pool(shared_csv: Path, tmp_path: Path) -> None:
    path = REPO / "campaigns" / "na-k-retrospective.yaml"
    base = load_campaign(path)
    gains = []
    for seed in (0, 1):
        hv = {}
        for strategy in ("qlognehvi", "random"):
            data = reduced(base, rounds=4).model_dump()
            data["seed"] = seed
            data["batch_size"] = 8
            data["surrogate"].update(members=8, max_epochs=40)
            data["acquisition"]["strategy"] = strategy
            # the same reference point for both strategies: fixed, not derived per run
            data["reference_point"] = [1.0, 20.0]
            spec = CampaignSpec.model_validate(data)
            hv[strategy] = _final_hypervolume(spec, path.parent, tmp_path / f"{strategy}-{seed}")
        gains.append(hv["qlognehvi"] / hv["random"])
    assert min(gains) > 1.0, gains
