"""The tally's values in memory (pure): a school row keeps no zero cells, and a student's value
kept as its JSON text reads back as it was (services/reports/tallies.py); and the garbage
collector's young generation while a tally runs (services/reports/service.py)."""

from __future__ import annotations

import gc
import json
import uuid

from services.reports.tallies import Contribution, SchoolTally, StudentTally
from tests.harness import ServiceEnv
from tests.services.reports.helpers import reports_service

COLUMNS = ("all", "sex:female", "grade:elementary")


def _row(counts: tuple[int, ...], sums: tuple[int, int], columns: tuple[str, ...] = COLUMNS) -> Contribution:
    return Contribution(2026, "d-1", "d-1-s1", columns, counts, sums)


def test_a_school_row_keeps_no_zero_cells() -> None:
    first = _row((1, 1, 1, 0), (40, 6))
    second = _row((1, 1, 0, 1), (38, 1), ("all", "sex:male", "grade:elementary"))
    school, alone = SchoolTally(), SchoolTally()
    school.add(first, 1)
    school.add(second, 1)
    alone.add(second, 1)
    school.add(first, -1)  # the first student's row moves away
    assert school.to_json() == alone.to_json()
    assert school.to_json()["counts"]["chronic"] == {}  # the name stays, its cells are gone
    assert all(n != 0 for table in (school.counts, school.sums) for row in table.values() for n in row.values())
    school.add(second, -1)
    assert school.to_json() == SchoolTally().to_json()
    assert SchoolTally.from_json(alone.to_json()).to_json() == alone.to_json()


def test_to_json_is_a_copy() -> None:
    school = SchoolTally()
    school.add(_row((1, 1, 0, 0), (20, 2)), 1)
    written = school.to_json()
    school.add(_row((1, 1, 0, 0), (20, 2)), 1)
    assert written["counts"]["enrolled"]["all"] == 1
    assert school.to_json()["counts"]["enrolled"]["all"] == 2


def test_a_student_value_as_text_reads_back() -> None:
    value = StudentTally()
    assert value.fresh("enrollment.v1", 4)
    value.enrolled("d-1", "d-1-s1", "2026-09-14", "03")
    value.marked("d-1", "d-1-s1", "2026-10-05", True)
    value.marked("d-1", "d-1-s1", "2026-10-06", True)
    value.suspended("d-1", "2026-10-20")
    value.grouped({"sex": "female"})
    text = value.to_text()
    assert isinstance(text, str)
    assert StudentTally.from_text(text) == value
    # as PostgreSQL's jsonb gives it back (its own spacing and key order)
    assert StudentTally.from_text(json.dumps(json.loads(text), indent=1, sort_keys=True)) == value
    assert StudentTally.from_text(None) == StudentTally()
    assert StudentTally.from_text("") == StudentTally()


async def test_the_young_generation_is_raised_while_the_tally_runs(service_env: ServiceEnv) -> None:
    before = gc.get_threshold()
    async with reports_service(service_env, uuid.uuid4().hex[:8]) as svc:
        young, *older = gc.get_threshold()  # the highest any holder asked for (homeroom/gc_tuning.py)
        assert young >= svc.runtime.settings.gc_young_threshold > before[0]
        assert tuple(older) == before[1:]
    assert gc.get_threshold() == before
