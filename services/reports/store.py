"""The reports service's SQL. Functions take a connection (or the pool) so callers choose the transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from homeroom.storage import Connection
from services.reports.tallies import SchoolTally

TallyRow = tuple[int, str, str, int, dict[str, Any], datetime | None]  # year, district, school, students, tally, newest


async def write_tallies(conn: Connection, partition: int, generation: int, rows: Sequence[TallyRow]) -> None:
    """One multi-row upsert of a partition's changed school rows. A row written by a later
    generation (the partition's new holder after a rebalance) is never overwritten."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO school_tallies AS t
               (school_year, district_id, school_id, partition, generation, students, tally, newest_event)
           SELECT r.y, r.d, r.s, $1, $2, r.n, r.t::jsonb, r.e
           FROM unnest($3::int[], $4::text[], $5::text[], $6::int[], $7::text[], $8::timestamptz[])
                AS r(y, d, s, n, t, e)
           ON CONFLICT (school_year, district_id, school_id, partition) DO UPDATE
               SET generation = EXCLUDED.generation, students = EXCLUDED.students, tally = EXCLUDED.tally,
                   newest_event = GREATEST(t.newest_event, EXCLUDED.newest_event), updated_at = now()
               WHERE t.generation <= EXCLUDED.generation""",
        partition,
        generation,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [json.dumps(r[4], separators=(",", ":")) for r in rows],
        [r[5] for r in rows],
    )


async def replace_partitions(
    conn: Connection, rows_by_partition: Mapping[int, Sequence[TallyRow]], generation: int
) -> None:
    """After a rebalance: each partition's rows are exactly what its new holder rebuilt."""
    partitions = list(rows_by_partition)
    await conn.execute(
        "DELETE FROM school_tallies WHERE partition = ANY($1::int[]) AND generation <= $2", partitions, generation
    )
    for partition, rows in rows_by_partition.items():
        await write_tallies(conn, partition, generation, rows)


StudentRow = tuple[int, str, str]  # partition, student key, value (JSON text)


async def write_students(conn: Connection, generation: int, rows: Sequence[StudentRow]) -> None:
    """One upsert of the students a batch changed (in the batch's transaction, with their school
    rows). A value written by a later generation (the partition's new holder) is never overwritten."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO student_tallies AS t (partition, student_key, generation, value)
           SELECT r.p, r.k, $1, r.v::jsonb FROM unnest($2::int[], $3::text[], $4::text[]) AS r(p, k, v)
           ON CONFLICT (partition, student_key) DO UPDATE
               SET generation = EXCLUDED.generation, value = EXCLUDED.value, updated_at = now()
               WHERE t.generation <= EXCLUDED.generation""",
        generation,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )


async def students_of(conn: Connection, partitions: Sequence[int]) -> list[StudentRow]:
    """Every student value of these partitions (what a process given them counts from)."""
    rows = await conn.fetch(
        "SELECT partition, student_key, value FROM student_tallies WHERE partition = ANY($1::int[])",
        list(partitions),
    )
    return [(r["partition"], r["student_key"], r["value"]) for r in rows]


@dataclass(slots=True)
class YearTallies:
    schools: dict[tuple[str, str], SchoolTally]
    newest_event: datetime | None


async def year_tallies(conn: Connection, year: int, district_id: str | None = None) -> YearTallies:
    """Every school's row in a school year (one district's, if named), summed over partitions."""
    rows = await conn.fetch(
        """SELECT district_id, school_id, tally, newest_event FROM school_tallies
           WHERE school_year = $1 AND students > 0 AND ($2::text IS NULL OR district_id = $2)""",
        year,
        district_id,
    )
    schools: dict[tuple[str, str], SchoolTally] = {}
    newest: datetime | None = None
    for r in rows:
        key = (r["district_id"], r["school_id"])
        part = SchoolTally.from_json(json.loads(r["tally"]))
        if key in schools:
            schools[key].merge(part)
        else:
            schools[key] = part
        if r["newest_event"] is not None and (newest is None or r["newest_event"] > newest):
            newest = r["newest_event"]
    return YearTallies(schools, newest)


async def tallies_stamp(conn: Connection, year: int) -> tuple[int, datetime | None]:
    """What changes whenever a school row of the year is written: its rows and their latest write."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, max(updated_at) AS at FROM school_tallies WHERE school_year = $1", year
    )
    return (int(row["n"]), row["at"]) if row is not None else (0, None)


async def tally_years(conn: Connection) -> list[int]:
    rows = await conn.fetch("SELECT DISTINCT school_year FROM school_tallies WHERE students > 0 ORDER BY 1")
    return [r["school_year"] for r in rows]


# --- reference data ----------------------------------------------------------------------


async def upsert_calendar(
    conn: Connection, district: str, school: str, year: int, source: str, days: Sequence[date], event_id: str
) -> None:
    await conn.execute(
        """INSERT INTO calendars (district_id, school_id, school_year, source, days, event_id)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (district_id, school_id, school_year, source) DO UPDATE
               SET days = EXCLUDED.days, event_id = EXCLUDED.event_id,
                   version = nextval('calendar_versions'), updated_at = now()""",
        district,
        school,
        year,
        source,
        list(days),
        event_id,
    )


async def calendars_since(conn: Connection, version: int) -> list[tuple[str, str, int, str, list[date], int]]:
    rows = await conn.fetch(
        """SELECT district_id, school_id, school_year, source, days, version FROM calendars
           WHERE version > $1 ORDER BY version""",
        version,
    )
    return [
        (r["district_id"], r["school_id"], r["school_year"], r["source"], list(r["days"]), r["version"]) for r in rows
    ]


async def upsert_school(conn: Connection, district: str, school: str, name: str) -> None:
    await conn.execute(
        """INSERT INTO schools (district_id, school_id, name) VALUES ($1, $2, $3)
           ON CONFLICT (district_id, school_id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()""",
        district,
        school,
        name,
    )


async def school_names(conn: Connection) -> list[tuple[str, str, str]]:
    rows = await conn.fetch("SELECT district_id, school_id, name FROM schools")
    return [(r["district_id"], r["school_id"], r["name"]) for r in rows]


# --- snapshots -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    snapshot_id: UUID
    school_year: int
    version: int
    period_start: date
    period_end: date
    published_at: datetime
    requested_by: dict[str, str]
    purpose: str
    cells: int
    fewer_than: int
    withheld: int
    content_sha256: str


def _record(r: Any) -> SnapshotRecord:
    return SnapshotRecord(
        r["snapshot_id"],
        r["school_year"],
        r["version"],
        r["period_start"],
        r["period_end"],
        r["published_at"],
        json.loads(r["requested_by"]),
        r["purpose"],
        r["cells"],
        r["fewer_than"],
        r["withheld"],
        r["content_sha256"],
    )


async def next_version(conn: Connection, year: int) -> int:
    """The next version of a school year's snapshot; holds a lock on the year until commit."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('homeroom.reports.snapshot'), $1)", year)
    latest: int | None = await conn.fetchval("SELECT max(version) FROM snapshots WHERE school_year = $1", year)
    return (latest or 0) + 1


async def insert_snapshot(conn: Connection, record: SnapshotRecord, rules: dict[str, Any], document: bytes) -> None:
    await conn.execute(
        """INSERT INTO snapshots (snapshot_id, school_year, version, period_start, period_end, published_at,
                                  requested_by, purpose, rules, cells, fewer_than, withheld, content_sha256, document)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9::jsonb, $10, $11, $12, $13, $14)""",
        record.snapshot_id,
        record.school_year,
        record.version,
        record.period_start,
        record.period_end,
        record.published_at,
        json.dumps(record.requested_by),
        record.purpose,
        json.dumps(rules),
        record.cells,
        record.fewer_than,
        record.withheld,
        record.content_sha256,
        document,
    )


async def list_snapshots(conn: Connection, year: int | None, limit: int) -> list[SnapshotRecord]:
    rows = await conn.fetch(
        """SELECT snapshot_id, school_year, version, period_start, period_end, published_at, requested_by,
                  purpose, cells, fewer_than, withheld, content_sha256
           FROM snapshots WHERE $1::int IS NULL OR school_year = $1
           ORDER BY published_at DESC, version DESC LIMIT $2""",
        year,
        limit,
    )
    return [_record(r) for r in rows]


async def snapshot_document(conn: Connection, snapshot_id: UUID) -> bytes | None:
    value: bytes | None = await conn.fetchval("SELECT document FROM snapshots WHERE snapshot_id = $1", snapshot_id)
    return value
