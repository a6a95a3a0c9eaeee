"""Peer addresses: one settings helper, the same environment names, the stack's ports."""

from __future__ import annotations

import pytest

from homeroom.peers import PORTS, local_url
from homeroom.registry import SERVICES
from services.consent.settings import ConsentSettings
from services.incidents.settings import IncidentsSettings
from services.portal.settings import PortalSettings
from services.records.settings import RecordsSettings
from services.transfer.settings import TransferSettings


def test_every_service_has_its_registered_port() -> None:
    assert {name: port for name, (_, port) in SERVICES.items()} == PORTS


def test_peer_urls_default_to_the_peer_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PORTS:
        monkeypatch.delenv(f"HOMEROOM_{name.upper()}_URL", raising=False)
    transfer = TransferSettings()
    assert (transfer.consent_url, transfer.records_url) == ("http://127.0.0.1:8003", "http://127.0.0.1:8002")
    incidents = IncidentsSettings()
    assert (incidents.audit_url, incidents.consent_url, incidents.records_url) == (
        local_url("audit"),
        local_url("consent"),
        local_url("records"),
    )
    assert ConsentSettings().records_url == local_url("records")
    assert PortalSettings().reports_url == "http://127.0.0.1:8009"
    # Records fails closed: no consent address, nothing leaves the owning district.
    records = RecordsSettings()
    assert (records.consent_url, records.audit_url) == ("", "")


def test_peer_urls_come_from_the_stack_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEROOM_CONSENT_URL", "http://consent.internal:9000")
    monkeypatch.setenv("HOMEROOM_RECORDS_URL", "http://records.internal:9001")
    assert TransferSettings().consent_url == "http://consent.internal:9000"
    assert RecordsSettings().consent_url == "http://consent.internal:9000"
    assert PortalSettings().records_url == "http://records.internal:9001"
    assert IncidentsSettings(records_url="http://other:1").records_url == "http://other:1"
