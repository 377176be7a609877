"""Proposals: which candidates to measure next, by BoTorch acquisition on the deep ensemble.

``propose_pool`` chooses rows of a candidate table, ``propose_continuous`` points of a continuous
composition space. Objectives and outcome constraints name outcomes: learned targets of the
ensemble (``average_voltage`` in V, ...), exact ones (:data:`EXACT_OUTCOMES`: ``capacity_grav``
in mAh/g) and derived ones (``energy_grav`` in Wh/kg). See ``docs/proposals.md``.

Importing this package costs NumPy and pandas; BoTorch is imported with the functions that need
it (``propose_pool``, ``propose_continuous`` and the model builders are loaded on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from discovery.propose.spec import (
    DERIVED_OUTCOMES,
    EXACT_OUTCOMES,
    STRATEGIES,
    Objective,
    OutcomeConstraint,
    Proposal,
    ProposalError,
)

if TYPE_CHECKING:
    from discovery.propose.continuous import propose_continuous
    from discovery.propose.models import augmented_model, table_model
    from discovery.propose.strategies import propose_pool

__all__ = [
    "DERIVED_OUTCOMES",
    "EXACT_OUTCOMES",
    "STRATEGIES",
    "Objective",
    "OutcomeConstraint",
    "Proposal",
    "ProposalError",
    "augmented_model",
    "propose_continuous",
    "propose_pool",
    "table_model",
]

_LAZY = {
    "propose_pool": "discovery.propose.strategies",
    "propose_continuous": "discovery.propose.continuous",
    "augmented_model": "discovery.propose.models",
    "table_model": "discovery.propose.models",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
