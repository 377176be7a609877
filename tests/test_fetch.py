"""Offline tests of ``fetch_insertion_electrodes``: HTTP answers are replayed with ``responses``.

The answers in ``tests/fixtures/mp_api/`` have the shape the Materials Project API serves
(``{"data": [...], "errors": [], "meta": {...}}``, emmet-core ``InsertionElectrodeDoc`` fields) with
made-up material ids (``mp-9900xx``, ``mp-9901xx``) and numbers. ``responses`` refuses every URL that
is not registered, so these tests also prove that nothing else leaves the machine.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
import responses
from responses import matchers

from discovery.data.fetch import fetch_insertion_electrodes
from discovery.data.table import ELECTRODE_COLUMNS, validate_electrodes
from discovery.errors import FetchError, UnknownIonError

FIXTURES = Path(__file__).parent / "fixtures" / "mp_api"
API = "https://api.materialsproject.org/"
HEARTBEAT = API + "heartbeat"
ELECTRODES = API + "materials/insertion_electrodes/"
KEY = "Zq8fakeTestKey0123456789abcdefXY"  # made up; mp-api insists on 32 characters
FIELDS = "material_ids,working_ion,adj_pairs"


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(autouse=True)
def _fresh_mp_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key from the environment, and no heartbeat remembered from an earlier test.

    MPRester caches the heartbeat answers per endpoint for the life of the process
    (``functools.cache``); clearing them makes every test see the same requests.
    """
    from mp_api.client import MPRester
    from mp_api.client.core.client import _Rester

    monkeypatch.delenv("MP_API_KEY", raising=False)
    MPRester.get_emmet_version.cache_clear()
    _Rester._get_heartbeat_info.cache_clear()


@pytest.fixture
def mock_api():
    """A ``responses`` mock that serves the heartbeat; unregistered URLs raise ConnectionError."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.get(HEARTBEAT, json=_load("heartbeat.json"))
        yield rsps


def _add_electrodes(rsps: responses.RequestsMock, ion: str, **answer: Any) -> None:
    """Register the answer to the query mp-api sends for one working ion."""
    if not answer:
        answer = {"json": _load(f"insertion_electrodes_{ion}.json")}
    rsps.get(
        ELECTRODES,
        match=[
            matchers.query_param_matcher({"working_ion": ion, "_limit": "1000", "_fields": FIELDS}),
            matchers.header_matcher({"x-api-key": KEY}),
        ],
        **answer,
    )


def _expected_rows(ion: str) -> list[dict[str, Any]]:
    rows = []
    for doc in _load(f"insertion_electrodes_{ion}.json")["data"]:
        for pair in doc["adj_pairs"]:
            rows.append(
                {"battery_id": f"{min(doc['material_ids'])}_{ion}", "working_ion": ion, **pair}
            )
    return rows


def test_two_ions_give_one_row_per_voltage_pair(mock_api: responses.RequestsMock) -> None:
    _add_electrodes(mock_api, "Li")
    _add_electrodes(mock_api, "Na")

    frame = fetch_insertion_electrodes(["Li", "Na"], api_key=KEY, endpoint=API)

    assert list(frame.columns) == list(ELECTRODE_COLUMNS)
    expected = pd.DataFrame(_expected_rows("Li") + _expected_rows("Na"))[list(ELECTRODE_COLUMNS)]
    assert len(frame) == 10
    pd.testing.assert_frame_equal(frame, expected)
    assert frame["battery_id"].tolist()[:5] == [
        "mp-990001_Li",
        "mp-990001_Li",
        "mp-990002_Li",
        "mp-990003_Li",
        "mp-990003_Li",
    ]
    assert frame.loc[9, ["id_charge", "id_discharge"]].tolist() == ["mp-990110", "mp-990111"]
    assert frame.attrs["mp_db_version"] == "2025.09.25"
    assert validate_electrodes(frame).problems == []
    # The key goes only to the data endpoint, as a header; the heartbeat is read without it.
    for call in mock_api.calls:
        assert KEY not in call.request.url
        if call.request.url == HEARTBEAT:
            assert "x-api-key" not in call.request.headers


def test_key_is_read_from_the_environment(
    mock_api: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MP_API_KEY", KEY)
    _add_electrodes(mock_api, "Na")

    frame = fetch_insertion_electrodes(["Na"], endpoint=API)

    assert frame["working_ion"].unique().tolist() == ["Na"]
    assert len(frame) == 5


def test_missing_key_fails_before_any_request() -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        with pytest.raises(FetchError, match="MP_API_KEY"):
            fetch_insertion_electrodes(["Li"], endpoint=API)
        assert len(rsps.calls) == 0


def test_unknown_ion_fails_before_any_request() -> None:
    with responses.RequestsMock() as rsps:
        with pytest.raises(UnknownIonError, match="Xx"):
            fetch_insertion_electrodes(["Li", "Xx"], api_key=KEY, endpoint=API)
        assert len(rsps.calls) == 0


def test_rejected_key_names_the_status_and_never_the_key(
    mock_api: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    _add_electrodes(mock_api, "Li", status=401, json=_load("error_401.json"))

    with pytest.raises(FetchError) as info:
        fetch_insertion_electrodes(["Li"], api_key=KEY, endpoint=API)

    message = str(info.value)
    assert "401" in message
    assert "rejected the API key" in message
    assert "MP_API_KEY" in message
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert KEY not in message
    assert KEY not in caplog.text
    assert KEY not in "".join(capsys.readouterr())


def test_key_echoed_by_the_server_is_scrubbed(
    mock_api: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _add_electrodes(mock_api, "Li", status=500, json={"detail": f"database timeout for key {KEY}"})

    with pytest.raises(FetchError) as info:
        fetch_insertion_electrodes(["Li"], api_key=KEY, endpoint=API)

    message = str(info.value)
    assert "server error (HTTP 500)" in message
    assert "database timeout" in message
    assert KEY not in message
    assert KEY not in caplog.text


def test_server_error_raises_fetch_error(mock_api: responses.RequestsMock) -> None:
    _add_electrodes(mock_api, "Li")
    _add_electrodes(mock_api, "Na", status=500, body="Internal Server Error")

    with pytest.raises(FetchError, match=r"HTTP 500.*try again later"):
        fetch_insertion_electrodes(["Li", "Na"], api_key=KEY, endpoint=API)


def test_connection_error_raises_fetch_error(mock_api: responses.RequestsMock) -> None:
    _add_electrodes(mock_api, "Li", body=requests.ConnectionError("Connection reset by peer"))

    with pytest.raises(FetchError, match=r"cannot reach .*network connection") as info:
        fetch_insertion_electrodes(["Li"], api_key=KEY, endpoint=API)
    assert KEY not in str(info.value)


def test_unreachable_heartbeat_raises_fetch_error() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(HEARTBEAT, body=requests.ConnectionError("Name or service not known"))
        with pytest.raises(FetchError, match="cannot reach"):
            fetch_insertion_electrodes(["Li"], api_key=KEY, endpoint=API)
        assert [call.request.url for call in rsps.calls] == [HEARTBEAT]


def test_malformed_key_is_reported_without_echoing_it(mock_api: responses.RequestsMock) -> None:
    mock_api.assert_all_requests_are_fired = False  # mp-api checks the key length first
    with pytest.raises(FetchError, match="32 characters") as info:
        fetch_insertion_electrodes(["Li"], api_key="short-key", endpoint=API)
    assert "short-key" not in str(info.value)


def test_garbled_heartbeat_raises_fetch_error() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(HEARTBEAT, status=502, body="<html>502 Bad Gateway</html>")
        with pytest.raises(FetchError, match=r"unexpected answer from .*status\.materialsproject"):
            fetch_insertion_electrodes(["Li"], api_key=KEY, endpoint=API)
