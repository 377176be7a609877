"""Finding oracles: every oracle, built in or from a plugin, is an entry point of the group
``discovery.oracles`` whose object has ``from_options(options, context) -> Oracle``.

The built-in oracles are registered in this package's own ``pyproject.toml`` exactly as a plugin
registers its own, so there is one way in.
"""

from __future__ import annotations

__all__ = ["ENTRY_POINT_GROUP", "make_oracle", "oracle_entry_points", "oracle_names"]

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from discovery.errors import DiscoveryError
from discovery.oracles.base import Oracle, OracleContext

ENTRY_POINT_GROUP = "discovery.oracles"


def oracle_entry_points() -> dict[str, EntryPoint]:
    """Installed oracle entry points by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def oracle_names() -> list[str]:
    """Names of the installed oracles, sorted."""
    return sorted(oracle_entry_points())


def make_oracle(name: str, options: Mapping[str, Any], context: OracleContext) -> Oracle:
    """Create the oracle ``name`` with its ``options`` (the campaign file's ``oracle.options``)."""
    points = oracle_entry_points()
    if name not in points:
        known = ", ".join(sorted(points)) or "none installed"
        raise DiscoveryError(f"oracle.name: unknown oracle {name!r} (installed: {known})")
    factory = points[name].load()
    oracle = factory.from_options(dict(options), context)
    if not isinstance(oracle, Oracle):
        raise DiscoveryError(
            f"oracle {name!r} ({points[name].value}) does not implement the Oracle protocol "
            "(name, fidelity, submit, poll, collect, close)"
        )
    return oracle
