"""Candidate spaces: pools of (working ion, charged formula, discharged formula) rows, generated
from framework templates or read from a table, and continuous composition spaces for BoTorch.

* :func:`candidate_id` / :func:`candidate_ids`: stable ids, the same however a formula is written.
* :func:`generate_pool`: templates × site mixings × ions × x, charge balanced, de-duplicated.
* :func:`load_pool`: a candidate table (CSV or parquet), validated, with ids, de-duplicated.
* :class:`ContinuousSpace`: element fractions on a site, with bounds, linear and weight-percent
  constraints, and differentiable features (torch is imported only when it is used).
"""

from __future__ import annotations

from discovery.space.continuous import ContinuousSpace
from discovery.space.generate import (
    ANION_STATES,
    OXIDATION_STATES,
    POLYANION_STATES,
    SpaceError,
    Template,
    TemplateError,
    TemplateToken,
    charge_range,
    generate_pool,
    parse_template,
)
from discovery.space.ids import candidate_id, candidate_ids, canonical_formula, canonical_formulas
from discovery.space.table import load_pool

__all__ = [
    "ANION_STATES",
    "OXIDATION_STATES",
    "POLYANION_STATES",
    "ContinuousSpace",
    "SpaceError",
    "Template",
    "TemplateError",
    "TemplateToken",
    "candidate_id",
    "candidate_ids",
    "canonical_formula",
    "canonical_formulas",
    "charge_range",
    "generate_pool",
    "load_pool",
    "parse_template",
]
