"""The publication rules (services/reports/suppression.py), and the attacker who solves the
published margins for every suppressed count over many generated states: tiny schools,
lopsided groups, single-school districts, a state of one district. It recovers none; with
complementary suppression switched off it recovers many, so it is a real attacker."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

import pytest

from services.reports import snapshots
from services.reports.suppression import ALL, Rules, Status
from services.reports.tallies import LAYOUT, MEASURES, AbsenceRule, SchoolTally
from tests.services.reports.attacker import attack
from tests.services.reports.statewide import Shape, state, truth

PERIOD = (date(2026, 7, 1), date(2026, 12, 1))
# (seed, districts, schools per district, students): from one tiny district to a few dozen
# schools, a quarter of schools under ten students and 40% with lopsided groups.
STATES = [
    (1, 1, (1, 1), 12),
    (2, 1, (1, 4), 60),
    (3, 2, (1, 1), 40),
    (4, 2, (1, 3), 150),
    (5, 3, (1, 5), 400),
    (6, 4, (2, 4), 900),
    (7, 5, (1, 5), 2500),
    (8, 3, (3, 6), 1200),
    (9, 6, (1, 3), 700),
    (10, 2, (4, 6), 3000),
    (12, 4, (1, 6), 5000),
    (13, 3, (1, 4), 30),
]


def build(seed: int, shape: Shape, rules: Rules = Rules(), *, complementary: bool = True) -> snapshots.Built:
    tables = snapshots.tables(state(seed, shape), {}, "Test State")
    return snapshots.document(tables, 2026, PERIOD, rules, AbsenceRule(), "Test State", complementary=complementary)


@pytest.mark.parametrize(("seed", "districts", "schools", "students"), STATES)
def test_the_attacker_recovers_no_suppressed_count(
    seed: int, districts: int, schools: tuple[int, int], students: int
) -> None:
    shape = Shape(districts, schools, students, tiny=0.25, lopsided=0.4)
    built = build(seed, shape)
    snapshot = built.snapshot
    result = attack(snapshot, truth(built.tables))
    assert result.exposed == [], f"recovered exactly: {result.exposed[:10]}"
    assert snapshot.cells.fewer_than > 0  # every generated state has small cells to protect
    assert result.variables == snapshot.cells.fewer_than + snapshot.cells.withheld
    print(
        f"\nstate {seed}: {len(snapshot.units)} units, {snapshot.cells.total} cells, "
        f"{snapshot.cells.fewer_than} fewer than N, {snapshot.cells.withheld} withheld; "
        f"{result.programs} integer programs, none pinned a count"
    )


def test_without_complementary_suppression_the_attacker_recovers_counts() -> None:
    shape = Shape(4, (2, 4), 900, tiny=0.25, lopsided=0.4)
    exposed = 0
    for seed in (6, 8):
        built = build(seed, shape, complementary=False)
        exposed += len(attack(built.snapshot, truth(built.tables), stop_after=15).exposed)
    assert exposed >= 30


def test_primary_suppression_follows_the_state_s_threshold() -> None:
    for n in (5, 10, 20):
        rules = Rules(min_cell=n, extreme_rate_min_group=max(30, n))
        built = build(12, Shape(4, (1, 6), 5000, tiny=0.25, lopsided=0.4), rules)
        t, pattern = built.tables, built.pattern
        small = published = 0
        for m in range(len(MEASURES)):
            for u, unit in enumerate(t.units):
                for c, col in enumerate(LAYOUT.columns):
                    if col not in LAYOUT.columns_at(unit.level):
                        continue
                    value, status = t.counts[m][u][c], pattern.of(m, u, c)
                    if value < n:
                        assert status == Status.FEWER_THAN
                        small += 1
                    elif status == Status.PUBLISHED:
                        published += 1
        assert small and published
        shown = {r.counts["enrolled"].shown for r in built.snapshot.rows if r.counts["enrolled"].status == "fewer_than"}
        assert shown == {f"fewer than {n}"}


def test_a_group_all_counted_and_smaller_than_the_second_threshold_is_withheld() -> None:
    """Top coding: 100% of a group of fewer than 30 students chronically absent is not shown,
    and neither is its rate; 100% of a larger group is."""
    small, large = SchoolTally(students=20), SchoolTally(students=60)
    for tally, n in ((small, 20), (large, 60)):
        for measure in ("enrolled", "counted", "chronic"):
            tally.counts[measure] = {ALL: n, "sex:female": n, "iep:no": n, "section_504:no": n, "ell:no": n}
            tally.counts[measure].update({"free_reduced_lunch:no": n, "grade:05": n})
    schools = {("d-1", "s-small"): small, ("d-1", "s-large"): large, ("d-2", "s-other"): large}
    built = snapshots.document(snapshots.tables(schools, {}, "T"), 2026, PERIOD, Rules(), AbsenceRule(), "T")
    rows = {(r.unit, r.column): r for r in built.snapshot.rows}
    assert rows[("d-1/s-small", ALL)].counts["chronic"].status == "withheld"
    assert rows[("d-1/s-small", ALL)].rates["chronic_absence"].value is None
    # The small school's six non-empty columns, counted (= enrolled) and chronic (= counted):
    # twelve cells top coded; the large school's 100% is not (its group is 60 students).
    assert built.pattern.top_coded == 12


def test_no_suppressed_count_is_ever_written_as_a_number() -> None:
    built = build(7, Shape(5, (1, 5), 2500, tiny=0.25, lopsided=0.4))
    for row in built.snapshot.rows:
        for name, count in row.counts.items():
            if count.status != "published":
                assert count.value is None and not re.search(r"\d", count.shown.replace("fewer than 10", ""))
            assert name in {m.name for m in MEASURES}
        for measure, parent in (("chronic", "counted"), ("suspended", "enrolled")):
            rate = row.rates["chronic_absence" if measure == "chronic" else "suspension"]
            shown = row.counts[measure].status == row.counts[parent].status == "published"
            assert (rate.value is not None) == (shown and bool(row.counts[parent].value))
    lines = list(csv.reader(io.StringIO("".join(snapshots.csv_lines(built.snapshot)))))
    assert lines[0] == snapshots.CSV_HEADER and len(lines) == len(built.snapshot.rows) + 1
    enrolled = lines[0].index("enrolled")
    assert {line[enrolled] for line in lines[1:] if not line[enrolled].isdigit()} <= {"fewer than 10", "withheld"}


def test_margins_close_and_every_student_counts_once() -> None:
    schools = state(9, Shape(6, (1, 3), 700))
    t = snapshots.tables(schools, {}, "T")
    enrolled = [m.name for m in MEASURES].index("enrolled")
    assert t.counts[enrolled][0][0] == sum(s.students for s in schools.values())
    for u, unit in enumerate(t.units):
        kids = [k for k, other in enumerate(t.units) if other.parent == u]
        for c, col in enumerate(LAYOUT.columns):
            if kids and col in LAYOUT.columns_at(t.units[kids[0]].level):
                assert t.counts[enrolled][u][c] == sum(t.counts[enrolled][k][c] for k in kids), (unit.key, col)


def test_a_name_that_would_run_as_a_formula_is_quoted_in_the_csv() -> None:
    tally = SchoolTally(students=12)
    tally.counts["enrolled"] = {ALL: 12}
    t = snapshots.tables({("d-1", "s-1"): tally}, {("d-1", "s-1"): "=HYPERLINK(1)"}, "T")
    built = snapshots.document(t, 2026, PERIOD, Rules(), AbsenceRule(), "T")
    text = "".join(snapshots.csv_lines(built.snapshot))
    assert "'=HYPERLINK(1)" in text and ",=HYPERLINK" not in text
