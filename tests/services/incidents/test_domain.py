"""The incidents service's pure rules, without servers: the 8 NYCRR 121.10 clocks and their start
events, a district's shorter deadlines, readability under key destruction, the scope's counts,
and the letters' languages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from homeroom.contracts.disclosure_selection import DisclosureSelection, SelectedEntry
from homeroom.tlog.canonical import format_time
from services.incidents.incidents import (
    DeadlineError,
    Discoverer,
    Facts,
    Kind,
    check_district_deadlines,
    plan,
    remaining,
    standing,
)
from services.incidents.letters import IncidentFacts, family_letter, letter_language
from services.incidents.scope import ScopeBuilder, ScopeError

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def facts(**overrides: Any) -> Facts:
    values: dict[str, Any] = {
        "discovered_at": T0,
        "discovered_by": Discoverer.RECIPIENT,
        "contractor_involved": True,
        "contractor_notified_at": {},
        "districts": ["d-1", "d-2"],
    }
    values.update(overrides)
    return Facts(**values)


def by_key(plans: list[Any]) -> dict[tuple[str, str, str], Any]:
    return {(p.kind.value, p.district_id, p.basis): p for p in plans}


def test_a_contractors_report_starts_each_agencys_clocks_when_that_agency_receives_it() -> None:
    plans = by_key(plan(facts(contractor_notified_at={"d-1": T0 + 2 * DAY}), {}))
    assert plans[("contractor_to_agency", "d-1", "law")].due_at == T0 + 7 * DAY
    cpo = plans[("agency_to_cpo", "d-1", "law")]
    assert cpo.starts_at == T0 + 2 * DAY and cpo.due_at == T0 + 12 * DAY and "121.10(b)" in cpo.citation
    assert plans[("agency_to_parents", "d-1", "law")].due_at == T0 + 62 * DAY
    # d-2 has not received the contractor's notice: its clocks have not started.
    assert plans[("agency_to_cpo", "d-2", "law")].due_at is None
    assert plans[("agency_to_parents", "d-2", "law")].starts_at is None


def test_an_agencys_own_discovery_starts_its_clocks_even_if_the_contractors_notice_comes_later_121_10_d() -> None:
    plans = by_key(plan(facts(discovered_by=Discoverer.DISTRICT, contractor_notified_at={"d-1": T0 + 5 * DAY}), {}))
    cpo = plans[("agency_to_cpo", "d-1", "law")]
    assert cpo.due_at == T0 + 10 * DAY and "121.10(d)" in cpo.citation and "discovery" in cpo.start_event
    early = by_key(plan(facts(discovered_by=Discoverer.DISTRICT, contractor_notified_at={"d-1": T0 - DAY}), {}))
    assert early[("agency_to_cpo", "d-1", "law")].due_at == T0 + 9 * DAY  # the notice came first


def test_a_system_breach_owes_no_contractor_notice_and_a_district_may_only_shorten() -> None:
    plans = by_key(plan(facts(contractor_involved=False, discovered_by=Discoverer.COMPLIANCE), {}))
    assert not any(k[0] == "contractor_to_agency" for k in plans)
    shorter = by_key(plan(facts(contractor_notified_at={"d-1": T0}), {"d-1": {Kind.CONTRACTOR_TO_AGENCY: 24}}))
    own = shorter[("contractor_to_agency", "d-1", "district")]
    assert own.due_at == T0 + DAY and "1 calendar day" in own.citation
    assert ("contractor_to_agency", "d-2", "district") not in shorter
    check_district_deadlines({Kind.AGENCY_TO_CPO: 239})
    for hours in (240, 0, 10_000):
        with pytest.raises(DeadlineError):
            check_district_deadlines({Kind.AGENCY_TO_CPO: hours})


def test_a_delayed_notice_is_due_seven_days_after_the_delay_ends_121_10_e() -> None:
    delayed = by_key(plan(facts(discovered_by=Discoverer.DISTRICT, parents_delayed=True), {}))
    assert delayed[("agency_to_parents", "d-1", "law")].due_at is None
    ended = by_key(
        plan(facts(discovered_by=Discoverer.DISTRICT, parents_delayed=True, parents_delay_ended_at=T0 + 80 * DAY), {})
    )
    parents = ended[("agency_to_parents", "d-1", "law")]
    assert parents.due_at == T0 + 87 * DAY and "seven calendar days" in parents.citation
    assert ended[("agency_to_cpo", "d-1", "law")].due_at == T0 + 10 * DAY  # the CPO clock does not wait


def test_standing_and_what_is_left() -> None:
    due = T0 + 10 * DAY
    assert standing(due, None, "open", T0) == "open" and standing(due, None, "open", due + DAY) == "overdue"
    assert standing(due, due - DAY, "met", due) == "met" and standing(due, due + DAY, "met", due) == "met_late"
    assert standing(None, None, "delayed", T0) == "delayed" and standing(None, None, "open", T0) == "waiting"
    assert standing(due, T0, "not_required", T0) == "not_required"
    assert remaining(due, T0) == "10 days 0 hours left"
    assert remaining(due, due + timedelta(hours=5)) == "5 hours overdue"
    assert remaining(due, due - timedelta(minutes=7)) == "7 minutes left"


SELECTION = DisclosureSelection(agreement_ids=["agr-1"], until=T0 + 30 * DAY)
START = T0 + 20 * DAY


def disclosed(index: int, student: str, at: datetime, elements: list[str], **fields: Any) -> SelectedEntry:
    entry = {
        "kind": "disclosure_recorded",
        "agreement_id": "agr-1",
        "recipient": {"organization": "Acme"},
        "district_id": "d-1",
        "student_key": student,
        "elements": elements,
        "occurred_at": format_time(at),
        **fields,
    }
    return SelectedEntry("disclosure", index, b"\0" * 32, entry)


def destroyed(index: int, scope: str, subject: str, at: datetime, district: str = "d-1") -> SelectedEntry:
    entry = {
        "kind": "data_keys_destroyed",
        "district_id": district,
        "student_key": subject if scope == "student" else "",
        "agreement_id": subject if scope == "agreement" else "",
        "occurred_at": format_time(at),
        "details": {"scope": scope, "subject": subject},
    }
    return SelectedEntry("destruction", index, b"\0" * 32, entry)


def test_data_shredded_before_the_exposure_is_not_readable_and_a_later_disclosure_is() -> None:
    builder = ScopeBuilder(SELECTION, START)
    for item in (
        disclosed(1, "stu_a", T0, ["student.first_name", "attendance.daily"]),
        disclosed(2, "stu_a", T0 + 12 * DAY, ["attendance.daily"]),  # after the shredding: readable again
        disclosed(3, "stu_b", T0 + DAY, ["student.first_name"]),
        disclosed(4, "stu_c", T0 + 5 * DAY, ["student.first_name"]),  # shredded at the very same moment
        disclosed(5, "stu_d", T0 + DAY, ["student.first_name"], district_id="d-2"),
        destroyed(10, "student", "stu_a", T0 + 10 * DAY),
        destroyed(11, "agreement", "agr-1", T0 + 5 * DAY),  # the agreement's copies in d-1
    ):
        builder.add(item)
    students, totals = builder.finish()
    found = {(s.district_id, s.student_key): s for s in students}
    a = found[("d-1", "stu_a")]
    assert a.elements == ["attendance.daily"] and a.unreadable_elements == ["student.first_name"]
    assert a.destructions == [10, 11] and a.first_shared < a.last_shared
    assert found[("d-1", "stu_b")].elements == [] and found[("d-1", "stu_c")].elements == []
    assert found[("d-2", "stu_d")].elements == ["student.first_name"]  # d-1's shredding does not cover d-2
    assert totals["students"] == 2 and totals["students_unreadable_only"] == 2 and totals["disclosures"] == 5
    assert totals["districts"]["d-1"] == {"students": 1, "students_unreadable_only": 2, "disclosures": 4}


def test_a_teachers_data_released_with_a_roster_is_counted_as_staff_never_as_a_student() -> None:
    builder = ScopeBuilder(SELECTION, START)
    for item in (
        disclosed(1, "stu_a", T0, ["student.first_name"]),
        disclosed(2, "stf_teacher", T0 + DAY, ["staff.first_name", "staff.email"]),
        disclosed(3, "stf_teacher", T0 + 2 * DAY, ["staff.first_name"]),
    ):
        builder.add(item)
    students, totals = builder.finish()
    assert [s.student_key for s in students] == ["stu_a"]  # no family letter for a teacher
    assert totals["students"] == 1 and totals["disclosures"] == 3
    assert (totals["staff_members"], totals["disclosures_of_staff"]) == (1, 2)


@pytest.mark.parametrize(
    ("items", "rule"),
    [
        ([disclosed(1, "stu_a", T0, ["student.first_name"], agreement_id="agr-2")], "not a disclosure to this"),
        ([disclosed(1, "stu_a", T0 + 31 * DAY, ["student.first_name"])], "not a disclosure to this"),
        ([disclosed(2, "stu_a", T0, ["x"]), disclosed(1, "stu_a", T0, ["x"])], "log order"),
        ([disclosed(1, "stu_a", T0, ["x"]), destroyed(2, "student", "stu_a", START)], "not before the exposure"),
        ([disclosed(1, "stu_a", T0, ["x"]), destroyed(2, "student", "stu_z", T0 + DAY)], "neither a selected"),
        ([destroyed(2, "agreement", "agr-1", T0), disclosed(3, "stu_a", T0, ["x"])], "after the destruction"),
        ([disclosed(1, "stu_a", T0, ["x"]), destroyed(2, "district", "d-1", T0 + DAY)], "of scope 'district'"),
    ],
)
def test_an_entry_that_cannot_be_part_of_the_scope_is_named(items: list[SelectedEntry], rule: str) -> None:
    builder = ScopeBuilder(SELECTION, START)
    with pytest.raises(ScopeError, match=rule):
        for item in items:
            builder.add(item)


def test_letters_are_in_the_familys_language_where_there_is_one() -> None:
    assert [letter_language(v) for v in ("spa", "Spanish", "es-US", "zho", "Cantonese", "eng", "ben", None, "")] == [
        "es",
        "es",
        "es",
        "zh",
        "zh",
        "en",
        None,
        None,
        None,
    ]
    incident = IncidentFacts(
        incident_id="inc-1",
        recipient="Acme",
        agreements=["agr-1"],
        description="x",
        discovered_at=T0,
        exposure_start=T0 - DAY,
        exposure_end=T0,
        contact="privacy@d-1.example.org",
        investigation="",
        scope_version=1,
        bundle_sha256="00",
        tree_size=10,
        tree_root="00",
        witnessed=True,
    )
    common: dict[str, Any] = {
        "district_id": "d-1",
        "elements": ["attendance.daily"],
        "unreadable_elements": ["student.birth_date"],
        "first_shared": format_time(T0 - 9 * DAY),
        "last_shared": format_time(T0 - 2 * DAY),
        "district_students": 12,
    }
    lang, subject, body = family_letter(incident, language="es", requested_language="spa", **common)
    assert lang == "es" and "asistencia diaria" in body and "fecha de nacimiento" in body and "24 de octubre" in body
    assert subject.startswith("Aviso de violación de datos")
    lang, _, body = family_letter(incident, language="zh", requested_language="zho", **common)
    assert lang == "zh" and "每日出勤" in body and "2026年10月24日" in body
    lang, _, body = family_letter(incident, language=None, requested_language="ben", **common)
    assert lang == "en" and "Daily attendance" in body and "(ben)" in body and "about 12 students" in body
    assert "privacy@d-1.example.org" in body and "121.10" in body
