"""The events a transfer case emits: one `transfer.v1` step per state change, and the
`disclosure.v1` record of the release. Ids are deterministic in (case, step), so a step
replayed after a crash writes the same event and consumers drop the repeat."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from homeroom.bus.envelope import OutgoingEvent, build_event
from homeroom.bus.topics import TRANSFER
from homeroom.catalogue import LegalBasis
from homeroom.disclosures import disclosure_recorded
from homeroom.events.v1.envelope_pb2 import Party
from homeroom.events.v1.transfer_pb2 import TransferStep
from services.transfer.store import Case
from services.transfer.transfers import NAMESPACE, step_event_id

SOURCE = "/homeroom/transfer"


def step(
    case: Case,
    change: str,
    step_name: str,
    *,
    reason: str = "",
    attempt: int = 0,
    causation_id: str = "",
    elements_released: Sequence[str] | None = None,
) -> OutgoingEvent:
    payload = TransferStep(
        case_id=case.case_id,
        student_key=case.student_key,
        from_district_id=case.from_district_id,
        to_district_id=case.to_district_id,
        to_school_id=case.to_school_id,
        state=case.state.value,
        reason=reason,
        elements_released=list(elements_released if elements_released is not None else case.elements_released),
        elements_withheld=[w["element"] for w in case.elements_withheld],
        legal_basis=case.legal_basis,
        decision_id=case.decision_id,
        attempt=attempt,
    )
    return build_event(
        TRANSFER,
        change,
        payload,
        source=SOURCE,
        subject=case.student_key,
        district_id=case.from_district_id,
        correlation_id=case.case_id,
        causation_id=causation_id or case.cause_event_id,
        event_id=step_event_id(case.case_id, in_round(case, step_name)),
    )


def in_round(case: Case, step_name: str) -> str:
    """A step's name within the case's current round: a case a person sent round again
    takes its steps anew, under new names (and so new event ids)."""
    return step_name if case.retries == 0 else f"{step_name}:r{case.retries}"


def disclosure_id(case_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"disclosure|{case_id}"))


def disclosure(case: Case, elements: Sequence[str], policy_version: str = "") -> OutgoingEvent:
    """The release to the receiving district, as FERPA 99.32 wants it recorded."""
    return disclosure_recorded(
        source=SOURCE,
        disclosure_id=disclosure_id(case.case_id),
        requester=Party(organization=case.to_district_id, client_id="homeroom-transfer", role="district_staff"),
        recipient=Party(organization=case.to_district_id, role="district_staff"),
        student_key=case.student_key,
        district_id=case.from_district_id,
        elements=elements,
        purpose="records_transfer",
        legal_basis=case.legal_basis or LegalBasis.TRANSFER.value,
        decision_id=case.decision_id,
        policy_version=policy_version,
        channel="transfer",
        record_required=True,
        event_id=step_event_id(case.case_id, "disclosure"),
        correlation_id=case.case_id,
        causation_id=step_event_id(case.case_id, "delivered"),
    )
