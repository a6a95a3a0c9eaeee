from __future__ import annotations

import io
from datetime import date

from services.ingest.formats.oneroster_csv import OneRosterUpload
from services.ingest.parsed_records import EnrollmentAction, EnrollmentRecord, Source, StudentRecord
from services.ingest.safety import (
    HeldSchool,
    WithdrawalTally,
    implied_bulk_withdrawals,
    merge_counts,
    schools_over_share,
)
from tests.services.ingest.ingest_data import enrollment, oneroster_zip, user11


def test_schools_over_the_share_are_held_and_sorted_by_share() -> None:
    held = schools_over_share({"A": 100, "B": 100, "C": 100}, {"A": 11, "B": 50, "C": 10}, max_share=0.10)
    assert held == [HeldSchool("B", 100, 50, 0.5), HeldSchool("A", 100, 11, 0.11)]


def test_exactly_at_the_share_is_not_held() -> None:
    assert schools_over_share({"A": 100}, {"A": 10}, max_share=0.10) == []


def test_withdrawals_from_a_school_with_nobody_on_record_are_held() -> None:
    assert schools_over_share({}, {"NEW": 3}) == [HeldSchool("NEW", 0, 3, 1.0)]


def test_min_withdrawals_lets_small_changes_through() -> None:
    assert schools_over_share({"tiny": 4}, {"tiny": 1}, max_share=0.10, min_withdrawals=2) == []
    assert schools_over_share({"tiny": 4}, {"tiny": 2}, max_share=0.10, min_withdrawals=2)[0].school_id == "tiny"


def _withdraw(student: str, school: str, n: int) -> EnrollmentRecord:
    return EnrollmentRecord(
        source=Source("oneroster", "enrollments.csv", n),
        source_record_id=f"e{n}",
        action=EnrollmentAction.WITHDRAW,
        student_ref=student,
        school_id=school,
        exit_date=date(2024, 10, 1),
    )


def test_tally_counts_distinct_students_not_rows() -> None:
    tally = WithdrawalTally()
    # one student dropped from five classes in the same school is one student withdrawn
    for n in range(5):
        tally.add(_withdraw("s1", "A", n))
    tally.add(_withdraw("s2", "A", 9))
    deleted = StudentRecord(
        source=Source("oneroster", "users.csv", 3),
        source_record_id="u",
        student_ref="s3",
        schools=("A", "B"),
        deleted=True,
    )
    tally.add(deleted)
    assert tally.counts() == {"A": 3, "B": 1}


def test_bulk_file_leaving_students_out_implies_their_withdrawal() -> None:
    now = {"A": {"s1", "s2", "s3", "s4"}, "B": {"s5"}}
    present = {"A": {"s1", "s9"}, "B": {"s5"}}
    implied = implied_bulk_withdrawals(now, present)
    assert implied == {"A": 3}
    held = schools_over_share({"A": 4, "B": 1}, merge_counts(implied, {"B": 0}), max_share=0.25)
    assert [h.school_id for h in held] == ["A"]


def test_tobedeleted_rows_of_a_oneroster_delta_are_counted_per_school() -> None:
    users = [user11(f"s{i}") for i in range(10)] + [user11("gone", status="tobedeleted", orgs="sch-1")]
    enrollments = [enrollment(f"e{i}", f"s{i}") for i in range(10)]
    enrollments += [enrollment(f"x{i}", f"s{i}", status="tobedeleted", endDate="2024-10-01") for i in range(3)]
    upload = OneRosterUpload(io.BytesIO(oneroster_zip(users, enrollments, mode="delta")))
    tally = WithdrawalTally().add_all(upload)
    assert tally.counts() == {"sch-1": 4}  # three dropped enrollments and one deleted student
    assert [h.school_id for h in schools_over_share({"sch-1": 10}, tally.counts(), max_share=0.3)] == ["sch-1"]
    assert schools_over_share({"sch-1": 40}, tally.counts(), max_share=0.3) == []
