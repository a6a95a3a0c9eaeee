"""The transparency page's answers (issue 24, item 2): all 32 questions of seed 001, system
answers from Homeroom's data, the district's own text with its review date, missing ones named."""

from __future__ import annotations

from datetime import date

from homeroom.transparency import ALSO_DISTRICT, QUESTIONS, SYSTEM, Facts, answers

AGREEMENT = {
    "organization": "Brightpath Learning",
    "category": "vendor",
    "term": {"start_date": "2026-09-01", "end_date": "2027-06-30", "storage_region": "us-east (New York)"},
    "elements": [{"id": "student.first_name", "name": "First name"}],
    "purposes": [{"id": "instruction", "description": "Delivering instruction"}],
}
FACTS = Facts(
    "d-100",
    [AGREEMENT],
    [{"recipient": "Brightpath Learning", "purpose": "instruction", "count": "fewer than 10"}],
    "https://portal.example.org",
    date(2026, 12, 6),
)


def test_every_question_is_answered_from_the_system_or_the_district_or_named_as_missing() -> None:
    found = answers(FACTS, {})
    assert [a.number for a in found] == list(range(1, 33)) and len(QUESTIONS) == 32
    assert [a.number for a in found if a.missing] == [n for n in range(1, 33) if n not in SYSTEM]
    by = {a.number: a for a in found}
    assert "Brightpath Learning" in by[16].system and "Delivering instruction" in by[16].system
    assert "fewer than 10" in by[9].system
    assert "us-east (New York)" in by[28].system
    assert "https://portal.example.org" in by[32].system
    assert "Discipline incident details" in by[25].system  # never sent on transfer
    assert by[4].reviewed_on == "2026-12-06" and by[4].reviewed_by == "Homeroom"
    assert by[6].reviewed_on == "" and by[6].needs_district

    # The district answers a policy question and adds to a shared one.
    texts = {
        6: {"text": "Free until June 2028; then $2 per student.", "reviewed_on": "2026-11-30", "reviewed_by": "cfo"},
        28: {"text": "Our own servers are in Albany.", "reviewed_on": "2026-10-01", "reviewed_by": "cio"},
    }
    again = {a.number: a for a in answers(FACTS, texts)}
    assert not again[6].missing and again[6].reviewed_on == "2026-11-30" and again[6].reviewed_by == "cfo"
    assert again[28].system and again[28].district and 28 in ALSO_DISTRICT
    assert sum(a.missing for a in again.values()) == sum(a.missing for a in found) - 1
