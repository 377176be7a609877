"""Download insertion-electrode voltage pairs from the Materials Project (mp-api).

The result has the columns of :data:`~discovery.data.table.ELECTRODE_COLUMNS`, one row per voltage
pair (``adj_pairs`` of each electrode document): ``average_voltage`` in V vs the ion metal,
``capacity_grav`` in mAh/g, ``capacity_vol`` in mAh/cm3, ``energy_grav`` in Wh/kg, ``energy_vol`` in
Wh/L, ``max_delta_volume`` as a fraction, ``stability_charge`` / ``stability_discharge`` in eV/atom
above the convex hull. Materials Project data are licensed CC BY 4.0 and must be attributed.

The API key is never logged or put into an error message.
"""

from __future__ import annotations

__all__ = ["fetch_insertion_electrodes"]

import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from discovery.chemistry.ions import DEFAULT_IONS
from discovery.data.table import ELECTRODE_COLUMNS
from discovery.errors import DiscoveryError, FetchError

logger = logging.getLogger(__name__)

#: Fields requested from ``materials/insertion_electrodes``. ``battery_id`` is not a field of
#: emmet-core's ``InsertionElectrodeDoc`` (it is derived from ``material_ids`` and ``working_ion``),
#: so mp-api refuses to request it.
_FIELDS = ["material_ids", "working_ion", "adj_pairs"]
#: Columns copied as they are from each ``InsertionVoltagePairDoc`` in ``adj_pairs``.
_PAIR_COLUMNS = [c for c in ELECTRODE_COLUMNS if c not in ("battery_id", "working_ion")]
_KEY_HELP = "set MP_API_KEY to your key from https://materialsproject.org/api"


def fetch_insertion_electrodes(
    ions: Sequence[str],
    *,
    api_key: str | None = None,
    endpoint: str | None = None,
) -> pd.DataFrame:
    """Download every insertion-electrode voltage pair for the given working ions.

    Args:
        ions: working-ion symbols (``["Li", "Na"]``); each must be in the default ion table.
        api_key: Materials Project API key; defaults to the ``MP_API_KEY`` environment variable.
        endpoint: API base URL; defaults to mp-api's (``https://api.materialsproject.org/``).

    Returns:
        One row per voltage pair, columns :data:`ELECTRODE_COLUMNS` in that order, rows grouped by
        ion in the order given. ``battery_id`` is ``<lowest material id>_<ion>`` (legacy form,
        e.g. ``mp-22526_Li``). ``attrs["mp_db_version"]`` holds the database version served.

    Raises:
        UnknownIonError: an ion not in the ion table (before any network call).
        FetchError: no API key (before any network call), the key was rejected, or the request
            failed (HTTP error, no connection, unexpected answer).
    """
    symbols = list(dict.fromkeys([ions] if isinstance(ions, str) else ions))
    if not symbols:
        raise DiscoveryError("no working ions given (for example: Li,Na)")
    for symbol in symbols:
        DEFAULT_IONS[symbol]  # raises UnknownIonError
    key = (api_key or os.environ.get("MP_API_KEY") or "").strip()
    if not key:
        raise FetchError(f"no Materials Project API key: {_KEY_HELP}")

    from mp_api.client.core.exceptions import MPRestError
    from requests import RequestException

    try:
        docs, db_version = _download(symbols, key, endpoint)
    except (MPRestError, RequestException, KeyError, ValueError) as exc:
        message = _explain(exc, key, endpoint)
    else:
        frame = pd.DataFrame(
            [row for ion, ion_docs in docs for doc in ion_docs for row in _rows(doc, ion)],
            columns=list(ELECTRODE_COLUMNS),
        )
        frame.attrs["mp_db_version"] = db_version
        logger.info(
            "fetched %d voltage pairs for %s (Materials Project database %s, CC BY 4.0)",
            len(frame),
            ",".join(symbols),
            db_version or "version unknown",
        )
        return frame
    # Raised outside the handler so that no chained exception (which may hold the key) is kept.
    raise FetchError(message)


def _download(
    ions: list[str], key: str, endpoint: str | None
) -> tuple[list[tuple[str, list[Any]]], str]:
    """Query ``GET {endpoint}materials/insertion_electrodes/?working_ion=ION`` once per ion.

    MPRester's constructor itself reads ``GET {endpoint}heartbeat`` (server and database version,
    no key sent); mp-api follows ``meta.total_doc`` across pages of 1000 documents.
    """
    from mp_api.client import MPRester

    with MPRester(key, endpoint=endpoint, mute_progress_bars=True) as mpr:
        rester = mpr.materials.insertion_electrodes
        docs = []
        for ion in ions:
            logger.info("fetching %s insertion electrodes from %s", ion, rester.base_endpoint)
            docs.append((ion, rester.search(working_ion=ion, fields=_FIELDS)))
        return docs, str(mpr.db_version or "")


def _rows(doc: Any, ion: str) -> list[dict[str, Any]]:
    """One ``ELECTRODE_COLUMNS`` record per voltage pair of an ``InsertionElectrodeDoc``."""
    working_ion = str(getattr(doc, "working_ion", None) or ion)
    ids = getattr(doc, "material_ids", None) or []
    material_ids = [m for m in ids if not str(m).startswith("mvc")]
    battery_id = f"{min(material_ids)}_{working_ion}" if material_ids else None
    rows = []
    for pair in getattr(doc, "adj_pairs", None) or []:
        row: dict[str, Any] = {"battery_id": battery_id, "working_ion": working_ion}
        for column in _PAIR_COLUMNS:
            value = getattr(pair, column)
            row[column] = str(value) if column.startswith("id_") and value is not None else value
        rows.append(row)
    return rows


def _explain(exc: Exception, key: str, endpoint: str | None) -> str:
    """A one-line message for a failed download, with the key scrubbed out."""
    from requests import RequestException

    detail = " ".join(str(exc).replace(key, "<MP_API_KEY>").split()) or type(exc).__name__
    where = endpoint or "the Materials Project API"
    if isinstance(exc, (KeyError, ValueError)):  # an answer that is not the JSON mp-api expects
        return (
            f"unexpected answer from {where} ({type(exc).__name__}: {detail}); the service may be "
            "down, see https://status.materialsproject.org/"
        )
    # mp-api re-raises requests' errors as MPRestError(str(error)) inside its except clause.
    if isinstance(exc, RequestException) or isinstance(exc.__context__, RequestException):
        return f"cannot reach {where}: check the network connection ({detail})"
    match = re.search(r"status code (\d{3})", detail)
    status = int(match.group(1)) if match else None
    if status in (401, 403):
        return (
            f"the Materials Project rejected the API key (HTTP {status}); "
            f"check that the key is valid and {_KEY_HELP}"
        )
    if status is not None and status >= 500:
        return (
            f"Materials Project server error (HTTP {status}) at {where}; try again later "
            f"(status page: https://status.materialsproject.org/). Detail: {detail}"
        )
    if "32 characters" in detail:
        return f"malformed Materials Project API key (it must be 32 characters); {_KEY_HELP}"
    return f"Materials Project request failed: {detail}"
