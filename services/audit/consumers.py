"""One consumer over disclosure.v1, consent.v1, transfer.v1, keys.v1 and incident.v1: one entry per event.

Idempotent twice: the kernel's ``processed_events`` drops a redelivered event before the
handler runs, and ``entries.event_id`` is UNIQUE (``store.append_many`` checks it under the
append lock), so even a second consumer group could not log one event twice.

A disclosure is never refused: FERPA 99.32 requires its record, and a release stands or
falls with it. One that breaks a rule (a text too long or with a control character, a
missing student or recipient, an unknown element) is recorded escaped, with the rules it
broke in ``details.problems`` (``entries.recorded_anyway``; the text rules are
``homeroom.entry_text``, which records applies before it releases anything) and counted in
``homeroom_audit_disclosures_escaped_total``. Any other event that cannot be an entry is
refused with ``RejectEvent``: dead-lettered to ingest.rejected.v1 with the rule and field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from google.protobuf.message import Message

from homeroom.bus.consumer import BatchHandler, HandlerContext, RejectEvent
from homeroom.bus.envelope import IncomingEvent, base_topic
from homeroom.bus.topics import CONSENT, DISCLOSURE, INCIDENT, KEYS, TRANSFER, Topic, with_suffix
from homeroom.catalogue import LegalBasis
from homeroom.entry_text import MAX_TEXT
from homeroom.events.v1.consent_pb2 import (
    AgreementChanged,
    AgreementEnded,
    ConsentGiven,
    ConsentWithdrawn,
    DataDestroyed,
    DataKeysDestroyed,
    DestructionCertification,
    DirectoryOptOutRecorded,
    DirectoryOptOutRescinded,
    GuardianshipChanged,
)
from homeroom.events.v1.disclosure_pb2 import DeidentifiedReleaseRecorded, DisclosureRecorded
from homeroom.events.v1.envelope_pb2 import Party as PartyMessage
from homeroom.events.v1.incident_pb2 import IncidentChanged
from homeroom.events.v1.transfer_pb2 import TransferStep
from homeroom.rows import field_values
from homeroom.service import ConsumerSpec
from services.audit import metrics
from services.audit.application import appending
from services.audit.entries import (
    RELEASE_TEXTS,
    DetailValue,
    EntryDraft,
    EntryProblem,
    Party,
    check,
    recorded_anyway,
)
from services.audit.state import AuditRuntime, epoch_ms

CONSUMER_NAME = "log"
SOURCE_TOPICS: tuple[Topic, ...] = (DISCLOSURE, CONSENT, TRANSFER, KEYS, INCIDENT)
# What a disclosure event carries under the entry's own names and forms.
_DISCLOSURE_FIELDS = (*RELEASE_TEXTS, "record_required")


def _party(p: PartyMessage) -> Party:
    return Party(p.organization, p.client_id, p.person, p.role)


def _occurred(event: IncomingEvent, received_at: datetime) -> datetime:
    if event.meta.HasField("time"):
        return event.meta.time.ToDatetime(tzinfo=UTC)
    return received_at


def _reject(rule: str, message: str, field: str) -> RejectEvent:
    # Counted by the kernel when dead-lettered: homeroom_events_dead_lettered_total{service="audit", rule=...}.
    return RejectEvent(rule, message, field)


def _missing(payload: Message, *fields: str) -> list[str]:
    """The rules a disclosure breaks by leaving these fields empty (recorded, not refused)."""
    missing = []
    for name in fields:
        try:
            _require(payload, name)
        except RejectEvent as refusal:
            missing.append(refusal.rule)
    return missing


def _require(payload: Message, *fields: str) -> None:
    for name in fields:
        value = getattr(payload, name)
        if isinstance(value, PartyMessage):
            # A party is an organisation, or a person with none (a parent reading their own
            # child's record): refusing the latter left parents' reads out of the log.
            if not (value.organization or value.person):
                raise _reject(
                    f"entry.{name}_missing",
                    f"{name} names neither an organization nor a person",
                    f"{name}.organization",
                )
        elif not value:
            raise _reject(f"entry.{name}_missing", f"{name} is empty", name)


def _strings(values: Sequence[str]) -> list[str]:
    return [str(v) for v in values]


def _destruction(base: EntryDraft, p: DataKeysDestroyed | DataDestroyed, details: dict[str, DetailValue]) -> EntryDraft:
    """Keys or data destroyed: of one student (`scope` "student") or one agreement, named by `subject`."""
    _require(p, "district_id", "scope", "subject")
    return replace(
        base,
        requester=_party(p.requested_by),
        student_key=p.subject if p.scope == "student" else "",
        district_id=p.district_id,
        agreement_id=p.subject if p.scope == "agreement" else "",
        details={"scope": p.scope, "subject": p.subject, **details},
    )


def to_draft(event: IncomingEvent, received_at: datetime) -> EntryDraft:
    """The entry an event makes (one without a time took place when received); raises
    RejectEvent for one that cannot be an entry."""
    topic = base_topic(event.topic).name
    base = EntryDraft(
        event_id=event.event_id, topic=topic, kind=event.change, occurred_at=_occurred(event, received_at)
    )
    p = event.payload
    draft: EntryDraft
    if isinstance(p, DisclosureRecorded):
        missing = _missing(p, "student_key", "district_id", "recipient", "legal_basis")
        if not p.elements:
            missing.append("entry.elements_missing")
        draft = replace(
            base,
            **field_values(p, _DISCLOSURE_FIELDS),
            requester=_party(p.requester),
            recipient=_party(p.recipient),
            elements=tuple(p.elements),
            redisclosure_parties=tuple(p.redisclosure_parties),
            details={"disclosure_id": p.disclosure_id} if p.disclosure_id else {},
        )
        recorded = recorded_anyway(draft, missing)
        if recorded is not draft:
            metrics.DISCLOSURES_ESCAPED.inc()
        return recorded
    elif isinstance(p, DeidentifiedReleaseRecorded):
        # A statewide statistics snapshot (FERPA 99.31(b)(1)): no student, so 99.32 needs no
        # record; it is logged anyway, with who asked and the rules it was published under.
        _require(p, "release_id", "recipient", "legal_basis")
        draft = replace(
            base,
            requester=_party(p.requester),
            recipient=_party(p.recipient),
            elements=tuple(p.elements),
            purpose=p.purpose,
            legal_basis=p.legal_basis,
            channel="reports",
            record_required=False,
            details=field_values(
                p,
                (
                    "release_id",
                    "version",
                    "school_year",
                    "period_start",
                    "period_end",
                    "rules",
                    "cells",
                    "cells_suppressed",
                    "content_sha256",
                ),
            ),
        )
    elif isinstance(p, ConsentGiven):
        _require(p, "student_key", "district_id", "recipient")
        draft = replace(
            base,
            requester=Party(person=p.recorded_by, role="parent"),
            recipient=Party(organization=p.recipient),
            student_key=p.student_key,
            district_id=p.district_id,
            elements=tuple(p.elements),
            purpose=p.purpose,
            legal_basis=LegalBasis.WRITTEN_CONSENT.value,
            details={"consent_id": p.consent_id, "method": p.method, "valid_until": p.valid_until},
        )
    elif isinstance(p, ConsentWithdrawn):
        _require(p, "student_key", "district_id")
        draft = replace(
            base,
            requester=Party(person=p.recorded_by, role="parent"),
            student_key=p.student_key,
            district_id=p.district_id,
            legal_basis=LegalBasis.WRITTEN_CONSENT.value,
            details={"consent_id": p.consent_id, "method": p.method},
        )
    elif isinstance(p, DirectoryOptOutRecorded | DirectoryOptOutRescinded):
        _require(p, "student_key", "district_id")
        draft = replace(
            base,
            requester=Party(person=p.recorded_by),
            student_key=p.student_key,
            district_id=p.district_id,
            legal_basis=LegalBasis.DIRECTORY.value,
            details={"method": p.method},
        )
    elif isinstance(p, AgreementChanged):
        _require(p, "agreement_id", "organization")
        draft = replace(
            base,
            recipient=Party(organization=p.organization, role="vendor"),
            elements=tuple(p.elements),
            agreement_id=p.agreement_id,
            details={
                "version": p.version,
                "category": p.category,
                "districts": _strings(p.districts),
                "purposes": _strings(p.purposes),
                "start_date": p.start_date,
                "end_date": p.end_date,
                "status": p.status,
            },
        )
    elif isinstance(p, AgreementEnded):
        _require(p, "agreement_id")
        draft = replace(
            base,
            recipient=Party(organization=p.organization, role="vendor"),
            agreement_id=p.agreement_id,
            details=field_values(p, ("version", "ended_on", "reason", "disposition")),
        )
    elif isinstance(p, TransferStep):
        _require(p, "case_id", "student_key", "from_district_id", "to_district_id")
        draft = replace(
            base,
            requester=Party(organization=p.to_district_id, client_id=p.to_school_id, role="district"),
            recipient=Party(organization=p.to_district_id, client_id=p.to_school_id, role="district"),
            student_key=p.student_key,
            district_id=p.from_district_id,
            elements=tuple(p.elements_released),
            purpose="records_transfer",
            legal_basis=p.legal_basis,
            decision_id=p.decision_id,
            channel="transfer",
            details={
                "case_id": p.case_id,
                "state": p.state,
                "reason": p.reason,
                "attempt": p.attempt,
                "elements_withheld": _strings(p.elements_withheld),
            },
        )
    elif isinstance(p, DataKeysDestroyed):
        draft = _destruction(base, p, {"reason": p.reason, "keys_destroyed": p.keys_destroyed})
    elif isinstance(p, DestructionCertification):
        _require(p, "agreement_id", "organization")
        draft = replace(
            base,
            requester=_party(p.recorded_by),
            recipient=Party(organization=p.organization, role="vendor"),
            agreement_id=p.agreement_id,
            details={
                **field_values(p, ("disposition", "due_on", "method", "certified_by", "completed_on")),
                "what": p.what[:MAX_TEXT],
            },
        )
    elif isinstance(p, DataDestroyed):
        draft = _destruction(
            base,
            p,
            {
                "reason": p.reason[:MAX_TEXT],
                "items_destroyed": p.items_destroyed,
                "bytes_destroyed": p.bytes_destroyed,
                "verified_unreadable": p.verified_unreadable,
                "what": _strings(p.what),
            },
        )
    elif isinstance(p, GuardianshipChanged):
        _require(p, "student_key", "district_id", "code_id" if not p.link_id else "link_id")
        draft = replace(
            base,
            requester=_party(p.acted_by),
            recipient=Party(person=p.subject, role=p.relationship) if p.subject else Party(),
            student_key=p.student_key,
            district_id=p.district_id,
            details={
                "link_id": p.link_id,
                "code_id": p.code_id,
                "relationship": p.relationship,
                "reason": p.reason[:MAX_TEXT],
                "from_district_id": p.from_district_id,
                "expires_at": p.expires_at,
            },
        )
    elif isinstance(p, IncidentChanged):
        _require(p, "incident_id", "status")
        draft = replace(
            base,
            requester=_party(p.actor),
            recipient=Party(organization=p.recipient_organization, role="vendor" if p.agreement_ids else ""),
            district_id=p.district_id,
            agreement_id=p.agreement_id or (p.agreement_ids[0] if len(p.agreement_ids) == 1 else ""),
            details={
                "incident_id": p.incident_id,
                "status": p.status,
                "agreement_ids": _strings(p.agreement_ids),
                "districts": _strings(p.districts),
                **field_values(
                    p,
                    (
                        "scope_version",
                        "scope_sha256",
                        "tree_size",
                        "students",
                        "disclosures",
                        "obligation",
                        "act",
                        "count",
                    ),
                ),
            },
        )
    else:
        raise _reject("entry.unsupported", f"{event.change} on {topic} is not an event the audit log records", "change")
    try:
        check(draft)
    except EntryProblem as problem:
        raise _reject(problem.rule, str(problem), problem.field) from None
    return draft


def log_handler(runtime: AuditRuntime) -> BatchHandler:
    """A poll's events become entries in one append (`application/appending.py`); a bad event
    fails the batch, which the kernel halves until that event is alone and dead-lettered."""
    role = runtime.settings.writer_role

    async def handle(events: Sequence[IncomingEvent], ctx: HandlerContext) -> None:
        now = runtime.clock()
        drafts = [to_draft(event, now) for event in events]
        await appending.append(ctx.conn, drafts, epoch_ms(now), role, ctx.state)

    return handle


def consumer_spec(suffix: str = "") -> ConsumerSpec:
    """The log's consumer; tests pass a suffix to read their own copies of the topics."""
    topics = [with_suffix(t, suffix) for t in SOURCE_TOPICS] if suffix else list(SOURCE_TOPICS)
    return ConsumerSpec(name=CONSUMER_NAME, topics=topics, batch_handler=log_handler)
