"""consent.v1 and keys.v1 events the consent service emits, built from its domain objects."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from typing import Any

from google.protobuf.message import Message

from homeroom.bus.envelope import OutgoingEvent, build_event
from homeroom.bus.topics import CONSENT, KEYS
from homeroom.events.v1.consent_pb2 import (
    AgreementChanged,
    AgreementEnded,
    ConsentGiven,
    ConsentWithdrawn,
    DataKeysDestroyed,
    DestructionCertification,
    DirectoryOptOutRecorded,
    DirectoryOptOutRescinded,
    GuardianshipChanged,
)
from homeroom.events.v1.envelope_pb2 import Party
from services.consent.agreements import Agreement
from services.consent.guardianship import LinkingCode
from services.consent.store import Choice

SOURCE = "/homeroom/consent"
# Namespace for derived event ids (uuid5), so a retried step writes the same id.
_NAMESPACE = uuid.UUID("6f2d0c52-5c1b-4c55-9c39-2f1f0b2b6e11")


def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join(parts)))


def _iso(day: date | None) -> str:
    return day.isoformat() if day is not None else ""


def agreement_changed(change: str, agreement: Agreement, *, status: str | None = None) -> OutgoingEvent:
    """`agreement_signed`, `agreement_amended`, `agreement_activated` or `agreement_suspended`."""
    terms = agreement.terms
    payload = AgreementChanged(
        agreement_id=agreement.id,
        version=agreement.version,
        organization=agreement.organization,
        category=agreement.category.value,
        districts=list(terms.districts),
        elements=list(terms.elements),
        purposes=list(terms.purposes),
        start_date=_iso(terms.start_date),
        end_date=_iso(terms.end_date),
        status=status or agreement.status.value,
    )
    return build_event(CONSENT, change, payload, source=SOURCE, subject=agreement.id, key=agreement.id)


def agreement_ended(agreement: Agreement, *, ended_on: date, reason: str, disposition: str) -> OutgoingEvent:
    payload = AgreementEnded(
        agreement_id=agreement.id,
        version=agreement.version,
        organization=agreement.organization,
        ended_on=ended_on.isoformat(),
        reason=reason,
        disposition=disposition,
    )
    return build_event(
        CONSENT,
        "agreement_ended",
        payload,
        source=SOURCE,
        subject=agreement.id,
        key=agreement.id,
        event_id=derived_id("agreement_ended", agreement.id),
    )


def data_keys_destroyed(
    agreement_id: str, district_id: str, *, keys_destroyed: int, reason: str, requested_by: str
) -> OutgoingEvent:
    payload = DataKeysDestroyed(
        district_id=district_id,
        scope="agreement",
        subject=agreement_id,
        reason=reason,
        keys_destroyed=keys_destroyed,
        requested_by=Party(organization="homeroom-consent", person=requested_by, role="service"),
    )
    return build_event(
        KEYS,
        "data_keys_destroyed",
        payload,
        source=f"{SOURCE}/{district_id}",
        subject=agreement_id,
        district_id=district_id,
        key=district_id,
        event_id=derived_id("data_keys_destroyed", agreement_id, district_id),
        causation_id=derived_id("agreement_ended", agreement_id),
    )


def _about_student(
    change: str,
    payload: Message,
    *,
    student_key: str,
    district_id: str,
    event_id: str | None = None,
    key: str | None = None,
) -> OutgoingEvent:
    """An event about one student in one district (its source the district's, its subject the student)."""
    return build_event(
        CONSENT,
        change,
        payload,
        source=f"{SOURCE}/{district_id}",
        subject=student_key,
        district_id=district_id,
        key=key,
        event_id=event_id,
    )


def _of_choice(change: str, payload: Message, choice: Choice, event_id: str | None = None) -> OutgoingEvent:
    return _about_student(
        change, payload, student_key=choice.student_key, district_id=choice.district_id, event_id=event_id
    )


def directory_opt_out(opted_out: bool, choice: Choice, *, event_id: str | None = None) -> OutgoingEvent:
    """`directory_opt_out_recorded` (`opted_out`) or `directory_opt_out_rescinded`."""
    kind = DirectoryOptOutRecorded if opted_out else DirectoryOptOutRescinded
    payload = kind(
        student_key=choice.student_key,
        district_id=choice.district_id,
        recorded_by=choice.recorded_by,
        method=choice.method,
    )
    change = "directory_opt_out_recorded" if opted_out else "directory_opt_out_rescinded"
    return _of_choice(change, payload, choice, event_id if opted_out else None)


def consent_given(
    choice: Choice,
    *,
    consent_id: str,
    recipient: str,
    elements: list[str],
    purpose: str | None,
    valid_until: date | None,
) -> OutgoingEvent:
    payload = ConsentGiven(
        consent_id=consent_id,
        student_key=choice.student_key,
        district_id=choice.district_id,
        recipient=recipient,
        elements=elements,
        purpose=purpose or "",
        recorded_by=choice.recorded_by,
        method=choice.method,
        valid_until=_iso(valid_until),
    )
    return _of_choice("consent_given", payload, choice, derived_id("consent_given", consent_id))


def consent_withdrawn(choice: Choice, *, consent_id: str) -> OutgoingEvent:
    payload = ConsentWithdrawn(
        consent_id=consent_id,
        student_key=choice.student_key,
        district_id=choice.district_id,
        recorded_by=choice.recorded_by,
        method=choice.method,
    )
    return _of_choice("consent_withdrawn", payload, choice, derived_id("consent_withdrawn", consent_id))


def destruction_certification(
    change: str,
    *,
    agreement_id: str,
    organization: str,
    disposition: str,
    due_on: date,
    recorded_by: Party | None = None,
    method: str = "",
    certified_by: str = "",
    completed_on: date | None = None,
    what: str = "",
) -> OutgoingEvent:
    """`destruction_requested`, `destruction_certified` or `destruction_overdue` (one of each per agreement)."""
    payload = DestructionCertification(
        agreement_id=agreement_id,
        organization=organization,
        disposition=disposition,
        due_on=due_on.isoformat(),
        method=method,
        certified_by=certified_by,
        completed_on=_iso(completed_on),
        what=what,
        recorded_by=recorded_by or Party(organization="homeroom-consent", role="service"),
    )
    return build_event(
        CONSENT,
        change,
        payload,
        source=SOURCE,
        subject=agreement_id,
        key=agreement_id,
        event_id=derived_id(change, agreement_id),
        causation_id=derived_id("agreement_ended", agreement_id),
    )


def guardianship_changed(
    change: str,
    *,
    student_key: str,
    district_id: str,
    acted_by: Party,
    link_id: str = "",
    code_id: str = "",
    subject: str = "",
    relationship: str = "",
    reason: str = "",
    from_district_id: str = "",
    expires_at: str = "",
) -> OutgoingEvent:
    """`guardian_code_issued`, `guardian_code_revoked`, `guardianship_linked`, `guardianship_revoked`
    or `guardianship_proposed`: every link, redemption and revocation reaches the audit log."""
    payload = GuardianshipChanged(
        link_id=link_id,
        code_id=code_id,
        student_key=student_key,
        district_id=district_id,
        subject=subject,
        relationship=relationship,
        acted_by=acted_by,
        reason=reason,
        from_district_id=from_district_id,
        expires_at=expires_at,
    )
    event_id = derived_id(change, link_id or code_id, reason)
    return _about_student(
        change, payload, student_key=student_key, district_id=district_id, event_id=event_id, key=student_key
    )


def code_changed(change: str, code: LinkingCode, *, acted_by: Party, expires_at: str = "") -> OutgoingEvent:
    """`guardian_code_issued` or `guardian_code_revoked`: a linking code, never the code itself."""
    return guardianship_changed(
        change,
        student_key=code.student_key,
        district_id=code.district_id,
        acted_by=acted_by,
        code_id=code.code_id,
        relationship=code.relationship.value,
        expires_at=expires_at,
    )


def link_changed(
    change: str,
    link: Mapping[str, Any],
    *,
    acted_by: Party,
    code_id: str = "",
    reason: str = "",
    from_district_id: str = "",
) -> OutgoingEvent:
    """A change of a guardianship link as stored (a `guardianships` row)."""
    return guardianship_changed(
        change,
        student_key=link["student_key"],
        district_id=link["district_id"],
        acted_by=acted_by,
        link_id=link["link_id"],
        code_id=code_id,
        subject=link["subject"],
        relationship=link["relationship"],
        reason=reason,
        from_district_id=from_district_id,
    )
