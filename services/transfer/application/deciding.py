"""Use case: decide a case (the worker's first step). Consent's decision point says whether
the record may travel and which elements travel and which are withheld, and the case keeps
that answer as given (`withholding.read_decision`); a refusal closes the case, a release moves
it to `decided`."""

from __future__ import annotations

from homeroom.catalogue import ELEMENTS
from homeroom.contracts.consent import DecisionRequest, Requester
from services.transfer import events
from services.transfer.application.common import FAR_FUTURE, commit
from services.transfer.application.withholding import read_decision
from services.transfer.metrics import REFUSALS
from services.transfer.state import TransferRuntime
from services.transfer.store import Case
from services.transfer.transfers import State


def decision_request(case: Case) -> DecisionRequest:
    """What consent is asked: every catalogue element, for a records transfer to the receiving district."""
    return DecisionRequest(
        action="transfer",
        requester=Requester(
            role="district_staff",
            subject=f"transfer-case:{case.case_id}",
            organization=case.to_district_id,
            district_id=case.to_district_id,
        ),
        student_key=case.student_key,
        district_id=case.from_district_id,
        elements=[e.id for e in ELEMENTS],
        purpose="records_transfer",
        to_district_id=case.to_district_id,
    )


async def decide(runtime: TransferRuntime, case: Case) -> Case | None:
    # What to withhold is consent's decision, kept as given (withholding.py, docs/policy.md).
    decision = read_decision(await runtime.state.consent.decide(decision_request(case)))
    decision_id, legal_basis = decision.decision_id, decision.legal_basis
    allowed, withheld = decision.released, decision.withheld
    detail = {"decision_id": decision_id, "legal_basis": legal_basis, "reason": decision.reason}
    now = runtime.clock()
    if decision.refused:
        reason = decision.reason or "consent_denied"
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
