"""The disclosure record (`disclosure.v1`'s `DisclosureRecorded`), built in one place.

Every release of student data outside the owning district is recorded as one disclosure
(FERPA 99.32): records for a read (its API and OneRoster), transfer for a delivered case.
Both build the event here, so its fields and envelope are the same wherever it comes from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NotRequired, TypedDict, Unpack

from homeroom.bus.envelope import OutgoingEvent, build_event
from homeroom.bus.topics import DISCLOSURE
from homeroom.events.v1.disclosure_pb2 import DisclosureRecorded
from homeroom.events.v1.envelope_pb2 import Party


class Release(TypedDict):
    """What one disclosure says: the fields of `DisclosureRecorded`, by name."""

    disclosure_id: str
    requester: Party
    recipient: Party
    student_key: str
    district_id: str
    elements: Sequence[str]
    purpose: str
    legal_basis: str
    decision_id: str
    channel: str
    record_required: bool
    agreement_id: NotRequired[str]
    policy_version: NotRequired[str]
    redisclosure_parties: NotRequired[Sequence[str]]


def disclosure_recorded(
    *,
    source: str,
    event_id: str | None = None,
    correlation_id: str = "",
    causation_id: str = "",
    **release: Unpack[Release],
) -> OutgoingEvent:
    """One release of `elements` of one student, held by `district_id`, to `recipient`, as the
    decision `decision_id` allowed it. The event's id is the disclosure's own unless given."""
    return build_event(
        DISCLOSURE,
        "disclosure_recorded",
        DisclosureRecorded(**release),
        source=source,
        subject=release["student_key"],
        district_id=release["district_id"],
        correlation_id=correlation_id,
        causation_id=causation_id,
        event_id=event_id or release["disclosure_id"],
    )
