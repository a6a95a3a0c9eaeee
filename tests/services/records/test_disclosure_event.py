"""The one disclosure-event builder (`homeroom/disclosures.py`), which records (reads) and transfer
(deliveries) both use: what a consumer of disclosure.v1 receives from it."""

from __future__ import annotations

from typing import Any

from homeroom.bus.envelope import IncomingEvent, OutgoingEvent, decode
from homeroom.bus.topics import DISCLOSURE
from homeroom.disclosures import disclosure_recorded
from homeroom.events.v1.disclosure_pb2 import DisclosureRecorded
from homeroom.events.v1.envelope_pb2 import Party


def _read(**given: Any) -> tuple[OutgoingEvent, IncomingEvent, DisclosureRecorded]:
    fields: dict[str, Any] = {
        "source": "/homeroom/records",
        "disclosure_id": "dsc-1",
        "requester": Party(organization="Rosterly", person="app-user", role="vendor"),
        "recipient": Party(organization="Rosterly", role="vendor"),
        "student_key": "stu-1",
        "district_id": "d-a",
        "elements": ["student.first_name", "enrollment.school_id"],
        "purpose": "rostering",
        "legal_basis": "school_official",
        "decision_id": "dec-1",
        "channel": "oneroster",
        "record_required": True,
        **given,
    }
    event = disclosure_recorded(**fields)
    received = decode(event.topic, 0, 0, event.key, event.value, event.headers)
    assert isinstance(received.payload, DisclosureRecorded)
    return event, received, received.payload


def test_a_read_is_one_disclosure_event_keyed_by_its_student_and_named_by_its_disclosure() -> None:
    event, received, p = _read(agreement_id="agr-1", policy_version="p-7", redisclosure_parties=["Sub Inc"])
    assert event.topic == DISCLOSURE.name and received.change == "disclosure_recorded"
    assert event.event_id == "dsc-1" and received.event_id == "dsc-1"  # the disclosure's id, unless given
    assert event.key == b"stu-1" and received.meta.subject == "stu-1" and received.meta.district_id == "d-a"
    assert received.meta.source == "/homeroom/records" and not received.meta.correlation_id
    assert (p.disclosure_id, p.student_key, p.district_id) == ("dsc-1", "stu-1", "d-a")
    assert list(p.elements) == ["student.first_name", "enrollment.school_id"]
    assert (p.purpose, p.legal_basis, p.agreement_id, p.decision_id) == (
        "rostering",
        "school_official",
        "agr-1",
        "dec-1",
    )
    assert (p.policy_version, list(p.redisclosure_parties), p.channel) == ("p-7", ["Sub Inc"], "oneroster")
    assert p.record_required and p.requester.person == "app-user" and p.recipient.organization == "Rosterly"


def test_a_derived_disclosure_keeps_its_own_id_and_its_case() -> None:
    # Transfer's: the event id is derived from the case's step (a replay writes the same event),
    # the disclosure keeps its own id, and the case is the correlation.
    event, received, p = _read(
        source="/homeroom/transfer",
        event_id="evt-case-1",
        correlation_id="case-1",
        causation_id="evt-delivered",
        channel="transfer",
    )
    assert event.event_id == "evt-case-1" and p.disclosure_id == "dsc-1"
    assert received.meta.correlation_id == "case-1" and received.meta.causation_id == "evt-delivered"
    assert ("ce_correlationid", b"case-1") in event.headers
    assert not p.agreement_id and not list(p.redisclosure_parties)
