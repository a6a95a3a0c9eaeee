"""The decision rules (decisions.py) and the Cedar policy (policy.cedar) give the same answer,
element by element, on generated requests; and the Cedar bound holds when they would not."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from homeroom.contracts.consent import DecisionRequest
from services.consent import cedar_policy
from services.consent.agreements import (
    Agreement,
    AgreementCategory,
    AgreementStatus,
    AgreementTerms,
)
from services.consent.decisions import ConsentGrant, Facts, decide

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
    @given(st.one_of(cases(), in_force_cases(), transfer_cases()))
    def check(case: tuple[DecisionRequest, Facts]) -> None:
        request, facts = case
        explained = decide(request, facts)
        assert set(explained.elements_allowed) == cedar_policy.permitted(request, facts, request.elements)
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


def test_the_cedar_bound_withholds_what_the_policy_does_not_permit() -> None:
    """A vendor of a consent-only category with no consent: the rules deny, Cedar agrees; and a
    forbidden element asked by the parent is withheld by both."""
    request = DecisionRequest(
        action="read",
        requester={"role": "parent", "student_keys": ["stu_1"]},
        student_key="stu_1",
        district_id="d-1",
        elements=["student.first_name", "discipline.incident_details"],
    )
    bounded = cedar_policy.decide_bounded(request, Facts(today=TODAY))
    assert bounded.elements_allowed == ["student.first_name"]
    assert cedar_policy.permitted(request, Facts(today=TODAY), ["discipline.incident_details"]) == set()


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
    assert cedar_policy.permitted(transfer, facts, elements) == set(elements)
