"""Oracles: who answers the candidates a campaign proposes (a replay of known data, a reference
model, and through plugins DFT proxies and labs).

See :mod:`discovery.oracles.base` for the protocol and :mod:`discovery.oracles.registry` for how
oracles are found (entry points of the group ``discovery.oracles``).
"""

from discovery.oracles.base import JobStatus, Oracle, OracleContext, Request, Result, utc_now
from discovery.oracles.registry import ENTRY_POINT_GROUP, make_oracle, oracle_names

__all__ = [
    "ENTRY_POINT_GROUP",
    "JobStatus",
    "Oracle",
    "OracleContext",
    "Request",
    "Result",
    "make_oracle",
    "oracle_names",
    "utc_now",
]
