"""What each student adds to the statewide tables, from pseudonymised events only (pure: no I/O).

The streaming tally keeps one value per student (pseudonymous key): enrollment windows,
days marked absent per school, suspensions, the coarse group codes of groups.v1 and the
last offset applied per topic. Applying an event is idempotent: a redelivered event's
offset is at or before the one applied, so it changes nothing; a mark for a day replaces the
day's earlier mark; windows are keyed by (district, school, entry date).

From that value and the school calendars, a student contributes to one row per school year:
the school of their latest enrollment that year (so every student counts exactly once at
each level and a district's cells are exactly the sum of its schools': the tables' margins
close), with the columns of their groups and grade. A student counts as

* enrolled: enrolled on some day of the year up to the count's date;
* counted for attendance: every school they attended that year has a calendar, and they
  were enrolled at least ``min_days`` instructional days (homeroom.calendar);
* chronically absent: counted, and absent on at least ``threshold`` of the days enrolled;
* suspended: at least one suspension starting in the year.

Days enrolled and absent are summed over the counted students for the attendance rate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from homeroom.calendar import SchoolYearAttendance, Window, school_year, standing, year_bounds
from homeroom.catalogue import REPORTING_GROUPS
from services.reports.suppression import ALL, Dimension, Layout, Level, Measure

MEASURES: tuple[Measure, ...] = (
    Measure("enrolled", "Students enrolled"),
    Measure("counted", "Students whose attendance is counted", "enrolled"),
    Measure("chronic", "Students chronically absent", "counted"),
    Measure("suspended", "Students suspended at least once", "enrolled"),
)
MEASURE_NAMES = tuple(m.name for m in MEASURES)
SUMS = ("days_enrolled", "days_absent")  # of counted students: the attendance rate, never published as numbers

# Reporting grades: CEDS codes folded into the grades a state report card shows.
GRADES: tuple[tuple[str, str], ...] = (
    ("PK", "Pre-kindergarten"),
    ("KG", "Kindergarten"),
    *((f"{n:02d}", f"Grade {n}") for n in range(1, 13)),
    ("other", "Ungraded or not reported"),
)
_GRADE_CODES = {code for code, _ in GRADES}
_PRE_K = {"IT", "PR", "PK", "TK", "PS"}
ALL_LEVELS = frozenset(Level)

LAYOUT = Layout(
    MEASURES,
    (
        *(Dimension(g.dimension, g.label, g.categories, ALL_LEVELS) for g in REPORTING_GROUPS),
        # By grade for the state and districts only: a school's grades are few and small.
        Dimension("grade", "Grade", GRADES, frozenset({Level.STATE, Level.DISTRICT})),
    ),
)
DEFAULT_GROUPS = {g.dimension: g.default for g in REPORTING_GROUPS}
KNOWN_CODES = {g.dimension: {code for code, _ in g.categories} for g in REPORTING_GROUPS}


def grade_band(grade: str) -> str:
    """A grade as the tables show it (CEDS codes; anything else is "other")."""
    g = grade.strip()
    if g in _PRE_K:
        return "PK"
    if g.isdigit() and len(g) <= 2:
        g = f"{int(g):02d}"
    return g if g in _GRADE_CODES else "other"


class BadEvent(ValueError):
    """An event the tally cannot use (a missing field, an unreadable date): skipped and
    counted by reason; records dead-letters the same event with its reason."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadEvent("date.invalid", f"{name} is not an ISO 8601 date") from None


def _required(value: str, name: str) -> str:
    if not value:
        raise BadEvent("payload.missing_field", f"the event has no {name}")
    return value


def _day_index(day: date) -> int:
    return (day - year_bounds(school_year(day))[0]).days


# --- one student's value -----------------------------------------------------------------


@dataclass(slots=True)
class StudentTally:
    """A student's value (JSON in student_tallies, so it is readable and typed on the way in)."""

    offsets: dict[str, int] = field(default_factory=dict)  # topic -> last offset applied
    groups: dict[str, str] = field(default_factory=dict)
    grade: str = ""  # from the student's record, where an enrollment does not say
    # (district, school, entry) -> [exit or "", grade]
    windows: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    absent: dict[tuple[str, str, int], int] = field(default_factory=dict)  # (district, school, year) -> day bits
    suspensions: set[tuple[str, str]] = field(default_factory=set)  # (district, start date)

    def fresh(self, topic: str, offset: int) -> bool:
        """True (and remembered) for an event after the last one applied from its topic."""
        if offset <= self.offsets.get(topic, -1):
            return False
        self.offsets[topic] = offset
        return True

    # --- events ---

    def enrolled(self, district: str, school: str, entry: str, grade: str) -> None:
        _day(entry, "entry_date")
        window = self.windows.setdefault(
            (_required(district, "district_id"), _required(school, "school_id"), entry), ["", ""]
        )
        if grade:
            window[1] = grade

    def withdrawn(self, district: str, school: str, exit_date: str) -> None:
        day = _day(exit_date, "exit_date")
        candidates = [
            k for k in self.windows if k[0] == district and k[1] == school and date.fromisoformat(k[2]) <= day
        ]
        if not candidates:
            raise BadEvent("enrollment.exit_without_entry", f"no enrollment at school {school} to close")
        open_ones = [k for k in candidates if not self.windows[k][0]]
        key = max(open_ones or candidates, key=lambda k: k[2])
        self.windows[key][0] = exit_date

    def school_changed(self, district: str, from_school: str, to_school: str, when: str) -> None:
        self.withdrawn(district, from_school, when)
        self.enrolled(district, to_school, when, "")

    def marked(self, district: str, school: str, day_text: str, absent: bool) -> None:
        day = _day(day_text, "date")
        key = (_required(district, "district_id"), school, school_year(day))
        bit = 1 << _day_index(day)
        bits = self.absent.get(key, 0)
        bits = bits | bit if absent else bits & ~bit
        if bits:
            self.absent[key] = bits
        else:
            self.absent.pop(key, None)

    def suspended(self, district: str, start: str) -> None:
        _day(start, "start_date")
        self.suspensions.add((_required(district, "district_id"), start))

    def grouped(self, codes: Mapping[str, str]) -> None:
        for dimension, code in codes.items():
            if code in KNOWN_CODES.get(dimension, ()):  # codes the catalogue does not list are ignored
                self.groups[dimension] = code

    # --- JSON ---

    def to_json(self) -> dict[str, Any]:
        return {
            "o": self.offsets,
            "g": self.groups,
            "r": self.grade,
            "w": [[d, s, e, x, g] for (d, s, e), (x, g) in sorted(self.windows.items())],
            "a": [[d, s, y, format(bits, "x")] for (d, s, y), bits in sorted(self.absent.items())],
            "s": sorted([d, s] for d, s in self.suspensions),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> StudentTally:
        if not value:
            return cls()
        return cls(
            offsets={str(k): int(v) for k, v in value.get("o", {}).items()},
            groups={str(k): str(v) for k, v in value.get("g", {}).items()},
            grade=str(value.get("r", "")),
            windows={(d, s, e): [x, g] for d, s, e, x, g in value.get("w", [])},
            absent={(d, s, int(y)): int(bits, 16) for d, s, y, bits in value.get("a", [])},
            suspensions={(d, s) for d, s in value.get("s", [])},
        )

    def to_text(self) -> str:
        """The value as the JSON text stored in student_tallies. The tally keeps its students as
        this text in memory too: a string is one object the garbage collector does not track, the
        tree of dicts and lists of `to_json` a dozen it does, rewritten for every student of every
        batch (docs/services/reports.md, "Where the tally's CPU goes")."""
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str | None) -> StudentTally:
        return cls.from_json(json.loads(text) if text else None)

    # --- what the student adds to the tables ---

    def years(self) -> set[int]:
        return {school_year(date.fromisoformat(e)) for _, _, e in self.windows} | {y for (_, _, y) in self.absent}

    def schools(self) -> set[tuple[str, str, int]]:
        """(district, school, year) of every calendar the student's counts depend on."""
        out: set[tuple[str, str, int]] = set()
        for (d, s, e), (x, _) in self.windows.items():
            first = school_year(date.fromisoformat(e))
            last = school_year(date.fromisoformat(x)) if x else first
            out.update((d, s, y) for y in range(first, last + 1))
        return out


Calendars = Mapping[tuple[str, str, int], Sequence[date]]  # (district, school, year) -> sorted instructional days


@dataclass(frozen=True, slots=True)
class AbsenceRule:
    """The chronic-absence line (the same settings as records': seed 000, early support)."""

    threshold: float = 0.10
    min_days: int = 10


@dataclass(frozen=True, slots=True)
class Contribution:
    """One student's row in one school year: where they count, in which columns, and what."""

    year: int
    district: str
    school: str
    columns: tuple[str, ...]
    counts: tuple[int, ...]  # per MEASURES
    sums: tuple[int, ...]  # per SUMS


def _absences(bits: int, year: int) -> Iterable[date]:
    first = year_bounds(year)[0]
    i = 0
    while bits:
        if bits & 1:
            yield first + timedelta(days=i)
        bits >>= 1
        i += 1


def contributions(tally: StudentTally, calendars: Calendars, as_of: date, rules: AbsenceRule) -> list[Contribution]:
    """The student's row in every school year they were enrolled in up to ``as_of``."""
    out: list[Contribution] = []
    for year in sorted(tally.years()):
        first, last = year_bounds(year)
        if first > as_of:
            continue
        until = min(as_of, last)
        windows: dict[tuple[str, str], list[Window]] = {}
        latest: tuple[str, str, str, str] | None = None  # (entry, district, school, grade)
        for (d, s, e), (x, g) in tally.windows.items():
            entry = date.fromisoformat(e)
            exit_ = date.fromisoformat(x) if x else None
            if entry > until or (exit_ is not None and exit_ < first):
                continue
            windows.setdefault((d, s), []).append((entry, exit_))
            if latest is None or (e, d, s) > latest[:3]:
                latest = (e, d, s, g)
        if latest is None:
            continue  # marks without an enrollment that year count nowhere
        _, district, school, grade = latest
        absences: dict[str, list[date]] = {}
        for (d, s, y), bits in tally.absent.items():
            if y == year:
                absences.setdefault(f"{d}/{s}", []).extend(_absences(bits, year))
        unattributed = absences.pop(f"{district}/", [])  # marks that named no school: the home school's
        absences.setdefault(f"{district}/{school}", []).extend(unattributed)
        attended = SchoolYearAttendance(
            calendars={f"{d}/{s}": calendars[(d, s, year)] for d, s in windows if (d, s, year) in calendars},
            windows={f"{d}/{s}": w for (d, s), w in windows.items()},
            absences=absences,
        )
        st = standing(year, attended, until, threshold=rules.threshold, min_days=rules.min_days)
        counted = st.calendar_known and st.days_enrolled >= rules.min_days
        suspended = any(first <= date.fromisoformat(start) <= until for _, start in tally.suspensions)
        groups = {**DEFAULT_GROUPS, **tally.groups}
        columns = (
            ALL,
            *(f"{g.dimension}:{groups[g.dimension]}" for g in REPORTING_GROUPS),
            f"grade:{grade_band(grade or tally.grade)}",
        )
        out.append(
            Contribution(
                year,
                district,
                school,
                columns,
                (1, int(counted), int(counted and st.chronic), int(suspended)),
                (st.days_enrolled, st.days_absent) if counted else (0, 0),
            )
        )
    return out


# --- a school's row, summed over students --------------------------------------------------


@dataclass(slots=True)
class SchoolTally:
    """One school's counts in one school year (over the students one partition holds)."""

    students: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=lambda: {m.name: {} for m in MEASURES})
    sums: dict[str, dict[str, int]] = field(default_factory=lambda: {s: {} for s in SUMS})

    def add(self, c: Contribution, sign: int) -> None:
        """A student's row in (sign 1) or out (-1). A cell that comes to 0 is dropped, so the
        rows hold no zeros and `to_json` copies them as they are (written every batch)."""
        self.students += sign
        for table, names, values in ((self.counts, MEASURE_NAMES, c.counts), (self.sums, SUMS, c.sums)):
            for name, n in zip(names, values, strict=True):
                if n:
                    row = table[name]
                    for col in c.columns:
                        total = row.get(col, 0) + sign * n
                        if total:
                            row[col] = total
                        else:
                            del row[col]

    def merge(self, other: SchoolTally) -> None:
        self.students += other.students
        for table, theirs in ((self.counts, other.counts), (self.sums, other.sums)):
            for name, row in theirs.items():
                mine = table.setdefault(name, {})
                for col, n in row.items():
                    mine[col] = mine.get(col, 0) + n

    def to_json(self) -> dict[str, Any]:
        def copy(table: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
            return {name: dict(row) for name, row in table.items()}  # no zeros to leave out (`add`)

        return {"students": self.students, "counts": copy(self.counts), "sums": copy(self.sums)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SchoolTally:
        tally = cls(students=int(value.get("students", 0)))
        for name, row in value.get("counts", {}).items():
            tally.counts[name] = {str(c): int(n) for c, n in row.items()}
        for name, row in value.get("sums", {}).items():
            tally.sums[name] = {str(c): int(n) for c, n in row.items()}
        return tally


SchoolKey = tuple[int, str, str]  # (school year, district, school)
