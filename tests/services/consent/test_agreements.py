"""Agreement rules: each one is triggered by a bad agreement and passed by a good one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from homeroom_dev.scenario import SUPPLEMENTAL_ANSWERS
from services.consent.agreements import (
    Agreement,
    AgreementCategory,
    AgreementError,
    AgreementRejected,
    AgreementStatus,
    AgreementTerms,
    Disposition,
    Standing,
    SupplementalInformation,
    current_status,
    governed_periods,
    governing_version,
    is_in_force,
    status_on,
    validate_activation,
    validate_amendment,
    validate_terms,
    version_in_force,
)

TODAY = date(2024, 6, 1)
GOOD_TERMS = AgreementTerms(
    elements=("student.first_name", "student.last_name", "attendance.daily"),
    purposes=("attendance_support",),
    districts=("d-001",),
    start_date=date(2024, 1, 1),
    end_date=date(2025, 6, 30),
    storage_region="US",
)


def agreement(version: int = 1, status: AgreementStatus = AgreementStatus.ACTIVE, /, **terms: Any) -> Agreement:
    return Agreement(
        id="kinvolved-1",
        version=version,
        organization="Kinvolved, Inc.",
        category=AgreementCategory.VENDOR,
        supplemental=SupplementalInformation(**SUPPLEMENTAL_ANSWERS),
        terms=GOOD_TERMS.model_copy(update=terms),
        status=status,
        source="api",
        recorded_by="admin@d-001",
        recorded_at=datetime(2024, 6, 1, 12, tzinfo=UTC),
    )


def rules(errors: list[AgreementError]) -> list[str]:
    return [e.rule for e in errors]


# ------------------------------------------------------------------------ terms


def test_good_terms_pass() -> None:
    assert validate_terms(GOOD_TERMS) == []


def test_unknown_element_is_named_with_its_position() -> None:
    errors = validate_terms(GOOD_TERMS.model_copy(update={"elements": ("student.first_name", "student.shoe_size")}))
    assert rules(errors) == ["element.unknown"]
    assert errors[0].field == "/terms/elements/1"
    assert "student.shoe_size" in errors[0].message


@pytest.mark.parametrize("element_id", ["student.ssn", "discipline.incident_details"])
def test_forbidden_element_is_refused_even_when_the_catalogue_lists_it(element_id: str) -> None:
    # discipline.incident_details is a catalogue entry (ingest must recognise it to refuse it),
    # so this also checks the forbidden rule wins over "known".
    errors = validate_terms(GOOD_TERMS.model_copy(update={"elements": (element_id,)}))
    assert rules(errors) == ["element.forbidden"]
    assert errors[0].field == "/terms/elements/0"
    assert element_id in errors[0].message


def test_unknown_purpose_is_named() -> None:
    errors = validate_terms(GOOD_TERMS.model_copy(update={"purposes": ("instruction", "marketing")}))
    assert rules(errors) == ["purpose.unknown"]
    assert errors[0].field == "/terms/purposes/1"
    assert "'marketing'" in errors[0].message


def test_end_before_start_is_refused_but_a_one_day_agreement_is_not() -> None:
    bad = GOOD_TERMS.model_copy(update={"start_date": date(2024, 9, 1), "end_date": date(2024, 8, 31)})
    errors = validate_terms(bad)
    assert rules(errors) == ["dates.end_before_start"]
    assert errors[0].field == "/terms/end_date"
    assert "2024-08-31" in errors[0].message and "2024-09-01" in errors[0].message
    one_day = GOOD_TERMS.model_copy(update={"start_date": date(2024, 9, 1), "end_date": date(2024, 9, 1)})
    assert validate_terms(one_day) == []


def test_every_error_is_reported_at_once() -> None:
    bad = AgreementTerms(
        elements=("student.ssn", "nope"), purposes=("spam",), start_date=date(2024, 2, 1), end_date=date(2024, 1, 1)
    )
    assert rules(validate_terms(bad)) == [
        "element.forbidden",
        "element.unknown",
        "purpose.unknown",
        "dates.end_before_start",
    ]


# ------------------------------------------------------------------- activation


def test_complete_agreement_can_be_activated() -> None:
    assert validate_activation(agreement(), today=TODAY) == []


@pytest.mark.parametrize(
    ("change", "rule", "field"),
    [
        ({"elements": ()}, "activation.no_elements", "/terms/elements"),
        ({"purposes": ()}, "activation.no_purposes", "/terms/purposes"),
        ({"districts": ()}, "activation.no_districts", "/terms/districts"),
        ({"start_date": None}, "activation.no_start_date", "/terms/start_date"),
        ({"end_date": TODAY - timedelta(days=1)}, "activation.expired", "/terms/end_date"),
    ],
)
def test_activation_refuses_what_could_not_govern(change: dict[str, object], rule: str, field: str) -> None:
    errors = validate_activation(agreement(1, AgreementStatus.DRAFT, **change), today=TODAY)
    assert rules(errors) == [rule]
    assert errors[0].field == field


def test_no_agreement_is_activated_without_its_six_ed_law_2d_answers_121_3() -> None:
    blank = agreement(1, AgreementStatus.DRAFT).model_copy(
        update={"supplemental": SupplementalInformation(exclusive_purposes="Attendance outreach.", encryption="  ")}
    )
    errors = validate_activation(blank, today=TODAY)
    assert rules(errors) == ["activation.supplemental_missing"] * 5
    assert [e.field for e in errors] == [
        "/supplemental/subcontractor_oversight",
        "/supplemental/term_and_expiry",
        "/supplemental/accuracy_challenge",
        "/supplemental/storage_and_protections",
        "/supplemental/encryption",
    ]
    assert "How the data is encrypted" in errors[-1].message


def test_an_agreement_ending_today_can_still_be_activated() -> None:
    assert validate_activation(agreement(end_date=TODAY), today=TODAY) == []


def test_activation_also_applies_the_terms_rules() -> None:
    errors = validate_activation(agreement(purposes=("marketing",)), today=TODAY)
    assert rules(errors) == ["purpose.unknown"]


def test_rejection_carries_every_error() -> None:
    errors = validate_activation(agreement(elements=(), purposes=()), today=TODAY)
    rejected = AgreementRejected(errors)
    assert rejected.errors == errors
    assert "activation.no_elements" in str(rejected) and "activation.no_purposes" in str(rejected)


# --------------------------------------------------------------------- standing


def test_status_on_follows_the_dates_of_an_active_agreement() -> None:
    a = agreement(start_date=date(2024, 1, 1), end_date=date(2024, 12, 31))
    assert status_on(a, date(2023, 12, 31)) is Standing.NOT_YET_IN_FORCE
    assert status_on(a, date(2024, 1, 1)) is Standing.IN_FORCE  # both ends are inclusive
    assert status_on(a, date(2024, 12, 31)) is Standing.IN_FORCE
    assert status_on(a, date(2025, 1, 1)) is Standing.EXPIRED
    assert [is_in_force(a, d) for d in (date(2023, 12, 31), date(2024, 6, 1), date(2025, 1, 1))] == [
        False,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("status", "standing"),
    [
        (AgreementStatus.DRAFT, Standing.DRAFT),
        (AgreementStatus.SUSPENDED, Standing.SUSPENDED),
        (AgreementStatus.ENDED, Standing.ENDED),
    ],
)
def test_only_an_active_agreement_is_ever_in_force(status: AgreementStatus, standing: Standing) -> None:
    a = agreement(1, status)
    assert status_on(a, TODAY) is standing
    assert not is_in_force(a, TODAY)


def test_open_ended_agreement_stays_in_force() -> None:
    assert is_in_force(agreement(end_date=None), date(2099, 1, 1))


def test_active_agreement_without_start_date_is_not_treated_as_unlimited() -> None:
    # Cannot pass activation, but a record loaded from elsewhere must still fail closed.
    assert status_on(agreement(start_date=None), TODAY) is Standing.NOT_YET_IN_FORCE


# ---------------------------------------------------------------------- history


def test_later_version_governs_from_its_start_date() -> None:
    v1 = agreement(1, start_date=date(2024, 1, 1), end_date=None)
    v2 = agreement(2, start_date=date(2024, 3, 1), end_date=None, purposes=("attendance_support", "instruction"))
    history = [v1, v2]
    assert governing_version(history, date(2023, 12, 31)) is None
    assert governing_version(history, date(2024, 2, 29)) == v1
    assert governing_version(history, date(2024, 3, 1)) == v2
    assert governed_periods(history) == [(v1, date(2024, 1, 1), date(2024, 2, 29)), (v2, date(2024, 3, 1), None)]


def test_expired_later_version_does_not_revive_the_earlier_one() -> None:
    v1 = agreement(1, start_date=date(2024, 1, 1), end_date=None)
    v2 = agreement(2, start_date=date(2024, 3, 1), end_date=date(2024, 3, 31))
    assert governing_version([v1, v2], date(2024, 4, 1)) is None


def test_draft_versions_never_govern() -> None:
    v1 = agreement(1, start_date=date(2024, 1, 1), end_date=None)
    v2 = agreement(2, AgreementStatus.DRAFT, start_date=date(2024, 3, 1), purposes=("instruction",))
    assert governing_version([v1, v2], date(2024, 5, 1)) == v1
    assert current_status([v1, v2]) is AgreementStatus.ACTIVE  # a proposal does not un-activate


def test_version_in_force_respects_the_agreements_status() -> None:
    v1 = agreement(1, end_date=None)
    assert version_in_force([v1], TODAY) == v1
    suspended = v1.model_copy(update={"version": 2, "status": AgreementStatus.SUSPENDED})
    assert version_in_force([v1, suspended], TODAY) is None


# -------------------------------------------------------------------- amendment


def test_first_version_must_be_version_one() -> None:
    assert validate_amendment([], agreement(1), today=TODAY) == []
    errors = validate_amendment([], agreement(2), today=TODAY)
    assert rules(errors) == ["version.sequence"]


def test_versions_follow_each_other() -> None:
    v1 = agreement(1)
    assert validate_amendment([v1], agreement(2, start_date=TODAY + timedelta(days=1)), today=TODAY) == []
    errors = validate_amendment([v1], agreement(3, start_date=TODAY + timedelta(days=1)), today=TODAY)
    assert rules(errors) == ["version.sequence"]
    assert errors[0].field == "/version" and "is 2, not 3" in errors[0].message


def test_amendment_must_name_the_same_agreement() -> None:
    other = agreement(2).model_copy(update={"id": "someone-else"})
    assert rules(validate_amendment([agreement(1)], other, today=TODAY)) == ["amendment.id_mismatch"]


def test_amendment_cannot_change_the_recipient_but_may_reformat_its_name() -> None:
    renamed = agreement(2).model_copy(update={"organization": "Another Vendor LLC"})
    assert rules(validate_amendment([agreement(1)], renamed, today=TODAY)) == ["amendment.recipient_changed"]
    respaced = agreement(2).model_copy(update={"organization": "  kinvolved,   INC. "})
    assert validate_amendment([agreement(1)], respaced, today=TODAY) == []


def test_an_ended_agreement_cannot_be_amended() -> None:
    ended = agreement(1, AgreementStatus.ENDED)
    errors = validate_amendment([ended], agreement(2, start_date=TODAY + timedelta(days=1)), today=TODAY)
    assert rules(errors) == ["amendment.after_end"]


def test_a_new_version_is_draft_or_active() -> None:
    errors = validate_amendment([agreement(1)], agreement(2, AgreementStatus.SUSPENDED), today=TODAY)
    assert rules(errors) == ["version.status"]


def test_draft_amendment_is_checked_only_against_the_terms_rules() -> None:
    # A proposal may be incomplete; activation checks the rest when it is activated.
    draft = agreement(2, AgreementStatus.DRAFT, elements=(), start_date=date(2024, 2, 1), purposes=("instruction",))
    assert validate_amendment([agreement(1)], draft, today=TODAY) == []
    bad_draft = agreement(2, AgreementStatus.DRAFT, elements=("student.ssn",))
    assert rules(validate_amendment([agreement(1)], bad_draft, today=TODAY)) == ["element.forbidden"]


def test_backdated_amendment_with_different_terms_overlaps() -> None:
    v1 = agreement(1, start_date=date(2024, 1, 1), end_date=None)
    v2 = agreement(2, start_date=date(2024, 5, 1), end_date=None, elements=("student.first_name",))
    errors = validate_amendment([v1], v2, today=TODAY)
    assert rules(errors) == ["versions.overlap"]
    assert errors[0].field == "/terms/start_date"
    assert "2024-05-01 to 2024-06-01" in errors[0].message and "version 1" in errors[0].message


def test_amendment_that_changes_terms_today_overlaps_but_tomorrow_does_not() -> None:
    # Disclosures may already have been made today under version 1.
    v1 = agreement(1, end_date=None)
    today_v2 = agreement(2, start_date=TODAY, end_date=None, purposes=("instruction",))
    assert rules(validate_amendment([v1], today_v2, today=TODAY)) == ["versions.overlap"]
    tomorrow_v2 = agreement(2, start_date=TODAY + timedelta(days=1), end_date=None, purposes=("instruction",))
    assert validate_amendment([v1], tomorrow_v2, today=TODAY) == []


def test_renewal_with_the_same_terms_may_share_past_days() -> None:
    v1 = agreement(1, start_date=date(2024, 1, 1), end_date=date(2024, 6, 30))
    renewal = agreement(2, start_date=date(2024, 1, 1), end_date=date(2025, 6, 30))
    assert validate_amendment([v1], renewal, today=TODAY) == []


def test_amendment_of_a_version_that_never_governed_does_not_overlap() -> None:
    draft = agreement(1, AgreementStatus.DRAFT, start_date=date(2024, 1, 1))
    v2 = agreement(2, start_date=date(2024, 1, 1), elements=("student.first_name",))
    assert validate_amendment([draft], v2, today=TODAY) == []


def test_new_version_taking_only_days_its_predecessor_already_had_is_checked_against_it() -> None:
    # v2 took over from March 1 with new terms; v3 repeats v2's terms. From March on the past
    # belongs to v2 (same terms, fine); reaching back into February takes v1's days.
    v1 = agreement(1, start_date=date(2024, 1, 1), end_date=None)
    v2_terms = {"purposes": ("attendance_support", "instruction"), "end_date": None}
    v2 = agreement(2, start_date=date(2024, 3, 1), **v2_terms)
    assert validate_amendment([v1, v2], agreement(3, start_date=date(2024, 5, 1), **v2_terms), today=TODAY) == []
    errors = validate_amendment([v1, v2], agreement(3, start_date=date(2024, 2, 15), **v2_terms), today=TODAY)
    assert rules(errors) == ["versions.overlap"]
    assert "2024-02-15 to 2024-02-29" in errors[0].message and "version 1" in errors[0].message


def test_amendment_today_defaults_to_the_day_it_is_recorded() -> None:
    v1 = agreement(1, end_date=None)
    v2 = agreement(2, start_date=date(2024, 6, 1), end_date=None, purposes=("instruction",))  # recorded 2024-06-01
    assert rules(validate_amendment([v1], v2)) == ["versions.overlap"]


def test_activating_a_draft_amendment_later_applies_the_overlap_rule() -> None:
    v1 = agreement(1, start_date=date(2024, 1, 1), end_date=None)
    draft_v2 = agreement(2, AgreementStatus.DRAFT, start_date=date(2024, 3, 1), purposes=("instruction",))
    assert validate_amendment([v1], draft_v2, today=date(2024, 2, 1)) == []
    activated = draft_v2.model_copy(update={"status": AgreementStatus.ACTIVE})
    # By June, March to June has been governed by v1: activating v2 from March would rewrite it.
    errors = validate_activation(activated, today=TODAY, history=[v1, draft_v2])
    assert rules(errors) == ["versions.overlap"]


DAYS = st.dates(min_value=date(2024, 1, 1), max_value=date(2024, 12, 31))
SCOPES = st.sampled_from([("attendance_support",), ("instruction",)])


@st.composite
def histories(draw: st.DrawFn) -> list[Agreement]:
    versions = []
    for n in range(1, draw(st.integers(1, 4)) + 1):
        start = draw(DAYS)
        end = draw(st.none() | st.dates(min_value=start, max_value=date(2025, 6, 30)))
        status = draw(st.sampled_from([AgreementStatus.ACTIVE, AgreementStatus.DRAFT]))
        versions.append(agreement(n, status, start_date=start, end_date=end, purposes=draw(SCOPES)))
    return versions


@settings(max_examples=300, deadline=None)
@given(histories(), DAYS)
def test_periods_and_governing_version_agree(history: list[Agreement], day: date) -> None:
    covering = [v for v, first, last in governed_periods(history) if first <= day and (last is None or day <= last)]
    assert len(covering) <= 1  # never two versions on one day
    assert governing_version(history, day) == (covering[0] if covering else None)


@settings(max_examples=300, deadline=None)
@given(histories(), DAYS, DAYS, st.none() | DAYS, SCOPES)
def test_an_accepted_amendment_never_changes_what_governed_a_past_day(
    history: list[Agreement], today: date, start: date, end: date | None, purposes: tuple[str, ...]
) -> None:
    if end is not None and end < start:
        start, end = end, start
    new = agreement(len(history) + 1, start_date=start, end_date=end, purposes=purposes)
    errors = validate_amendment(history, new, today=today)
    if "versions.overlap" in rules(errors):
        return
    for offset in range((today - date(2024, 1, 1)).days + 1):
        day = date(2024, 1, 1) + timedelta(days=offset)
        before, after = governing_version(history, day), governing_version([*history, new], day)
        if before is not None and after is not None:
            assert before.terms.purposes == after.terms.purposes, day


# ------------------------------------------------------------------------ model


def test_agreement_round_trips_through_json_for_the_api() -> None:
    a = agreement(disposition=Disposition.RETURN)
    assert Agreement.model_validate_json(a.model_dump_json()) == a


def test_agreement_needs_a_time_zone_and_refuses_unknown_fields() -> None:
    data = agreement().model_dump()
    with pytest.raises(ValidationError, match="recorded_at"):
        Agreement.model_validate({**data, "recorded_at": datetime(2024, 6, 1, 12)})
    with pytest.raises(ValidationError, match="colour"):
        Agreement.model_validate({**data, "colour": "blue"})
    with pytest.raises(ValidationError, match="disposition"):
        AgreementTerms.model_validate({"disposition": "sell"})


def test_versions_are_immutable() -> None:
    with pytest.raises(ValidationError):
        agreement().terms.elements = ()  # type: ignore[misc]
