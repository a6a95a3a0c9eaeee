"""How a read is refused, each refusal counted by its reason (`homeroom_records_denials_total`):
no such student visible to the caller (404), not permitted (403), no consent decision to be
had (503: nothing is released without one), the student's data destroyed (410)."""

from __future__ import annotations

from homeroom.contracts.clients import PeerUnavailable
from homeroom.problems import Problem, problem_type
from services.records.metrics import DENIALS


def _counted(reason: str, problem: Problem) -> Problem:
    DENIALS.labels(reason).inc()
    return problem


def not_found(what: str = "student") -> Problem:
    detail = f"no such {what} visible to this caller"
    return _counted("not_found", Problem(404, "Not found", detail, type=problem_type("not-found")))


def denied(reason: str, detail: str) -> Problem:
    forbidden = Problem(403, "Forbidden", detail, type=problem_type("forbidden"), extensions={"reason": reason})
    return _counted(reason, forbidden)


def consent_unavailable(exc: PeerUnavailable) -> Problem:
    """Nothing released without a decision: 503, unless consent refused the caller's own request
    as invalid (an over-long purpose), which is the caller's 422 with consent's field errors."""
    refused = exc.refused_request()
    if refused is not None:
        return refused
    detail = f"nothing is released without a consent decision: {exc}"
    return _counted(
        "consent_unavailable", exc.as_problem("Consent service unavailable", detail, kind="consent-unavailable")
    )


def destroyed(district_id: str) -> Problem:
    detail = f"this student's data in district {district_id} was destroyed (its keys were shredded); nothing remains"
    return _counted("destroyed", Problem(410, "Destroyed", detail, type=problem_type("destroyed")))
