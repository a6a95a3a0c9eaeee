"""The decision point answers a request from the answers it already gave at this version of
the facts (`facts.DecisionFacts.decide`): requests that differ only in the student, whose own
facts are alike, share one answer but each gets its own id. Proved here against the engine
itself on facts built by hand (nothing filtered: every consent the student has), over requests
that differ in every field the rules read; and the answers held are dropped when the facts
move. No database: the facts are filled in directly."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

from homeroom.contracts.consent import DecisionRequest
from services.consent import decisions
from services.consent.agreements import Agreement, AgreementCategory, AgreementStatus, AgreementTerms
from services.consent.decisions import ConsentGrant, Facts
from services.consent.facts import DecisionFacts

NOW = datetime(2025, 3, 3, 12, tzinfo=UTC)
ELEMENTS = ["student.first_name", "attendance.daily", "health.immunizations", "student.ssn", "no.such.element"]


def _agreement(agreement_id: str, category: AgreementCategory, **terms: Any) -> Agreement:
    return Agreement(
        id=agreement_id,
        version=1,
        organization=agreement_id,
        category=category,
        terms=AgreementTerms(
            **{
                "elements": ("student.first_name", "attendance.daily", "health.immunizations"),
                "purposes": ("instruction", "health_services"),
                "districts": ("d-1",),
                "start_date": date(2025, 1, 1),
                "end_date": date(2025, 12, 31),
            }
            | terms
        ),
        status=AgreementStatus.ACTIVE,
        source="api",
        recorded_by="t",
        recorded_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


def _grant(recipient: str, elements: tuple[str, ...], purpose: str | None = None) -> ConsentGrant:
    return ConsentGrant(str(uuid.uuid4()), recipient, frozenset(elements), purpose, None)


def _facts() -> DecisionFacts:
    facts = DecisionFacts(version=7)
    facts.histories = {
        "vendor-a": [_agreement("vendor-a", AgreementCategory.VENDOR)],
        "lab-b": [_agreement("lab-b", AgreementCategory.PUBLIC_HEALTH_SERVICE)],
        "classes-c": [_agreement("classes-c", AgreementCategory.VENDOR, schools=("sch-1",), classes=("math-1",))],
    }
    facts.opted_out = {("s-2", "d-1"), ("s-4", "d-1")}
    # s-3 and s-4 consented to the lab alike (other consent ids); s-5 to another recipient only
    facts.consents = {
        ("s-3", "d-1"): [_grant("lab-b", ("health.immunizations", "student.first_name"))],
        ("s-4", "d-1"): [_grant("lab-b", ("health.immunizations",), "health_services")],
        ("s-5", "d-1"): [_grant("classes-c", ("health.immunizations",))],
    }
    facts.exclusions = {"d-1": frozenset({"attendance.daily"})}
    facts.guardians = {("s-1", "d-1"): {"mum": "active"}, ("s-2", "d-1"): {"mum": "revoked"}}
    facts.registered = {"mum"}
    return facts


def _requests() -> list[DecisionRequest]:
    requesters: list[dict[str, Any]] = [
        {"role": "vendor", "subject": "app", "agreement_id": "vendor-a"},
        {"role": "vendor", "subject": "app", "agreement_id": "lab-b"},
        {"role": "vendor", "subject": "app", "agreement_id": "classes-c"},
        {"role": "vendor", "subject": "app", "agreement_id": "unknown"},
        {"role": "district_staff", "subject": "t", "district_id": "d-1"},
        {"role": "district_staff", "subject": "t", "district_id": "d-2"},
        {"role": "service", "subject": "transfer"},
        {"role": "parent", "subject": "mum", "student_keys": ["s-1", "s-2"]},
    ]
    # Neighbours differ in one field each.
    asked: list[dict[str, Any]] = [
        {"action": "read", "elements": ELEMENTS[:3]},
        {"action": "read", "elements": ELEMENTS[:2]},
        {"action": "read", "elements": ELEMENTS},
        {"action": "read", "elements": ELEMENTS[:3], "purpose": "health_services"},
        {"action": "read", "elements": ELEMENTS[:3], "purpose": "instruction"},
        {"action": "read", "elements": ELEMENTS[:3], "school_id": "sch-1"},
        {"action": "read", "elements": ELEMENTS[:3], "data_date": "2026-01-02"},
        {"action": "read", "elements": ELEMENTS[:3], "school_id": "sch-1", "class_ids": ["math-1"]},
        {"action": "read", "elements": ELEMENTS[:3], "school_id": "sch-1", "class_ids": ["art-2"]},
        {"action": "transfer", "elements": ELEMENTS[:3]},
        {"action": "transfer", "elements": ELEMENTS[:3], "to_district_id": "d-9"},
    ]
    return [
        DecisionRequest.model_validate(
            {"requester": requester, "student_key": student, "district_id": district} | fields
        )
        for requester, fields, student, district in itertools.product(
            requesters, asked, ["s-1", "s-2", "s-3", "s-4", "s-5"], ["d-1", "d-2"]
        )
    ]


def _engine(facts: DecisionFacts, request: DecisionRequest) -> Facts:
    """The facts as the engine is given them, every consent of the student included."""
    pair = (request.student_key, request.district_id)
    vendor = request.requester.agreement_id if request.requester.role == "vendor" else None
    parent = request.requester.role == "parent"
    return Facts(
        today=NOW.date(),
        history=facts.histories.get(vendor, []) if vendor else [],
        directory_opt_out=pair in facts.opted_out,
        consents=facts.consents.get(pair, []),
        not_transferable=facts.exclusions.get(request.district_id, frozenset()),
        guardianship=facts.guardians.get(pair, {}).get("mum") if parent else None,
        guardian_registered=parent,
    )


def _without_id(answer_json: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(answer_json)
    assert uuid.UUID(answer.pop("decision_id")).version == 4
    return answer


def test_an_answer_held_is_the_answer_the_engine_gives() -> None:
    facts = _facts()
    requests = _requests() * 2  # the second time round every answer but a parent's is held
    answers = facts.decide(requests, NOW)
    engine = [decisions.decide(r, _engine(facts, r)) for r in requests]
    for request, answer, expected in zip(requests, answers, engine, strict=True):
        assert _without_id(answer.json(decisions.new_decision_id())) == expected.model_dump(exclude={"decision_id"}), (
            request
        )
        assert (answer.allow, answer.denial, answer.agreement_id) == (
            expected.allow,
            expected.denial,
            expected.agreement_id,
        )
    # The requests differ in all the rules read, so the answers do: several, not one.
    assert len({a.after_id for a in answers}) > 20
    # Two students whose own facts are alike share an answer (s-1 and s-5 ask a vendor's
    # agreement alike: no opt-out, no consent to it); an opted-out one does not.
    first = len(requests) // 2
    held = {
        (r.student_key, r.district_id, r.requester.agreement_id, r.action, len(r.elements)): a
        for r, a in zip(requests, answers, strict=True)
    }
    assert held["s-1", "d-1", "vendor-a", "read", 2] is held["s-5", "d-1", "vendor-a", "read", 2]
    assert held["s-1", "d-1", "vendor-a", "read", 2] is not held["s-2", "d-1", "vendor-a", "read", 2]
    assert all(
        a is b
        for r, a, b in zip(requests[:first], answers[:first], answers[first:], strict=True)
        if r.requester.role != "parent"
    )
    # ... and each decision still gets its own id.
    assert len({decisions.new_decision_id() for _ in answers}) == len(answers)


def test_answers_held_are_dropped_when_the_facts_move() -> None:
    facts = _facts()
    request = _requests()[0]  # vendor-a, s-1
    [first] = facts.decide([request], NOW)
    assert first.allow and facts.decide([request], NOW)[0] is first  # held
    facts.histories["vendor-a"] = [
        _agreement("vendor-a", AgreementCategory.VENDOR).model_copy(update={"status": AgreementStatus.SUSPENDED})
    ]
    facts.version += 1  # what a refresh does after reading the change
    [after] = facts.decide([request], NOW)
    assert not after.allow and after.denial == "agreement_suspended"
    # A day later the terms are read again too (a term that ended yesterday).
    facts.histories["vendor-a"] = [_agreement("vendor-a", AgreementCategory.VENDOR, end_date=NOW.date())]
    facts.version += 1
    assert facts.decide([request], NOW)[0].allow
    [tomorrow] = facts.decide([request], NOW.replace(day=NOW.day + 1))
    assert tomorrow.denial == "outside_term"
