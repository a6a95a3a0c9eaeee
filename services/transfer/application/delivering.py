"""Use case: deliver the record (the worker's third step) and re-send it past the
acknowledgement deadline. The first delivery is the release: the `disclosure.v1` record of
it and the FERPA 99.34(a)(1) notices to the parent and the sending district are written with
the step."""

from __future__ import annotations

from collections.abc import Sequence

from homeroom import notices as homeroom_notices
from homeroom.catalogue import element as catalogue_element
from homeroom.catalogue import is_known
from homeroom.contracts.transfer_package import TransferDeliveryRequest
from homeroom.rows import field_values
from services.transfer import events
from services.transfer.application.common import commit
from services.transfer.application.fetching import open_package
from services.transfer.application.withholding import BadAnswer
from services.transfer.metrics import DEADLINE_BREACHES, TIME_TO_DELIVERY
from services.transfer.state import TransferRuntime
from services.transfer.store import Case
from services.transfer.transfers import State

_NOTICES_VIA = "e-mail and the portal's notices (homeroom.notices)"


def transfer_notices(case: Case, sent: Sequence[str]) -> list[homeroom_notices.Notice]:
    """FERPA 99.34(a)(1): the parent is told the record went to the school where the child
    enrolls, may have a copy and may challenge it; the sending district is told it left."""
    names = ", ".join(catalogue_element(e).name for e in sent if is_known(e)) or "nothing"
    withheld = "; ".join(f"{w['element']}: {w['reason']}" for w in case.elements_withheld) or "nothing"

    def notice(recipient: homeroom_notices.Recipient, subject: str, body: str) -> homeroom_notices.Notice:
        return homeroom_notices.Notice(
            recipient=recipient,
            kind="transfer_delivered",
            subject=subject,
            body=body,
            cause=f"transfer:{case.case_id}",
            student_key=case.student_key,
            district_id=case.from_district_id,
        )

    return [
        notice(
            homeroom_notices.Recipient("parent", case.student_key),
            f"Your child's record was sent to district {case.to_district_id}",
            f"Your child enrolled in district {case.to_district_id} (school {case.to_school_id}), so district "
            f"{case.from_district_id}\nsent their education record there (FERPA 34 CFR 99.31(a)(2)).\n\n"
            f"Sent: {names}.\nWithheld: {withheld}.\n\n"
            "You may ask for a copy of what was sent and, if you think it is wrong, ask for a hearing to\n"
            "challenge it (FERPA 34 CFR 99.34(a)(1)). The portal shows the transfer under your child's name.\n",
        ),
        notice(
            homeroom_notices.Recipient("district", case.from_district_id),
            f"A student's record was sent to district {case.to_district_id} (case {case.case_id})",
            f"Transfer case {case.case_id}: the record of student {case.student_key} was delivered to district "
            f"{case.to_district_id},\nschool {case.to_school_id}, where the student enrolled on "
            f"{case.entry_date.isoformat()}.\n\nSent: {names}.\nWithheld: {withheld}.\n"
            "The parent has been notified. The disclosure is in the audit log.\n",
        ),
    ]


async def deliver(runtime: TransferRuntime, case: Case, *, resend: bool) -> None:
    package = await open_package(runtime, case)
    answer = await runtime.state.records.transfer_delivery(
        TransferDeliveryRequest(
            **field_values(case, ("case_id", "student_key", "to_district_id", "to_school_id")), package=package
        )
    )
    if answer.get("delivered") is not True or answer.get("case_id") != case.case_id:
        raise BadAnswer("records", "the delivery was not confirmed for this case")
    now = runtime.clock()
    acknowledge_due = runtime.settings.deadlines.acknowledge_due(now)
    included = list(package.get("elements_included") or [])
    if resend:
        n = case.resends + 1
        resent = await commit(
            runtime,
            case,
            State.DELIVERED,
            f"resent:{n}",
            reason="acknowledgement_overdue",
            detail={"resend": n},
            build=lambda c: [events.step(c, "transfer_delivered", f"delivered:resend:{n}", reason="resent", attempt=n)],
            resends=n,
            attempt=0,
            delivered_at=now,
            next_attempt_at=acknowledge_due,
        )
        if resent is not None:
            DEADLINE_BREACHES.labels("acknowledgement").inc()
        return
    moved = await commit(
        runtime,
        case,
        State.DELIVERED,
        "delivered",
        detail={"elements_included": included, "to_school_id": case.to_school_id},
        build=lambda c: [
            events.disclosure(c, included),
            events.step(c, "transfer_delivered", "delivered", elements_released=included),
        ],
        notices=transfer_notices(case, included),
        extra_history=[
            (
                "notified:sending_district",
                {
                    "recipient": case.from_district_id,
                    "notice": "record sent to the enrolling school",
                    "via": _NOTICES_VIA,
                },
            ),
            (
                "notified:parent",
                {
                    "recipient": "parent of " + case.student_key,
                    "notice": "FERPA 99.34(a)(1): record sent to the enrolling school; a copy may be requested",
                    "via": _NOTICES_VIA,
                },
            ),
        ],
        delivered_at=now,
        attempt=0,
        next_attempt_at=acknowledge_due,
    )
    if moved is not None:
        TIME_TO_DELIVERY.observe(max(0.0, (now - case.enrolled_at).total_seconds()))
