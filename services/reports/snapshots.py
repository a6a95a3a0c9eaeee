"""A school year's statewide tables, suppressed and written out as the public sees them (pure).

`tables` turns the schools' summed tallies into the geography the rules work on (the state,
its districts, their schools; a district's cells are its schools' sums, the state's its
districts'); `document` applies `suppression.suppress` and writes every cell as a number or
the reason it is not one, with the rates the rules allow; `csv_lines` is the same as CSV.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from homeroom.calendar import school_year_label
from homeroom.contracts.reports import (
    CellCounts,
    Count,
    Dimension,
    Group,
    LevelName,
    Measure,
    OwnRow,
    Page,
    Rate,
    Row,
    Snapshot,
    Unit,
)
from services.reports.suppression import (
    ALL,
    Layout,
    Level,
    Pattern,
    Rules,
    Status,
    extreme,
    rate_published,
    suppress,
)
from services.reports.suppression import Unit as GeoUnit
from services.reports.tallies import LAYOUT, MEASURES, SUMS, AbsenceRule, SchoolTally

STATE = "state"
LEVEL_NAMES: dict[Level, LevelName] = {Level.STATE: "state", Level.DISTRICT: "district", Level.SCHOOL: "school"}
RATES = (("chronic_absence", "chronic", "counted"), ("suspension", "suspended", "enrolled"))


@dataclass(slots=True)
class Tables:
    """One school year's cells: ``counts[m][u][c]`` and ``sums[s][u][c]`` over ``layout.columns``."""

    units: list[GeoUnit]
    names: list[str]
    counts: list[list[list[int]]]
    sums: list[list[list[int]]]

    def index(self) -> dict[str, int]:
        return {u.key: i for i, u in enumerate(self.units)}


def school_key(district: str, school: str) -> str:
    return f"{district}/{school}"


def tables(
    schools: Mapping[tuple[str, str], SchoolTally], names: Mapping[tuple[str, str], str], state_name: str
) -> Tables:
    """The state, every district with a student, every school with a student: the sums close."""
    columns = LAYOUT.columns
    col = {c: i for i, c in enumerate(columns)}
    units = [GeoUnit(STATE, Level.STATE, None)]
    labels = [state_name]
    by_district: dict[str, list[str]] = {}
    for district, school in sorted(schools):
        if schools[(district, school)].students > 0:
            by_district.setdefault(district, []).append(school)
    rows: list[SchoolTally | None] = [None]
    for district, school_ids in by_district.items():
        parent = len(units)
        units.append(GeoUnit(district, Level.DISTRICT, 0))
        labels.append(names.get((district, ""), district))
        rows.append(None)
        for school in school_ids:
            units.append(GeoUnit(school_key(district, school), Level.SCHOOL, parent))
            labels.append(names.get((district, school), school))
            rows.append(schools[(district, school)])
    counts = [[[0] * len(columns) for _ in units] for _ in MEASURES]
    sums = [[[0] * len(columns) for _ in units] for _ in SUMS]
    # Schools come after their district: walk backwards so each adds into its parent once done.
    for u in range(len(units) - 1, -1, -1):
        tally = rows[u]
        if tally is not None:
            for m, measure in enumerate(MEASURES):
                for c, n in tally.counts.get(measure.name, {}).items():
                    if c in col:
                        counts[m][u][col[c]] = n
            for s, name in enumerate(SUMS):
                for c, n in tally.sums.get(name, {}).items():
                    if c in col:
                        sums[s][u][col[c]] = n
        above = units[u].parent
        if above is not None:
            for table in (*counts, *sums):
                mine, theirs = table[u], table[above]
                for i, n in enumerate(mine):
                    theirs[i] += n
    return Tables(units, labels, counts, sums)


def _units(t: Tables) -> list[Unit]:
    out = []
    for unit, name in zip(t.units, t.names, strict=True):
        district, _, school = unit.key.partition("/")
        out.append(
            Unit(
                key=unit.key,
                level=LEVEL_NAMES[unit.level],
                name=name,
                district_id="" if unit.level == Level.STATE else district,
                school_id=school,
                parent=None if unit.parent is None else t.units[unit.parent].key,
            )
        )
    return out


def _layout_models(layout: Layout) -> tuple[list[Measure], list[Dimension]]:
    measures = [Measure(name=m.name, label=m.label, parent=m.parent) for m in layout.measures]
    dimensions = [
        Dimension(
            name=d.name,
            label=d.label,
            levels=[LEVEL_NAMES[lv] for lv in sorted(d.levels)],
            groups=[Group(code=code, label=label, column=f"{d.name}:{code}") for code, label in d.categories],
        )
        for d in layout.dimensions
    ]
    return measures, dimensions


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _count(value: int, status: Status, rules: Rules) -> Count:
    if status == Status.PUBLISHED:
        return Count(value=value, status="published", shown=f"{value:,}")
    if status == Status.FEWER_THAN:
        return Count(value=None, status="fewer_than", shown=f"fewer than {rules.min_cell}")
    return Count(value=None, status="withheld", shown="withheld")


NOT_SHOWN = Rate(value=None, shown="not shown")


def rules_stated(rules: Rules, absence: AbsenceRule) -> dict[str, Any]:
    return {
        **rules.describe(),
        "chronic_absence": {
            "threshold": absence.threshold,
            "min_days": absence.min_days,
            "meaning": (
                f"absent on at least {absence.threshold:.0%} of the instructional days enrolled, among students "
                f"enrolled at least {absence.min_days} instructional days at schools whose calendar is known"
            ),
        },
        "attribution": "each student counts once, at the school of their latest enrollment in the school year",
        "attendance_rate": "1 - days absent / days enrolled, over the students whose attendance is counted",
        "policy": "homeroom-reports/1",
    }


def compact_rules(rules: Rules, absence: AbsenceRule) -> str:
    """The parameters in one short line (the audit entry keeps it)."""
    return json.dumps(
        {
            "policy": "homeroom-reports/1",
            "min_cell": rules.min_cell,
            "extreme_rate_min_group": rules.extreme_rate_min_group,
            "chronic_threshold": absence.threshold,
            "chronic_min_days": absence.min_days,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


@dataclass(slots=True)
class Built:
    tables: Tables
    pattern: Pattern
    snapshot: Snapshot


def document(
    t: Tables,
    year: int,
    period: tuple[date, date],
    rules: Rules,
    absence: AbsenceRule,
    state_name: str,
    *,
    complementary: bool = True,
) -> Built:
    """Suppress the tables and write them out; ``release`` is left for the caller to fill."""
    pattern = suppress(LAYOUT, t.units, t.counts, rules, complementary=complementary)
    columns = LAYOUT.columns
    m_index = {m.name: i for i, m in enumerate(MEASURES)}
    rows: list[Row] = []
    published = fewer = withheld = 0
    for u, unit in enumerate(t.units):
        for c_name in LAYOUT.columns_at(unit.level):
            c = columns.index(c_name)
            counts: dict[str, Count] = {}
            for m, measure in enumerate(MEASURES):
                status = pattern.of(m, u, c)
                counts[measure.name] = _count(t.counts[m][u][c], status, rules)
                published += status == Status.PUBLISHED
                fewer += status == Status.FEWER_THAN
                withheld += status == Status.WITHHELD
            rates: dict[str, Rate] = {}
            for name, numerator, denominator in RATES:
                num, den = m_index[numerator], m_index[denominator]
                if rate_published(pattern, num, den, u, c) and t.counts[den][u][c]:
                    value = t.counts[num][u][c] / t.counts[den][u][c]
                    rates[name] = Rate(value=round(value, 4), shown=_percent(value))
                else:
                    rates[name] = NOT_SHOWN
            counted = t.counts[m_index["counted"]][u][c]
            enrolled_days, absent_days = t.sums[0][u][c], t.sums[1][u][c]
            if (
                pattern.of(m_index["counted"], u, c) == Status.PUBLISHED
                and enrolled_days
                and not extreme(absent_days, enrolled_days, counted, rules)
            ):
                value = 1 - absent_days / enrolled_days
                rates["attendance"] = Rate(value=round(value, 4), shown=_percent(value))
            else:
                rates["attendance"] = NOT_SHOWN
            rows.append(Row(unit=unit.key, column=c_name, counts=counts, rates=rates))
    measures, dimensions = _layout_models(LAYOUT)
    snapshot = Snapshot(
        release=None,
        state=state_name,
        school_year=year,
        school_year_label=school_year_label(year),
        period_start=period[0],
        period_end=period[1],
        rules=rules_stated(rules, absence),
        measures=measures,
        dimensions=dimensions,
        units=_units(t),
        rows=rows,
        cells=CellCounts(total=published + fewer + withheld, published=published, fewer_than=fewer, withheld=withheld),
    )
    return Built(t, pattern, snapshot)


def for_district(snapshot: Snapshot, district_id: str) -> Snapshot:
    """The state's rows, the district's and its schools' (what a district page shows)."""
    keep = {STATE, district_id}
    units = [u for u in snapshot.units if u.key in keep or u.parent == district_id]
    keys = {u.key for u in units}
    return snapshot.model_copy(update={"units": units, "rows": [r for r in snapshot.rows if r.unit in keys]})


@dataclass(frozen=True, slots=True)
class Selection:
    """What a reader asked for of a snapshot (the API's filters): none given is the whole of it."""

    district: str | None = None  # the state's rows, this district's and its schools'
    school: str | None = None  # "district/school": the state, the district and that school
    levels: frozenset[str] = frozenset()  # state, district, school
    columns: frozenset[str] = frozenset()  # 'all', 'sex:female', ...
    offset: int = 0
    limit: int | None = None

    @property
    def filters(self) -> dict[str, str]:
        named = {"district": self.district or "", "school": self.school or ""}
        named |= {"level": ",".join(sorted(self.levels)), "column": ",".join(sorted(self.columns))}
        return {k: v for k, v in named.items() if v}

    @property
    def whole(self) -> bool:
        return not self.filters and self.offset == 0 and self.limit is None


def select(snapshot: Snapshot, selection: Selection) -> Snapshot:
    """The part of a snapshot a reader asked for: units and rows filtered, then a page of the
    rows (`page` says which, and where the next page starts). KeyError for a district or
    school the snapshot has no rows of."""
    if selection.whole:
        return snapshot
    units = snapshot.units
    if selection.district is not None:
        if not any(u.key == selection.district and u.level == "district" for u in units):
            raise KeyError(f"district {selection.district!r} has no rows in this snapshot")
        units = [u for u in units if u.key in (STATE, selection.district) or u.parent == selection.district]
    if selection.school is not None:
        school = next((u for u in units if u.key == selection.school and u.level == "school"), None)
        if school is None:
            raise KeyError(f"school {selection.school!r} has no rows in this snapshot")
        units = [u for u in units if u.key in (STATE, school.parent, school.key)]
    if selection.levels:
        units = [u for u in units if u.level in selection.levels]
    keys = {u.key for u in units}
    rows = [r for r in snapshot.rows if r.unit in keys and (not selection.columns or r.column in selection.columns)]
    end = len(rows) if selection.limit is None else min(len(rows), selection.offset + selection.limit)
    page = Page(
        filters=selection.filters,
        offset=selection.offset,
        limit=selection.limit,
        rows_matching=len(rows),
        next_offset=end if end < len(rows) else None,
    )
    return snapshot.model_copy(update={"units": units, "rows": rows[selection.offset : end], "page": page})


def canonical(snapshot: Snapshot) -> bytes:
    """The bytes the content hash covers: the document with its release's hash left empty."""
    body = snapshot.model_dump(mode="json", exclude={"page"})  # a page is a view of the document
    if body.get("freshness") is None:  # documents published before it was stated hash as they did
        body.pop("freshness", None)
    if body.get("release"):
        body["release"]["content_sha256"] = ""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_sha256(snapshot: Snapshot) -> str:
    return hashlib.sha256(canonical(snapshot)).hexdigest()


CSV_HEADER = [
    "school_year",
    "level",
    "district_id",
    "school_id",
    "name",
    "dimension",
    "group",
    *(m.name for m in MEASURES),
    "chronic_absence_rate",
    "suspension_rate",
    "attendance_rate",
]


def csv_lines(snapshot: Snapshot) -> Iterator[str]:
    """The snapshot as CSV, one line per unit and group; suppressed cells as the page shows them."""
    units = {u.key: u for u in snapshot.units}
    labels = {g.column: (d.label, g.label) for d in snapshot.dimensions for g in d.groups}
    out = io.StringIO()
    writer = csv.writer(out)

    def flush() -> str:
        text = out.getvalue()
        out.seek(0)
        out.truncate()
        return text

    writer.writerow(CSV_HEADER)
    yield flush()
    for row in snapshot.rows:
        unit = units[row.unit]
        dimension, group = labels.get(row.column, ("All students", "All students"))
        writer.writerow(
            [
                snapshot.school_year_label,
                unit.level,
                unit.district_id,
                unit.school_id,
                _csv_text(unit.name),
                dimension,
                group,
                *(
                    row.counts[m.name].value if row.counts[m.name].value is not None else row.counts[m.name].shown
                    for m in MEASURES
                ),
                *(
                    f"{row.rates[r].value:.4f}" if row.rates[r].value is not None else "not shown"
                    for r in ("chronic_absence", "suspension", "attendance")
                ),
            ]
        )
        yield flush()


def _csv_text(text: str) -> str:
    """A name a spreadsheet would run as a formula starts with a quote instead (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def own_rows(t: Tables, district_id: str) -> tuple[list[Unit], list[OwnRow]]:
    """A district's own rows, unsuppressed, every column at every level (grades by school too)."""
    units = _units(t)
    keep = [i for i, u in enumerate(units) if u.key == district_id or u.parent == district_id]
    rows = []
    for u in keep:
        for c, name in enumerate(LAYOUT.columns):
            counts = {m.name: t.counts[m_i][u][c] for m_i, m in enumerate(MEASURES)}
            if not any(counts.values()) and name != ALL:
                continue
            rows.append(
                OwnRow(
                    unit=units[u].key,
                    column=name,
                    counts=counts,
                    days_enrolled=t.sums[0][u][c],
                    days_absent=t.sums[1][u][c],
                )
            )
    return [units[u] for u in keep], rows


def unit_names(rows: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str], str]:
    return {(district, school): name for district, school, name in rows}
