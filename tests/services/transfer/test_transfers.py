"""The transfer domain: matching enrollments to transfers, the state machine, retries and deadlines."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.transfer.transfers import (
    FINAL,
    OPEN,
    Action,
    CaseView,
    DeadlinePolicy,
    Enrollment,
    InvalidTransition,
    Opening,
    RetryPolicy,
    State,
    case_id,
    check_move,
    deadline,
    enrollment_ref,
    next_action,
    openings,
)

D = date.fromisoformat


def e(district: str, school: str, day: str) -> Enrollment:
    return Enrollment(district, school, D(day))


def test_enrollment_in_another_district_opens_a_case_from_the_last_one() -> None:
    known = [e("A", "a1", "2024-08-20"), e("C", "c1", "2025-08-20")]
    assert openings(known, e("B", "b1", "2026-01-10")) == [Opening("C", e("B", "b1", "2026-01-10"))]


def test_same_district_same_school_and_first_enrollments_open_nothing() -> None:
    assert openings([], e("A", "a1", "2025-08-20")) == []
    assert openings([e("A", "a1", "2025-08-20")], e("A", "a1", "2026-01-05")) == []
    assert openings([e("A", "a1", "2025-08-20")], e("A", "a2", "2026-01-05")) == []
    assert openings([e("A", "a1", "2025-08-20")], e("A", "a1", "2025-08-20")) == []  # the same event again


def test_a_late_older_enrollment_reveals_the_transfer_to_the_later_one() -> None:
    b = e("B", "b1", "2026-11-02")
    assert openings([b], e("A", "a1", "2025-08-20")) == [Opening("A", b)]
    # and it is the same case as in order
    in_order = openings([e("A", "a1", "2025-08-20")], b)
    assert in_order == [Opening("A", b)]


def test_an_old_enrollment_in_the_receiving_district_arriving_late_opens_nothing() -> None:
    assert openings([e("B", "b1", "2026-11-02"), e("A", "a1", "2025-08-20")], e("B", "b1", "2024-01-01")) == []


def test_same_day_move_counts_as_coming_from_the_other_district() -> None:
    assert openings([e("A", "a1", "2026-11-02")], e("B", "b1", "2026-11-02")) == [
        Opening("A", e("B", "b1", "2026-11-02"))
    ]


def test_an_enrollment_the_student_already_left_opens_nothing() -> None:
    # known: A in 2024, then B in 2026; a late event says the student was in C in 2025
    known = [e("A", "a1", "2024-08-20"), e("B", "b1", "2026-08-20")]
    # C is history; it reveals C → B, which the store refuses because B's enrollment already
    # has its case (one case per receiving enrollment)
    assert openings(known, e("C", "c1", "2025-08-20")) == [Opening("C", e("B", "b1", "2026-08-20"))]
    assert openings([e("B", "b1", "2026-08-20")], e("C", "c1", "2027-01-01"))[0].to.district_id == "C"
    assert openings([e("B", "b1", "2026-11-02")], e("A", "a1", "2025-08-20")) == [
        Opening("A", e("B", "b1", "2026-11-02"))
    ]


def test_return_to_the_first_district_is_a_transfer_back() -> None:
    known = [e("A", "a1", "2024-08-20"), e("B", "b1", "2025-08-20")]
    assert openings(known, e("A", "a1", "2026-08-20")) == [Opening("B", e("A", "a1", "2026-08-20"))]


@given(st.permutations([("A", "a1", "2024-08-20"), ("B", "b1", "2025-02-01")]))
def test_any_arrival_order_finds_the_same_single_case(order: list[tuple[str, str, str]]) -> None:
    known: list[Enrollment] = []
    cases: set[str] = set()
    for district, school, day in [*order, *order]:  # every event twice
        new = e(district, school, day)
        for o in openings(known, new):
            ref = enrollment_ref(o.to.school_id, o.to.entry_date)
            cases.add(case_id("stu_x", o.from_district, o.to.district_id, ref))
        known = [k for k in known if k.district_id != district] + [new]
    assert cases == {case_id("stu_x", "A", "B", enrollment_ref("b1", D("2025-02-01")))}


def test_case_ids_are_deterministic_and_distinct() -> None:
    ref = enrollment_ref("b1", D("2026-11-02"))
    assert case_id("k", "A", "B", ref) == case_id("k", "A", "B", ref)
    assert len({case_id("k", "A", "B", ref), case_id("k", "B", "A", ref), case_id("j", "A", "B", ref)}) == 3


def test_state_machine_allows_only_the_documented_moves() -> None:
    check_move(State.REQUESTED, State.DECIDED)
    check_move(State.DELIVERED, State.ACKNOWLEDGED)
    check_move(State.ESCALATED, State.ACKNOWLEDGED)
    bad_moves = (
        (State.REQUESTED, State.DELIVERED),
        (State.ACKNOWLEDGED, State.REJECTED),
        (State.REFUSED, State.DECIDED),
    )
    for bad in bad_moves:
        with pytest.raises(InvalidTransition, match=bad[1].value):
            check_move(*bad)
    assert not FINAL & OPEN


NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
RETRY = RetryPolicy(max_attempts=3, base_backoff_s=1, max_backoff_s=5)
DEADLINES = DeadlinePolicy(delivery_s=60, acknowledge_s=100, resends=1)


def view(
    state: State, *, attempt: int = 0, resends: int = 0, opened_ago: float = 0, delivered_ago: float | None = None
) -> CaseView:
    delivered = NOW - timedelta(seconds=delivered_ago) if delivered_ago is not None else None
    return CaseView(state, NOW - timedelta(seconds=opened_ago), delivered, attempt, resends)


def test_the_deadline_a_case_works_to() -> None:
    """Delivery until delivered, then the receiving district's answer; the missed one when escalated."""
    assert deadline(view(State.REQUESTED, opened_ago=10), DEADLINES) == NOW + timedelta(seconds=50)
    assert deadline(view(State.PACKAGED, opened_ago=10), DEADLINES) == NOW + timedelta(seconds=50)
    assert deadline(view(State.DELIVERED, opened_ago=10, delivered_ago=30), DEADLINES) == NOW + timedelta(seconds=70)
    assert deadline(view(State.ESCALATED, opened_ago=70), DEADLINES) == NOW - timedelta(seconds=10)
    assert deadline(view(State.ESCALATED, delivered_ago=130), DEADLINES) == NOW - timedelta(seconds=30)
    for closed in (State.ACKNOWLEDGED, State.REJECTED, State.REFUSED, State.FAILED):
        assert deadline(view(closed, delivered_ago=5), DEADLINES) is None


def test_next_action_follows_the_state_then_deadlines_and_retries() -> None:
    assert next_action(view(State.REQUESTED), NOW, RETRY, DEADLINES) == (Action.DECIDE, "")
    assert next_action(view(State.DECIDED), NOW, RETRY, DEADLINES) == (Action.PACKAGE, "")
    assert next_action(view(State.PACKAGED, attempt=2), NOW, RETRY, DEADLINES) == (Action.DELIVER, "")
    assert next_action(view(State.PACKAGED, attempt=3), NOW, RETRY, DEADLINES) == (Action.ESCALATE, "retries_exhausted")
    assert next_action(view(State.DECIDED, opened_ago=61), NOW, RETRY, DEADLINES) == (
        Action.ESCALATE,
        "delivery_deadline_passed",
    )
    assert next_action(view(State.DELIVERED, delivered_ago=10), NOW, RETRY, DEADLINES) == (Action.WAIT, "")
    assert next_action(view(State.DELIVERED, delivered_ago=101), NOW, RETRY, DEADLINES)[0] is Action.RESEND
    assert next_action(view(State.DELIVERED, delivered_ago=101, resends=1), NOW, RETRY, DEADLINES) == (
        Action.ESCALATE,
        "acknowledgement_deadline_passed",
    )
    assert next_action(view(State.ACKNOWLEDGED), NOW, RETRY, DEADLINES) == (Action.NONE, "")


def test_backoff_grows_and_is_capped() -> None:
    assert [RETRY.backoff(n).total_seconds() for n in (1, 2, 3, 4, 10)] == [1, 2, 4, 5, 5]
