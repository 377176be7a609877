"""Campaigns: the YAML campaign file (validated models, loading, errors), the ledger and the loop.

Importing this package imports pydantic and PyYAML only; chemistry tables are loaded when a
campaign is validated, and the loop, the ledger and the reports (numpy, pandas) when one of their
names is first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from discovery.campaign.loader import (
    CampaignError,
    campaign_schema,
    dump_campaign,
    load_campaign,
    load_campaign_text,
)
from discovery.campaign.spec import (
    AcquisitionSpec,
    BudgetSpec,
    CampaignSpec,
    ComputeSpec,
    ConstraintSpec,
    ContinuousSpaceSpec,
    FrameworkSpec,
    GeneratedSpace,
    InitialDataSpec,
    IonSpec,
    LinearConstraintSpec,
    ObjectiveSpec,
    OracleSpec,
    SiteSpec,
    SpaceSpec,
    SurrogateSpec,
    TableSpace,
    template_sites,
)

if TYPE_CHECKING:
    from discovery.campaign.ledger import Ledger, LedgerError
    from discovery.campaign.loop import Campaign, RunOutcome
    from discovery.campaign.report import CampaignStatus, campaign_status, export_campaign

# Names imported on first use (PEP 562), so that importing the package stays light.
_LAZY = {
    "Campaign": "discovery.campaign.loop",
    "RunOutcome": "discovery.campaign.loop",
    "Ledger": "discovery.campaign.ledger",
    "LedgerError": "discovery.campaign.ledger",
    "CampaignStatus": "discovery.campaign.report",
    "campaign_status": "discovery.campaign.report",
    "export_campaign": "discovery.campaign.report",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AcquisitionSpec",
    "BudgetSpec",
    "Campaign",
    "CampaignError",
    "CampaignSpec",
    "CampaignStatus",
    "ComputeSpec",
    "ConstraintSpec",
    "ContinuousSpaceSpec",
    "FrameworkSpec",
    "GeneratedSpace",
    "InitialDataSpec",
    "IonSpec",
    "Ledger",
    "LedgerError",
    "LinearConstraintSpec",
    "ObjectiveSpec",
    "OracleSpec",
    "RunOutcome",
    "SiteSpec",
    "SpaceSpec",
    "SurrogateSpec",
    "TableSpace",
    "campaign_schema",
    "campaign_status",
    "dump_campaign",
    "export_campaign",
    "load_campaign",
    "load_campaign_text",
    "template_sites",
]
