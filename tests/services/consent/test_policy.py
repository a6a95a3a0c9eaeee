"""The one policy engine (decisions.decide) under test, with Cedar as its oracle.

`policy.cedar` restates the rules in Cedar; the oracle below evaluates it with cedarpy, one
request per element, and the tests fail on any element the engine and Cedar disagree on over
generated requests. Cedar runs nowhere else (docs/policy.md). Then the engine is attacked
directly: an element outside the agreement, a day outside the term, a consent expired or
withdrawn, and a transfer that must withhold protected elements (the transfer service keeps the
engine's answer as given: services/transfer/application/withholding.py)."""

from __future__ import annotations

import functools
import json
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import cedarpy
from hypothesis import given, settings
from hypothesis import strategies as st

from homeroom.catalogue import CATALOGUE, FORBIDDEN, TRANSFER_SECTIONS, LegalBasis
from homeroom.contracts.consent import Decision, DecisionRequest
from services.consent import cedar_policy
from services.consent.agreements import (
    Agreement,
    AgreementCategory,
    AgreementStatus,
    AgreementTerms,
    current_status,
    governing_version,
)
from services.consent.decisions import (
    ConsentGrant,
    DecisionIds,
    Facts,
    category_basis,
    consented_elements,
    decide,
    effective_purpose,
    guardianship_refusal,
)
from services.transfer.application.deciding import decision_request
from services.transfer.application.withholding import filter_package, read_decision
from services.transfer.store import Case
from services.transfer.transfers import State
from tests.harness import ServiceEnv, ServiceUnderTest
from tests.services.consent.conftest import active_agreement, uid
from tests.services.consent.conftest import decision_request as read_request

# ---------------------------------------------------------------------- the Cedar oracle

_OPEN_END = 99_999_999
_EPOCH = date(1970, 1, 1)


def _day(value: date | None, default: int) -> int:
    return (value - _EPOCH).days if value is not None else default


@functools.cache
def _policies() -> cedarpy.PolicySet:
    return cedarpy.PolicySet.from_str(cedar_policy.policy_text())


@functools.cache
def _entities() -> cedarpy.Entities:
    entities = []
    for element_id in sorted(set(CATALOGUE) | set(FORBIDDEN)):
        entry = CATALOGUE.get(element_id)
        entities.append(
            {
                "uid": {"type": "Homeroom::Element", "id": element_id},
                "attrs": {
                    "eid": element_id,
                    "sensitivity": entry.sensitivity.value if entry else "identifier",
                    "transferable": bool(entry.transferable) if entry else False,
                    "forbidden": element_id in FORBIDDEN,
                },
                "parents": [],
            }
        )
    return cedarpy.Entities.from_json_str(json.dumps(entities))


def cedar_context(request: DecisionRequest, facts: Facts) -> dict[str, Any]:
    """What Cedar reads of a request and its facts (the same `Facts` the engine reads).
    Consents are filtered in Python: Cedar has no quantifier over a set of records."""
    requester = request.requester
    agreement: dict[str, Any] = {
        "present": False,
        "status": "",
        "basis": "",
        "districts": [],
        "schools": [],
        "elements": [],
        "purposes": [],
        "start": 0,
        "end": 0,
    }
    consented: set[str] = set()
    version = governing_version(facts.history, facts.today) if facts.history else None
    if requester.role == "vendor" and requester.agreement_id and version is not None:
        terms = version.terms
        agreement = {
            "present": True,
            "status": current_status(facts.history).value,
            "basis": "exception" if category_basis(version.category) is not None else "consent",
            "districts": list(terms.districts),
            "schools": list(terms.schools),
            "elements": list(terms.elements),
            "purposes": list(terms.purposes),
            "start": _day(terms.start_date, _OPEN_END),
            "end": _day(terms.end_date, _OPEN_END),
        }
        consented, _ = consented_elements(facts, version.id, effective_purpose(request, version))
    parent = requester.role == "parent"
    return {
        "requester": {
            "role": requester.role,
            "district_id": requester.district_id or "",
            "student_keys": sorted(requester.student_keys) if parent else [],
        },
        "student_key": request.student_key if parent else "",
        "guardian_link_ok": parent and guardianship_refusal(facts, request.district_id) is None,
        "district_id": request.district_id,
        "school_id": request.school_id or "",
        "to_district_id": request.to_district_id or "",
        "purpose": request.purpose or "",
        "data_day": _day(request.data_date, 0),
        "today": _day(facts.today, 0),
        "directory_opt_out": facts.directory_opt_out,
        "agreement": agreement,
        "consented": sorted(consented),
        "not_transferable": sorted(facts.not_transferable),
    }


def cedar_permits(request: DecisionRequest, facts: Facts, elements: list[str] | None = None) -> set[str]:
    """The elements (of those given, default the request's; unknown ids never) Cedar permits."""
    known = [
        e for e in dict.fromkeys(request.elements if elements is None else elements) if e in CATALOGUE or e in FORBIDDEN
    ]
    if not known:
        return set()
    ctx = cedar_context(request, facts)
    principal = {"type": "Homeroom::Requester", "id": "requester"}  # the policy reads context.requester
    action = {"type": "Homeroom::Action", "id": request.action}
    requests = [
        {"principal": principal, "action": action, "resource": {"type": "Homeroom::Element", "id": e}, "context": ctx}
        for e in known
    ]
    results = cedarpy.is_authorized_batch(requests, _policies(), _entities())
    for element_id, result in zip(known, results, strict=True):
        assert not result.diagnostics.errors, (element_id, result.diagnostics.errors)
    return {e for e, result in zip(known, results, strict=True) if result.allowed}


def agree(request: DecisionRequest, facts: Facts) -> None:
    """The engine and the oracle release the same elements."""
    assert set(decide(request, facts).elements_allowed) == cedar_permits(request, facts), request


# ---------------------------------------------------------------------- generated requests

# A small pool, so that requests, agreements and consents name the same elements often.
POOL = [
    "student.first_name",
    "student.last_name",
    "enrollment.grade_level",
    "attendance.daily",
    "program.iep",
    "health.immunizations",
    "discipline.suspension_dates",
    "discipline.incident_details",
]
ELEMENTS = [*POOL, "student.ssn", "made.up"]
DISTRICTS = ["d-1", "d-2"]
SCHOOLS = ["s-1", "s-2"]
PURPOSES = ["instruction", "research", "health_services"]
TODAY = date(2025, 3, 1)
DAYS = [date(2024, 1, 1), date(2025, 1, 1), date(2025, 3, 1), date(2025, 6, 1), date(2026, 1, 1)]


@st.composite
def versions(draw: st.DrawFn) -> list[Agreement]:
    count = draw(st.integers(1, 3))
    out = []
    for n in range(1, count + 1):
        start = draw(st.sampled_from([None, *DAYS, *DAYS[:3]]))
        end = draw(st.sampled_from([None, *DAYS, *DAYS[2:]]))
        if start is not None and end is not None and end < start:
            start, end = end, start
        out.append(
            Agreement(
                id="agr-1",
                version=n,
                organization="Acme",
                category=draw(st.sampled_from([AgreementCategory.VENDOR, *AgreementCategory])),
                terms=AgreementTerms(
                    elements=tuple(draw(st.lists(st.sampled_from(POOL[:-1]), max_size=6, unique=True))),
                    purposes=tuple(draw(st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=2, unique=True))),
                    districts=tuple(draw(st.lists(st.sampled_from(DISTRICTS), min_size=1, unique=True))),
                    schools=tuple(draw(st.lists(st.sampled_from(SCHOOLS), max_size=1, unique=True))),
                    start_date=start,
                    end_date=end,
                ),
                status=draw(st.sampled_from([AgreementStatus.ACTIVE] * 4 + list(AgreementStatus))),
                source="api",
                recorded_by="t",
                recorded_at=datetime(2024, 1, 1, tzinfo=UTC),
            )
        )
    return out


requesters = st.one_of(
    st.fixed_dictionaries({"role": st.just("vendor"), "agreement_id": st.sampled_from(["agr-1", "agr-1", "agr-2"])}),
    st.fixed_dictionaries({"role": st.just("vendor"), "agreement_id": st.just("agr-1")}),
    st.fixed_dictionaries(
        {"role": st.just("parent"), "student_keys": st.lists(st.sampled_from(["stu_1", "stu_2"]), min_size=1)}
    ),
    st.fixed_dictionaries(
        {"role": st.sampled_from(["district_staff", "school_staff"]), "district_id": st.sampled_from(DISTRICTS)}
    ),
    st.fixed_dictionaries({"role": st.sampled_from(["service", "operator", "compliance"])}),
)


@st.composite
def cases(draw: st.DrawFn) -> tuple[DecisionRequest, Facts]:
    request = DecisionRequest(
        action=draw(st.sampled_from(["read", "read", "transfer"])),
        requester=draw(requesters),
        student_key="stu_1",
        district_id=draw(st.sampled_from(DISTRICTS)),
        school_id=draw(st.sampled_from([None, *SCHOOLS])),
        elements=draw(st.lists(st.sampled_from(ELEMENTS), min_size=1, max_size=8)),
        purpose=draw(st.sampled_from([None, *PURPOSES])),
        data_date=draw(st.sampled_from([None, *DAYS])),
        to_district_id=draw(st.sampled_from([None, *DISTRICTS])),
    )
    history = draw(versions()) if request.requester.agreement_id == "agr-1" else []
    consents = [
        ConsentGrant(
            consent_id=f"c-{i}",
            recipient=draw(st.sampled_from(["agr-1", "agr-1", "agr-2"])),
            elements=frozenset(draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=4))),
            purpose=draw(st.sampled_from([None, *PURPOSES])),
            valid_until=draw(st.sampled_from([None, *DAYS])),
        )
        for i in range(draw(st.integers(0, 2)))
    ]
    facts = Facts(today=TODAY, history=history, directory_opt_out=draw(st.booleans()), consents=consents)
    return request, facts


@st.composite
def in_force_cases(draw: st.DrawFn) -> tuple[DecisionRequest, Facts]:
    """A vendor under an agreement in force today, with one or two things that may not fit."""
    purposes = tuple(draw(st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=2, unique=True)))
    version = Agreement(
        id="agr-1",
        version=1,
        organization="Acme",
        category=draw(st.sampled_from(list(AgreementCategory))),
        terms=AgreementTerms(
            elements=tuple(draw(st.lists(st.sampled_from(POOL[:-1]), min_size=1, max_size=6, unique=True))),
            purposes=purposes,
            districts=("d-1",),
            schools=tuple(draw(st.sampled_from([(), ("s-1",)]))),
            start_date=date(2025, 1, 1),
            end_date=draw(st.sampled_from([None, date(2026, 1, 1)])),
        ),
        status=draw(st.sampled_from([AgreementStatus.ACTIVE] * 6 + [AgreementStatus.SUSPENDED])),
        source="api",
        recorded_by="t",
        recorded_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    request = DecisionRequest(
        action="read",
        requester={"role": "vendor", "agreement_id": "agr-1"},
        student_key="stu_1",
        district_id=draw(st.sampled_from(["d-1"] * 5 + ["d-2"])),
        school_id=draw(st.sampled_from(["s-1"] * 5 + ["s-2", None])),
        elements=draw(st.lists(st.sampled_from(ELEMENTS), min_size=1, max_size=8)),
        purpose=draw(st.sampled_from([None, purposes[0], purposes[0], "research"])),
        data_date=draw(st.sampled_from([None, None, date(2025, 2, 1), date(2024, 6, 1)])),
    )
    consents = [
        ConsentGrant(
            consent_id=f"c-{i}",
            recipient="agr-1",
            elements=frozenset(draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=5))),
            purpose=draw(st.sampled_from([None, None, *PURPOSES])),
            valid_until=draw(st.sampled_from([None, None, date(2025, 1, 1), date(2026, 1, 1)])),
        )
        for i in range(draw(st.integers(0, 3)))
    ]
    facts = Facts(today=TODAY, history=[version], directory_opt_out=draw(st.booleans()), consents=consents)
    return request, facts


@st.composite
def consented_cases(draw: st.DrawFn) -> tuple[DecisionRequest, Facts]:
    """An agreement in force with consents that fit it (or nearly): the written-consent rule's cases."""
    request, facts = draw(in_force_cases())
    version = facts.history[0]
    consents = [
        ConsentGrant(
            consent_id=f"c-{i}",
            recipient="agr-1",
            elements=frozenset(draw(st.lists(st.sampled_from(request.elements), min_size=1, max_size=4))),
            purpose=draw(st.sampled_from([None, request.purpose, *version.terms.purposes])),
            valid_until=draw(st.sampled_from([None, TODAY, TODAY - timedelta(days=1)])),
        )
        for i in range(draw(st.integers(1, 2)))
    ]
    return request, Facts(today=TODAY, history=[version], directory_opt_out=facts.directory_opt_out, consents=consents)


@st.composite
def transfer_cases(draw: st.DrawFn) -> tuple[DecisionRequest, Facts]:
    to_district = draw(st.sampled_from(["d-2", "d-2", "d-1", None]))
    request = DecisionRequest(
        action="transfer",
        requester=draw(
            st.sampled_from(
                [
                    {"role": "service"},
                    {"role": "district_staff", "district_id": "d-2"},
                    {"role": "school_staff", "district_id": "d-3"},
                    {"role": "vendor", "agreement_id": "agr-1"},
                ]
            )
        ),
        student_key="stu_1",
        district_id="d-1",
        elements=draw(st.lists(st.sampled_from(ELEMENTS), min_size=1, max_size=8)),
        to_district_id=to_district,
    )
    excluded = frozenset(draw(st.lists(st.sampled_from(POOL), max_size=2)))
    return request, Facts(today=TODAY, directory_opt_out=draw(st.booleans()), not_transferable=excluded)


def test_rules_and_cedar_policy_agree_element_by_element() -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=800, deadline=None, derandomize=True)
    @given(st.one_of(cases(), in_force_cases(), consented_cases(), transfer_cases()))
    def check(case: tuple[DecisionRequest, Facts]) -> None:
        request, facts = case
        explained = decide(request, facts)
        assert set(explained.elements_allowed) == cedar_permits(request, facts)
        for rule in explained.rules:
            seen[f"{rule}:{'released' if explained.elements_allowed else 'nothing'}"] += 1
        seen[f"allow:{explained.allow}"] += 1

    check()
    # The generator reaches every rule, with and without a release, so agreement is not vacuous.
    for rule in ("agreement", "written-consent", "transfer-to-enrolling-school", "parent-inspection"):
        assert seen[f"{rule}:released"] >= 3, (rule, seen)
    assert seen["directory-opt-out:released"] + seen["directory-opt-out:nothing"] >= 3, seen
    assert seen["allow:False"] >= 50, seen


def test_every_rule_in_the_table_has_a_cedar_policy() -> None:
    from services.consent.decisions import PROHIBITIONS, RULES

    assert set(cedar_policy.policy_ids()) == {r.id for r in (*RULES, *PROHIBITIONS)}


def test_a_forbidden_element_is_withheld_even_from_the_parent_by_both() -> None:
    """A forbidden element asked by the parent is withheld by the engine, and Cedar agrees."""
    request = DecisionRequest(
        action="read",
        requester={"role": "parent", "student_keys": ["stu_1"]},
        student_key="stu_1",
        district_id="d-1",
        elements=["student.first_name", "discipline.incident_details"],
    )
    answer = decide(request, Facts(today=TODAY))
    assert answer.elements_allowed == ["student.first_name"]
    assert cedar_permits(request, Facts(today=TODAY), ["discipline.incident_details"]) == set()


def test_directory_opt_out_never_strips_a_transfer_but_binds_reads_99_37() -> None:
    """Both engines: a transfer to the enrolling school keeps the name and birth date of an
    opted-out student and obliges the sender to carry the opt-out (reads keep withholding them:
    test_decisions.test_directory_opt_out_withholds_directory_elements_until_rescinded)."""
    facts = Facts(today=TODAY, directory_opt_out=True)
    elements = ["student.first_name", "student.birth_date", "enrollment.grade_level", "attendance.daily"]
    transfer = DecisionRequest(
        action="transfer",
        requester={"role": "service", "subject": "homeroom-transfer"},
        student_key="stu_1",
        district_id="d-1",
        elements=elements,
        to_district_id="d-2",
    )
    answer = decide(transfer, facts)
    assert answer.elements_allowed == elements
    assert "directory-opt-out" not in answer.rules
    assert any("carry the parent's directory-information opt-out" in o for o in answer.obligations)
    assert cedar_permits(transfer, facts, elements) == set(elements)


# ---------------------------------------------------------------------- attacks on the engine


def _agreement(
    elements: tuple[str, ...],
    *,
    category: AgreementCategory = AgreementCategory.VENDOR,
    start: date | None = date(2025, 1, 1),
    end: date | None = date(2025, 12, 31),
    purposes: tuple[str, ...] = ("instruction",),
) -> Agreement:
    return Agreement(
        id="agr-1",
        version=1,
        organization="Acme",
        category=category,
        terms=AgreementTerms(
            elements=elements, purposes=purposes, districts=("d-1",), schools=(), start_date=start, end_date=end
        ),
        status=AgreementStatus.ACTIVE,
        source="api",
        recorded_by="t",
        recorded_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


def _vendor_read(elements: list[str], **extra: Any) -> DecisionRequest:
    return DecisionRequest(
        action="read",
        requester={"role": "vendor", "agreement_id": "agr-1"},
        student_key="stu_1",
        district_id="d-1",
        elements=elements,
        **extra,
    )


def test_an_element_outside_the_agreement_is_never_released() -> None:
    """Asked next to what the agreement lists, an element it does not list is withheld, named,
    whatever else is true: a consent to another agreement, a directory element, a forbidden
    one, one no catalogue knows; the action `transfer` asked by the vendor gets nothing."""
    facts = Facts(
        today=TODAY,
        history=[_agreement(("student.first_name", "attendance.daily"))],
        consents=[ConsentGrant("c-other", "agr-2", frozenset({"program.iep", "health.immunizations"}), None, None)],
    )
    asked = ["attendance.daily", "program.iep", "health.immunizations", "student.last_name", "student.ssn", "x.y"]
    answer = decide(_vendor_read(asked), facts)
    assert answer.elements_allowed == ["attendance.daily"]
    withheld = {w.element: w.reason for w in answer.elements_withheld}
    assert set(withheld) == set(asked) - {"attendance.daily"}
    assert withheld["program.iep"] == withheld["student.last_name"] == "not in agreement agr-1 v1"
    assert withheld["student.ssn"].startswith("never shared") and "catalogue" in withheld["x.y"]
    assert answer.legal_basis == LegalBasis.SCHOOL_OFFICIAL.value and answer.rules == ["agreement", "forbidden-element"]
    agree(_vendor_read(asked), facts)

    transfer = _vendor_read(asked).model_copy(update={"action": "transfer", "to_district_id": "d-2"})
    assert decide(transfer, facts).allow is False
    assert cedar_permits(transfer, facts) == set()


def test_a_day_outside_the_term_releases_nothing_and_its_last_day_still_does() -> None:
    """Today before the start or after the end, or data dated outside the term: nothing is
    released (`outside_term`); the first and the last day of the term are inside it."""
    history = [_agreement(("student.first_name", "attendance.daily"), start=date(2025, 1, 1), end=date(2025, 6, 30))]
    request = _vendor_read(["attendance.daily"])
    for today, data_date, inside in [
        (date(2024, 12, 31), None, False),
        (date(2025, 1, 1), None, True),
        (date(2025, 6, 30), None, True),
        (date(2025, 7, 1), None, False),
        (date(2025, 3, 1), date(2024, 12, 31), False),
        (date(2025, 3, 1), date(2025, 1, 1), True),
        (date(2025, 3, 1), date(2025, 6, 30), True),
        (date(2025, 3, 1), date(2025, 7, 1), False),
    ]:
        asked = request.model_copy(update={"data_date": data_date})
        facts = Facts(today=today, history=history)
        answer = decide(asked, facts)
        assert answer.allow is inside, (today, data_date, answer.reason)
        if not inside:
            assert answer.denial == "outside_term" and answer.elements_allowed == [], (today, data_date)
        assert cedar_permits(asked, facts) == set(answer.elements_allowed), (today, data_date)


def test_a_consent_expired_or_for_another_purpose_releases_nothing() -> None:
    """A consent-only recipient (public-health service): a consent releases its elements only
    while it is valid, to its agreement, for its purpose; never more than the agreement lists."""
    lab = _agreement(
        ("student.first_name", "health.immunizations"),
        category=AgreementCategory.PUBLIC_HEALTH_SERVICE,
        purposes=("health_services", "research"),
    )
    asked = ["student.first_name", "health.immunizations", "attendance.daily"]
    request = _vendor_read(asked, purpose="health_services")
    grant = ConsentGrant("c-1", "agr-1", frozenset(asked), "health_services", date(2025, 3, 1))
    given = Facts(today=TODAY, history=[lab], consents=[grant])
    answer = decide(request, given)
    assert answer.elements_allowed == ["student.first_name", "health.immunizations"]  # not attendance: not listed
    assert answer.legal_basis == LegalBasis.WRITTEN_CONSENT.value
    agree(request, given)
    for name, consents, today in [
        ("expired yesterday", [grant], TODAY + timedelta(days=1)),
        ("another purpose", [ConsentGrant("c-1", "agr-1", frozenset(asked), "research", None)], TODAY),
        ("another agreement", [ConsentGrant("c-1", "agr-2", frozenset(asked), None, None)], TODAY),
        ("withdrawn (no longer among the facts)", [], TODAY),
    ]:
        facts = Facts(today=today, history=[lab], consents=consents)
        answer = decide(request, facts)
        assert answer.allow is False and answer.elements_allowed == [], name
        assert all("written consent" in w.reason for w in answer.elements_withheld if w.element != "attendance.daily")
        assert cedar_permits(request, facts) == set(), name


async def test_a_withdrawn_consent_stops_the_release_at_the_running_decision_point(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    """Through the running service: a vendor (FERPA exception) gets the element its agreement
    lists, and one more only while the parent's written consent stands."""
    district, student = uid("d"), uid("stu")
    agreement = await active_agreement(svc.client, module_env, district, elements=("attendance.daily",))
    request = read_request(agreement, district, student=student, elements=("attendance.daily", "program.iep"))
    service = module_env.auth("service")

    async def allowed() -> list[str]:
        r = await svc.client.post("/v1/decisions", json=request, headers=service)
        assert r.status_code == 200, r.text
        elements: list[str] = r.json()["elements_allowed"]
        return elements

    assert await allowed() == ["attendance.daily"]
    parent = module_env.auth("parent", subject="dad", students=[student])
    r = await svc.client.post(
        f"/v1/students/{student}/consents",
        json={"district_id": district, "recipient": agreement, "elements": ["program.iep"], "method": "portal"},
        headers=parent,
    )
    assert r.status_code == 201, r.text
    assert await allowed() == ["attendance.daily", "program.iep"]
    r = await svc.client.post(
        f"/v1/students/{student}/consents/{r.json()['consent_id']}/withdraw", json={"method": "email"}, headers=parent
    )
    assert r.status_code == 200, r.text
    assert await allowed() == ["attendance.daily"]


# ---------------------------------------------------------------------- the transfer's withholding


def _case(released: list[str] | None = None) -> Case:
    at = datetime(2026, 11, 2, tzinfo=UTC)
    return Case(
        case_id="case-1",
        student_key="stu_1",
        from_district_id="d-1",
        to_district_id="d-2",
        to_school_id="b-7",
        enrollment_ref="b-7@2026-11-02",
        entry_date=at.date(),
        state=State.REQUESTED,
        reason="",
        attempt=0,
        resends=0,
        next_attempt_at=at,
        enrolled_at=at,
        opened_at=at,
        decided_at=None,
        delivered_at=None,
        closed_at=None,
        decision_id="",
        legal_basis="",
        elements_released=released or [],
        elements_withheld=[],
        package_sealed=None,
        cause_event_id="e-1",
        updated_at=at,
        clock_started_at=at,
        retries=0,
    )


def test_the_transfer_withholds_exactly_what_the_engine_withholds() -> None:
    """The transfer's request, decided by the engine and read back off the wire: what the case
    keeps is the engine's answer, element for element; the element the catalogue never lets
    travel and those the sending district excludes are withheld, and a package in which records
    sends them anyway (with their sections) arrives without them."""
    case = _case()
    request = DecisionRequest.model_validate_json(decision_request(case).model_dump_json())  # over the wire
    excluded = frozenset({"health.immunizations", "discipline.suspension_dates", "attendance.daily"})
    facts = Facts(today=TODAY, directory_opt_out=True, not_transferable=excluded)
    answer = decide(request, facts)
    kept = read_decision(Decision.model_validate_json(answer.model_dump_json()))
    assert not kept.refused and kept.legal_basis == LegalBasis.TRANSFER.value
    assert kept.released == answer.elements_allowed
    assert kept.withheld == [w.model_dump() for w in answer.elements_withheld]
    withheld = {w["element"]: w["reason"] for w in kept.withheld}
    assert withheld == {
        "discipline.incident_details": f"never shared: {FORBIDDEN['discipline.incident_details']}",
        **{e: "district d-1 does not transfer it" for e in excluded},
    }
    assert set(kept.released) == cedar_permits(request, facts)
    assert "student.first_name" in kept.released  # the opt-out travels with the record (99.37)

    everything = {e: "v" for e in CATALOGUE}
    raw = {
        "case_id": case.case_id,
        "student_key": case.student_key,
        "elements": everything,
        "elements_included": sorted(everything),
        "enrollments": [{"school_id": "a-1"}],
        "attendance": {"days": [{"date": "2026-10-01"}], "summary": {"days_absent": 1}},
        "suspension_dates": ["2026-09-15"],
        "parent_statements": [{"element": "record.parent_statement"}],
        "program_flags": ["iep", "section_504"],
        "directory_opt_out": True,
    }
    package, included = filter_package(raw, _case(kept.released))
    assert set(included) == set(package["elements"]) == set(kept.released)
    assert not set(withheld) & set(package["elements"])
    assert package["suspension_dates"] == [] and package["attendance"]["days"] == []
    assert package["attendance"]["summary"] == {"days_absent": 1}
    assert package["enrollments"] and package["parent_statements"]
    assert package["program_flags"] == ["iep", "section_504"] and package["directory_opt_out"] is True


def test_a_transfer_the_engine_refuses_keeps_nothing() -> None:
    """Asked toward the sending district itself, the engine refuses; the case keeps no element."""
    request = decision_request(_case()).model_copy(update={"to_district_id": "d-1"})
    answer = decide(request, Facts(today=TODAY))
    kept = read_decision(Decision.model_validate_json(answer.model_dump_json()))
    assert kept.refused and kept.released == [] and answer.denial == "transfer_not_lawful"
    assert cedar_permits(request, Facts(today=TODAY)) == set()


def test_every_package_section_travels_by_transferable_catalogue_elements() -> None:
    """A section whose elements could never be released would never travel: each names only
    elements the catalogue knows and lets travel."""
    for section, elements in TRANSFER_SECTIONS.items():
        assert elements, section
        for element_id in elements:
            assert CATALOGUE[element_id].transferable, (section, element_id)


def test_the_policy_document_lists_every_rule_of_the_engine() -> None:
    """docs/policy.md, what compliance staff read, names each rule of the table with its effect."""
    from services.consent.decisions import PROHIBITIONS, RULES

    text = (Path(__file__).parents[3] / "docs" / "policy.md").read_text()
    for rule in (*RULES, *PROHIBITIONS):
        assert f"| `{rule.id}` | {rule.effect} |" in text, rule.id


def test_decision_ids_are_distinct_random_uuids() -> None:
    """Ids cut from one buffer of random bytes: valid version-4 UUIDs in their canonical text,
    none repeated, across more than one refill of the buffer."""
    ids = DecisionIds()
    seen = [ids() for _ in range(2000)]  # 2000 x 16 bytes: four buffers of 8 KiB
    assert len(set(seen)) == len(seen)
    for text in seen:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
