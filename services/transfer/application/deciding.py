"""Use case: decide a case (the worker's first step). Consent's decision point says whether
the record may travel and which elements; what the catalogue never lets travel is withheld
(`withholding`); a refusal closes the case, a release moves it to `decided`."""

from __future__ import annotations

from typing import Any

from homeroom.catalogue import ELEMENTS, LegalBasis
from services.transfer import events
from services.transfer.application.common import FAR_FUTURE, commit
from services.transfer.application.withholding import BadAnswer, keep_transferable
from services.transfer.metrics import REFUSALS
from services.transfer.state import TransferRuntime
from services.transfer.store import Case
from services.transfer.transfers import State


def decision_request(case: Case) -> dict[str, Any]:
    """What consent is asked: every catalogue element, for a records transfer to the receiving district."""
    return {
        "action": "transfer",
        "requester": {
            "role": "district_staff",
            "subject": f"transfer-case:{case.case_id}",
            "organization": case.to_district_id,
            "agreement_id": None,
            "district_id": case.to_district_id,
            "student_keys": [],
        },
        "student_key": case.student_key,
        "district_id": case.from_district_id,
        "school_id": None,
        "elements": [e.id for e in ELEMENTS],
        "purpose": "records_transfer",
        "data_date": None,
        "to_district_id": case.to_district_id,
    }


async def decide(runtime: TransferRuntime, case: Case) -> Case | None:
    answer = await runtime.state.consent.decide(decision_request(case))
    allow = answer.get("allow")
    allowed_raw = answer.get("elements_allowed")
    withheld_raw = answer.get("elements_withheld")
    if not isinstance(allow, bool) or not isinstance(allowed_raw, list) or not isinstance(withheld_raw, list):
        raise BadAnswer("consent", "the decision lacks allow / elements_allowed / elements_withheld")
    withheld: list[dict[str, str]] = [
        {"element": str(w.get("element", "")), "reason": str(w.get("reason", ""))}
        for w in withheld_raw
        if isinstance(w, dict)
    ]
    allowed = keep_transferable(allowed_raw, withheld)
    decision_id = str(answer.get("decision_id", ""))
    legal_basis = str(answer.get("legal_basis") or (LegalBasis.TRANSFER.value if allow else ""))
    detail = {"decision_id": decision_id, "legal_basis": legal_basis, "reason": str(answer.get("reason", ""))}
    now = runtime.clock()
    if not allow or not allowed:
        reason = str(answer.get("reason") or "consent_denied")
        moved = await commit(
            runtime,
            case,
            State.REFUSED,
            "refused",
            reason=reason,
            detail=detail | {"elements_withheld": withheld},
            build=lambda c: [events.step(c, "transfer_refused", "refused", reason="consent_denied")],
            decision_id=decision_id,
            legal_basis=legal_basis,
            elements_withheld=withheld,
            closed_at=now,
            decided_at=now,
            next_attempt_at=FAR_FUTURE,
        )
        if moved is not None:
            REFUSALS.labels("consent_denied").inc()
        return None
    return await commit(
        runtime,
        case,
        State.DECIDED,
        "decided",
        detail=detail | {"elements_allowed": allowed, "elements_withheld": withheld},
        build=lambda c: [events.step(c, "transfer_decided", "decided")],
        decision_id=decision_id,
        legal_basis=legal_basis,
        elements_released=allowed,
        elements_withheld=withheld,
        decided_at=now,
        attempt=0,
        next_attempt_at=now,
    )
