"""Use case: what a transfer withholds. It asks consent's decision point and keeps its answer.

The rule is consent's, written once (services/consent/decisions.py, rule
`transfer-to-enrolling-school`: the elements the catalogue marks transferable, less those the
sending district excludes, FERPA 99.31(a)(2); docs/policy.md). Nothing here decides an element
again: the case keeps the decision's released and withheld elements as consent gave them, and the
package records sends back is cut to what that decision released, section by section, by the
catalogue's map of package sections to elements (homeroom/catalogue.py `TRANSFER_SECTIONS`).

`read_decision`: consent's answer as the case keeps it (`deciding` asks, with
`deciding.decision_request`); `filter_package`: the package cut to the release (`fetching`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeroom.catalogue import TRANSFER_SECTIONS, LegalBasis, program_flag_released, section_released
from homeroom.contracts.clients import PeerUnavailable
from homeroom.contracts.consent import Decision
from services.transfer.store import Case


class BadAnswer(PeerUnavailable):
    def __init__(self, peer: str, message: str) -> None:
        super().__init__(peer, message, retryable=True)


@dataclass(frozen=True, slots=True)
class TransferDecision:
    """Consent's answer as the case keeps it."""

    allow: bool
    released: list[str]
    withheld: list[dict[str, str]]
    decision_id: str
    legal_basis: str
    reason: str

    @property
    def refused(self) -> bool:
        return not self.allow or not self.released


def read_decision(answer: Decision) -> TransferDecision:
    """Consent's answer as the case keeps it (its shape is the contract's `Decision`, checked by
    `ConsentClient`: an answer that is not one is a retryable `PeerUnavailable`)."""
    return TransferDecision(
        allow=answer.allow,
        released=list(answer.elements_allowed),
        withheld=[w.model_dump() for w in answer.elements_withheld],
        decision_id=answer.decision_id,
        legal_basis=answer.legal_basis or (LegalBasis.TRANSFER.value if answer.allow else ""),
        reason=answer.reason,
    )


def filter_package(raw: dict[str, Any], case: Case) -> tuple[dict[str, Any], list[str]]:
    """Keep only what the decision released, whatever records sent back (defence in depth).
    Returns the package and the element ids it carries."""
    if raw.get("case_id") != case.case_id or raw.get("student_key") != case.student_key:
        raise BadAnswer("records", "the package names another case or student")
    released = set(case.elements_released)
    values = raw.get("elements") or {}
    if not isinstance(values, dict):
        raise BadAnswer("records", "package 'elements' is not an object")
    elements = {k: v for k, v in values.items() if k in released}
    package: dict[str, Any] = {
        "case_id": case.case_id,
        "student_key": case.student_key,
        "from_district_id": case.from_district_id,
        "elements": elements,
    }
    # Every section goes, empty unless the decision released one of its elements; attendance's
    # two parts ("attendance.days", "attendance.summary") each by its own element.
    attendance: dict[str, Any] = raw["attendance"] if isinstance(raw.get("attendance"), dict) else {}
    package["attendance"] = {"days": [], "summary": {}}
    for section in TRANSFER_SECTIONS:
        top, _, part = section.partition(".")
        released_here = section_released(section, released)
        if part:
            if released_here:
                package[top][part] = attendance.get(part, package[top][part])
        else:
            package[top] = (raw.get(top) or []) if released_here else []
    flags = raw.get("program_flags") or []
    package["program_flags"] = [f for f in flags if isinstance(f, str) and program_flag_released(f, released)]
    included = sorted(set(elements) | {e for e in raw.get("elements_included") or [] if e in released})
    package["elements_included"] = included
    # Not an element: the parent's choice, which travels with the record and binds the receiving district.
    package["directory_opt_out"] = raw.get("directory_opt_out") is True
    return package, included
