"""SQL of the records service. Every student-data statement runs inside `district_tx` /
`enter_district`, as the non-owner role `homeroom_records_app` with the transaction-local
setting `homeroom.district_id`, so PostgreSQL's row-level security confines it to one
district whatever its WHERE clause says (see migrations/001_records.sql).

Writes are upserts keyed by natural keys, so replaying an event gives the same state.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from datetime import date, datetime
from typing import Any

import asyncpg

from homeroom.storage import Connection, columns

APP_ROLE = "homeroom_records_app"
DISTRICT_SETTING = "homeroom.district_id"


async def enter_district(conn: Connection, district_id: str) -> None:
    """Confine the rest of this transaction to one district (call inside a transaction)."""
    if not district_id:
        raise ValueError("a district id is required to touch student data")
    # One round trip: set_config('role', ..., true) is SET LOCAL ROLE.
    await conn.execute(
        "SELECT set_config('role', $1, true), set_config($2, $3, true)", APP_ROLE, DISTRICT_SETTING, district_id
    )


@contextlib.asynccontextmanager
async def district_tx(pool: asyncpg.Pool, district_id: str) -> AsyncIterator[Connection]:
    """A transaction that can see and write exactly one district's student rows."""
    async with pool.acquire() as conn, conn.transaction():
        await enter_district(conn, district_id)
        yield conn


# --- organisations and agreements (not student data) ------------------------------------


async def upsert_school(
    conn: Connection, district_id: str, school_id: str, name: str, nces_id: str, grades: Sequence[str], deleted: bool
) -> None:
    await conn.execute(
        """INSERT INTO schools (district_id, school_id, name, nces_id, grades, deleted)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (district_id, school_id) DO UPDATE SET name = EXCLUDED.name, nces_id = EXCLUDED.nces_id,
               grades = EXCLUDED.grades, deleted = EXCLUDED.deleted, updated_at = clock_timestamp()
           WHERE (schools.name, schools.nces_id, schools.grades, schools.deleted)
                 IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.nces_id, EXCLUDED.grades, EXCLUDED.deleted)""",
        district_id,
        school_id,
        name,
        nces_id,
        list(grades),
        deleted,
    )


async def _exists(conn: Connection, query: str, *args: object) -> bool:
    """Whether `query` (a `SELECT 1 ...`) finds a row."""
    return bool(await conn.fetchval(query, *args))


async def school_exists(conn: Connection, district_id: str, school_id: str) -> bool:
    return await _exists(
        conn, "SELECT 1 FROM schools WHERE district_id = $1 AND school_id = $2", district_id, school_id
    )


async def list_schools(conn: Connection, district_ids: Iterable[str]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM schools WHERE district_id = ANY($1::text[]) ORDER BY district_id, school_id",
            list(district_ids),
        )
    )


async def end_agreement(conn: Connection, agreement_id: str, version: int, ended_on: str, reason: str) -> None:
    await conn.execute(
        """INSERT INTO ended_agreements (agreement_id, version, ended_on, reason) VALUES ($1, $2, $3, $4)
           ON CONFLICT (agreement_id) DO NOTHING""",
        agreement_id,
        version,
        ended_on,
        reason,
    )


async def agreement_ended(conn: Connection, agreement_id: str) -> bool:
    return await _exists(conn, "SELECT 1 FROM ended_agreements WHERE agreement_id = $1", agreement_id)


async def districts_of(conn: Connection, student_key: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT district_id FROM student_index WHERE student_key = $1 ORDER BY district_id", student_key
    )
    return [r["district_id"] for r in rows]


# --- students (inside enter_district) ---------------------------------------------------


async def ensure_student(conn: Connection, district_id: str, student_key: str) -> None:
    await conn.execute(
        """INSERT INTO students (district_id, student_key) VALUES ($1, $2)
           ON CONFLICT (district_id, student_key) DO NOTHING""",
        district_id,
        student_key,
    )
    await conn.execute(
        "INSERT INTO student_index (student_key, district_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        student_key,
        district_id,
    )


async def touch(conn: Connection, district_id: str, student_key: str) -> None:
    await conn.execute(
        "UPDATE students SET updated_at = clock_timestamp() WHERE district_id = $1 AND student_key = $2",
        district_id,
        student_key,
    )


async def student_exists(conn: Connection, district_id: str, student_key: str) -> bool:
    query = "SELECT 1 FROM students WHERE district_id = $1 AND student_key = $2"
    return await _exists(conn, query, district_id, student_key)


async def register_student(
    conn: Connection,
    district_id: str,
    student_key: str,
    local_id_hash: str,
    sealed: Mapping[str, bytes],
    plain: Mapping[str, str],
    program_flags: bytes | None,
    source: str = "ingest",
) -> None:
    await ensure_student(conn, district_id, student_key)
    await conn.execute(
        """UPDATE students SET local_id_hash = COALESCE(NULLIF($3, ''), local_id_hash),
               plain_elements = plain_elements || $4::jsonb, program_flags = COALESCE($5, program_flags),
               registered = true, updated_at = clock_timestamp()
           WHERE district_id = $1 AND student_key = $2""",
        district_id,
        student_key,
        local_id_hash,
        json.dumps(dict(plain)),
        program_flags,
    )
    if sealed:
        await conn.executemany(
            """INSERT INTO student_elements (district_id, student_key, element, sealed, source)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (district_id, student_key, element)
               DO UPDATE SET sealed = EXCLUDED.sealed, source = EXCLUDED.source, updated_at = clock_timestamp()""",
            [(district_id, student_key, element, value, source) for element, value in sealed.items()],
        )


@dataclass(slots=True)
class Registration:
    """A student's registration as the consumer applies it; several of one student in a
    batch are merged in order by `merged`."""

    student_key: str
    local_id_hash: str
    sealed: dict[str, bytes]
    plain: dict[str, str]
    program_flags: bytes | None

    def merged(self, later: Registration) -> Registration:
        return Registration(
            self.student_key,
            later.local_id_hash or self.local_id_hash,
            {**self.sealed, **later.sealed},
            {**self.plain, **later.plain},
            later.program_flags if later.program_flags is not None else self.program_flags,
        )


_REGISTER = """WITH r AS (
        SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[])
            AS r(student_key, local_id_hash, plain, program_flags)),
    indexed AS (
        INSERT INTO student_index (student_key, district_id) SELECT student_key, $1 FROM r ON CONFLICT DO NOTHING),
    elements AS (
        INSERT INTO student_elements (district_id, student_key, element, sealed, source)
        SELECT $1, k, element, sealed, 'ingest'
        FROM unnest($6::text[], $7::text[], $8::bytea[]) AS s(k, element, sealed)
        ON CONFLICT (district_id, student_key, element)
        DO UPDATE SET sealed = EXCLUDED.sealed, source = EXCLUDED.source, updated_at = clock_timestamp())
    INSERT INTO students (district_id, student_key, local_id_hash, plain_elements, program_flags, registered)
    SELECT $1, student_key, local_id_hash, plain::jsonb, program_flags, true FROM r
    ON CONFLICT (district_id, student_key) DO UPDATE SET
        local_id_hash = COALESCE(NULLIF(EXCLUDED.local_id_hash, ''), students.local_id_hash),
        plain_elements = students.plain_elements || EXCLUDED.plain_elements,
        program_flags = COALESCE(EXCLUDED.program_flags, students.program_flags),
        registered = true, updated_at = clock_timestamp()"""


async def register_students(conn: Connection, district_id: str, registrations: Sequence[Registration]) -> None:
    """`register_student` for many students in one statement (inside enter_district)."""
    merged: dict[str, Registration] = {}
    for r in registrations:
        merged[r.student_key] = merged[r.student_key].merged(r) if r.student_key in merged else r
    rows = list(merged.values())
    elements = [(r.student_key, element, sealed) for r in rows for element, sealed in r.sealed.items()]
    await conn.execute(
        _REGISTER,
        district_id,
        [r.student_key for r in rows],
        [r.local_id_hash for r in rows],
        [json.dumps(r.plain) for r in rows],
        [r.program_flags for r in rows],
        [e[0] for e in elements],
        [e[1] for e in elements],
        [e[2] for e in elements],
    )


@dataclass(frozen=True, slots=True)
class Enrollment:
    student_key: str
    school_id: str
    entry_date: date
    grade_level: str
    entry_type: str


_ENROLL = """WITH e AS (
        SELECT * FROM unnest($2::text[], $3::text[], $4::date[], $5::text[], $6::text[])
            AS e(student_key, school_id, entry_date, grade_level, entry_type)),
    g AS (SELECT * FROM unnest($7::text[], $8::text[]) AS g(student_key, grade_level)),
    indexed AS (
        INSERT INTO student_index (student_key, district_id) SELECT student_key, $1 FROM g ON CONFLICT DO NOTHING),
    queued AS (
        INSERT INTO absence_reviews (district_id, student_key)
        SELECT $1, student_key FROM g ORDER BY student_key COLLATE "C"
        ON CONFLICT (district_id, student_key) DO UPDATE SET queued_at = EXCLUDED.queued_at),
    enrolled AS (
        INSERT INTO enrollments (district_id, student_key, school_id, entry_date, grade_level, entry_type)
        SELECT $1, student_key, school_id, entry_date, grade_level, entry_type FROM e
        ON CONFLICT (district_id, student_key, school_id, entry_date)
        DO UPDATE SET grade_level = EXCLUDED.grade_level, entry_type = EXCLUDED.entry_type,
            updated_at = clock_timestamp()
        WHERE (enrollments.grade_level, enrollments.entry_type) IS DISTINCT FROM
              (EXCLUDED.grade_level, EXCLUDED.entry_type))
    INSERT INTO students (district_id, student_key, plain_elements)
    SELECT $1, student_key,
           CASE WHEN grade_level = '' THEN '{}'::jsonb
                ELSE jsonb_build_object('enrollment.grade_level', grade_level) END
    FROM g
    ON CONFLICT (district_id, student_key) DO UPDATE SET
        plain_elements = students.plain_elements || EXCLUDED.plain_elements, updated_at = clock_timestamp()"""


async def enroll_many(conn: Connection, district_id: str, enrollments: Sequence[Enrollment]) -> None:
    """`enroll` for many enrollments in one statement (inside enter_district): the last of
    one (student, school, entry date) wins, and a student's last grade level given; the students
    are queued for the absence reviewer in the same statement (as `queue_review`, in key order)."""
    last = {(e.student_key, e.school_id, e.entry_date): e for e in enrollments}
    grades: dict[str, str] = {}
    for e in enrollments:
        if e.grade_level or e.student_key not in grades:
            grades[e.student_key] = e.grade_level or grades.get(e.student_key, "")
    rows = list(last.values())
    await conn.execute(
        _ENROLL,
        district_id,
        *columns(rows, "student_key", "school_id", "entry_date", "grade_level", "entry_type"),
        list(grades),
        list(grades.values()),
    )


async def put_elements_if_absent(
    conn: Connection, district_id: str, student_key: str, sealed: Mapping[str, bytes], source: str
) -> None:
    """Add sealed elements the record does not have yet (what the district has wins), in one statement."""
    await conn.execute(
        """INSERT INTO student_elements (district_id, student_key, element, sealed, source)
           SELECT $1, $2, e.element, e.sealed, $5 FROM unnest($3::text[], $4::bytea[]) AS e(element, sealed)
           ON CONFLICT DO NOTHING""",
        district_id,
        student_key,
        list(sealed),
        list(sealed.values()),
        source,
    )


async def merge_plain_if_absent(conn: Connection, district_id: str, student_key: str, plain: Mapping[str, str]) -> None:
    """Add non-PII elements the record does not have yet (what the district has wins)."""
    await conn.execute(
        """UPDATE students SET plain_elements = $3::jsonb || plain_elements
           WHERE district_id = $1 AND student_key = $2""",
        district_id,
        student_key,
        json.dumps(dict(plain)),
    )


async def replace_element(conn: Connection, district_id: str, student_key: str, element: str, sealed: bytes) -> None:
    await conn.execute(
        """INSERT INTO student_elements (district_id, student_key, element, sealed, source)
           VALUES ($1, $2, $3, $4, 'amendment')
           ON CONFLICT (district_id, student_key, element)
           DO UPDATE SET sealed = EXCLUDED.sealed, source = 'amendment', updated_at = clock_timestamp()""",
        district_id,
        student_key,
        element,
        sealed,
    )


async def enroll(
    conn: Connection,
    district_id: str,
    student_key: str,
    school_id: str,
    entry_date: date,
    grade_level: str,
    entry_type: str,
) -> None:
    await ensure_student(conn, district_id, student_key)
    await conn.execute(
        """INSERT INTO enrollments (district_id, student_key, school_id, entry_date, grade_level, entry_type)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (district_id, student_key, school_id, entry_date)
           DO UPDATE SET grade_level = EXCLUDED.grade_level, entry_type = EXCLUDED.entry_type,
               updated_at = clock_timestamp()
           WHERE (enrollments.grade_level, enrollments.entry_type) IS DISTINCT FROM
                 (EXCLUDED.grade_level, EXCLUDED.entry_type)""",
        district_id,
        student_key,
        school_id,
        entry_date,
        grade_level,
        entry_type,
    )
    if grade_level:
        await conn.execute(
            """UPDATE students
               SET plain_elements = plain_elements || jsonb_build_object('enrollment.grade_level', $3::text)
               WHERE district_id = $1 AND student_key = $2""",
            district_id,
            student_key,
            grade_level,
        )
    await touch(conn, district_id, student_key)


async def withdraw(
    conn: Connection, district_id: str, student_key: str, school_id: str, exit_date: date, exit_code: str
) -> str:
    """Close the enrollment at `school_id` that was open on `exit_date`. Returns "ok",
    "no_enrollment" (nothing at that school) or "before_entry" (exit precedes every entry)."""
    row = await conn.fetchrow(
        """SELECT entry_date FROM enrollments
           WHERE district_id = $1 AND student_key = $2 AND school_id = $3 AND entry_date <= $4
                 AND (exit_date IS NULL OR exit_date = $4)
           ORDER BY entry_date DESC LIMIT 1""",
        district_id,
        student_key,
        school_id,
        exit_date,
    )
    if row is None:
        later = await conn.fetchval(
            "SELECT 1 FROM enrollments WHERE district_id = $1 AND student_key = $2 AND school_id = $3",
            district_id,
            student_key,
            school_id,
        )
        return "before_entry" if later else "no_enrollment"
    await conn.execute(
        """UPDATE enrollments SET exit_date = $5, exit_code = $6, updated_at = clock_timestamp()
           WHERE district_id = $1 AND student_key = $2 AND school_id = $3 AND entry_date = $4""",
        district_id,
        student_key,
        school_id,
        row["entry_date"],
        exit_date,
        exit_code,
    )
    await touch(conn, district_id, student_key)
    return "ok"


@dataclass(frozen=True, slots=True)
class Mark:
    """An attendance mark as the consumer applies it."""

    student_key: str
    day: date
    period: str  # "" for the daily mark
    school_id: str
    category: str
    excused: bool


# Every lookup is a primary-key probe per input row (LATERAL ... LIMIT 1, which the planner
# cannot flatten into a join) and the update goes by the rows' ctids (a TID scan), so a batch
# costs the same whatever the tables hold and whatever the planner's statistics say: a join
# on an unnest can be planned as a scan of the whole district per batch. A student with marks
# waiting (marks_waiting) gets none written here: the caller keeps these marks waiting too,
# behind the older ones.
_PUT_MARKS = """WITH input AS (
        SELECT * FROM unnest($2::text[], $3::date[], $4::text[], $5::text[], $6::text[], $7::bool[])
            AS m(student_key, day, period, school_id, category, excused)),
    known AS (
        SELECT k.student_key, s.ctid AS row_id, s.destroyed_at IS NULL AS live,
               EXISTS (SELECT 1 FROM marks_waiting w WHERE w.district_id = $1 AND w.student_key = k.student_key)
                   AS waiting
        FROM unnest($8::text[]) AS k(student_key)
        CROSS JOIN LATERAL (
            SELECT ctid, destroyed_at FROM students s
            WHERE s.district_id = $1 AND s.student_key = k.student_key LIMIT 1) s),
    written AS (
        INSERT INTO attendance (district_id, student_key, day, period, school_id, category, excused)
        SELECT $1, m.student_key, m.day, m.period, m.school_id, m.category, m.excused FROM input m
        WHERE m.student_key IN (SELECT student_key FROM known WHERE NOT waiting)
        ON CONFLICT (district_id, student_key, day, period) DO UPDATE SET school_id = EXCLUDED.school_id,
            category = EXCLUDED.category, excused = EXCLUDED.excused, updated_at = clock_timestamp()
        WHERE (attendance.school_id, attendance.category, attendance.excused)
              IS DISTINCT FROM (EXCLUDED.school_id, EXCLUDED.category, EXCLUDED.excused)),
    touched AS (
        UPDATE students SET updated_at = clock_timestamp()
        WHERE ctid = ANY(ARRAY(SELECT row_id FROM known WHERE NOT waiting)) AND district_id = $1),
    queued AS (
        INSERT INTO absence_reviews (district_id, student_key)
        SELECT $1, student_key FROM known WHERE NOT waiting AND student_key = ANY($9::text[])
        ORDER BY student_key COLLATE "C"
        ON CONFLICT (district_id, student_key) DO UPDATE SET queued_at = EXCLUDED.queued_at)
    SELECT student_key FROM known WHERE NOT waiting"""


async def put_marks(conn: Connection, district_id: str, marks: Sequence[Mark]) -> set[str]:
    """Upsert a batch of one district's attendance marks (the last mark of a student, day and
    period wins) for the students the district knows that have no marks waiting, and queue
    those with a daily mark for the absence reviewer (as `queue_review`, in key order), in one
    statement; returns those students. The rest are the caller's to `keep_waiting`."""
    last = list({(m.student_key, m.day, m.period): m for m in marks}.values())
    rows = await conn.fetch(
        _PUT_MARKS,
        district_id,
        *columns(last, "student_key", "day", "period", "school_id", "category", "excused"),
        sorted({m.student_key for m in marks}),
        list({m.student_key for m in marks if not m.period}),
    )
    return {r["student_key"] for r in rows}


@dataclass(frozen=True, slots=True)
class WaitingMark:
    """A mark kept until its student is known, with where it came from (for its dead letter)."""

    mark: Mark
    event_id: str
    topic: str
    partition: int
    offset: int
    consumer: str
    dead_letter_topic: str


async def keep_waiting(conn: Connection, district_id: str, waiting: Sequence[WaitingMark]) -> None:
    """Keep marks until their students are known (in order: a later mark of the same student,
    day and period replaces the one waiting). Inside enter_district."""
    last = list({(w.mark.student_key, w.mark.day, w.mark.period): w for w in waiting}.values())
    if not last:
        return
    marks = [w.mark for w in last]
    await conn.execute(
        """WITH listed AS (
               INSERT INTO marks_waiting_districts (district_id) VALUES ($1) ON CONFLICT (district_id)
               DO UPDATE SET waiting = true, version = marks_waiting_districts.version + 1)
           INSERT INTO marks_waiting (district_id, student_key, day, period, school_id, category, excused, event_id,
               topic, "partition", "offset", consumer, dead_letter_topic)
           SELECT $1, * FROM unnest($2::text[], $3::date[], $4::text[], $5::text[], $6::text[], $7::bool[],
                                    $8::text[], $9::text[], $10::int[], $11::bigint[], $12::text[], $13::text[])
           ON CONFLICT (district_id, student_key, day, period) DO UPDATE SET school_id = EXCLUDED.school_id,
               category = EXCLUDED.category, excused = EXCLUDED.excused, event_id = EXCLUDED.event_id,
               topic = EXCLUDED.topic, "partition" = EXCLUDED."partition", "offset" = EXCLUDED."offset",
               consumer = EXCLUDED.consumer, dead_letter_topic = EXCLUDED.dead_letter_topic""",
        district_id,
        *columns(marks, "student_key", "day", "period", "school_id", "category", "excused"),
        *columns(last, "event_id", "topic", "partition", "offset", "consumer", "dead_letter_topic"),
    )


async def districts_with_waiting_marks(conn: Connection | asyncpg.Pool) -> dict[str, int]:
    """The districts with marks waiting (as far as their listing says), each with the listing's version."""
    rows = await conn.fetch("SELECT district_id, version FROM marks_waiting_districts WHERE waiting")
    return {r["district_id"]: r["version"] for r in rows}


async def unlist_if_none_waiting(conn: Connection, district_id: str, version: int) -> bool:
    """Take the district off the task's list if no mark waits and no mark was kept since `version`
    was read (inside enter_district, after this transaction's own applying and expiring)."""
    status = await conn.execute(
        """UPDATE marks_waiting_districts SET waiting = false
           WHERE district_id = $1 AND version = $2
             AND NOT EXISTS (SELECT 1 FROM marks_waiting WHERE district_id = $1)""",
        district_id,
        version,
    )
    return status == "UPDATE 1"


async def apply_waiting_marks(conn: Connection, district_id: str) -> set[str]:
    """Write the waiting marks of students the district now knows into `attendance` (inside
    enter_district); returns the students whose daily marks were written."""
    # As in _PUT_MARKS, each student is looked up by a primary-key probe (LATERAL ... LIMIT 1) and
    # the rows to change are given as arrays (index scans), so a call costs the same whatever the
    # district holds: as a semi-join the planner could scan every student of the district per call.
    rows = await conn.fetch(
        """WITH known AS (
               SELECT k.student_key FROM (SELECT DISTINCT student_key FROM marks_waiting WHERE district_id = $1) k
               CROSS JOIN LATERAL (
                   SELECT 1 FROM students s WHERE s.district_id = $1 AND s.student_key = k.student_key LIMIT 1) s),
           ready AS (
               DELETE FROM marks_waiting w
               WHERE w.district_id = $1 AND w.student_key = ANY(ARRAY(SELECT student_key FROM known))
               RETURNING w.student_key, w.day, w.period, w.school_id, w.category, w.excused),
           written AS (
               INSERT INTO attendance (district_id, student_key, day, period, school_id, category, excused)
               SELECT $1, student_key, day, period, school_id, category, excused FROM ready
               ON CONFLICT (district_id, student_key, day, period) DO UPDATE SET school_id = EXCLUDED.school_id,
                   category = EXCLUDED.category, excused = EXCLUDED.excused, updated_at = clock_timestamp()),
           touched AS (
               UPDATE students SET updated_at = clock_timestamp()
               WHERE district_id = $1 AND student_key = ANY(ARRAY(SELECT DISTINCT student_key FROM ready)))
           SELECT DISTINCT student_key FROM ready WHERE period = ''""",
        district_id,
    )
    return {r["student_key"] for r in rows}


async def expire_waiting_marks(conn: Connection, district_id: str, before: datetime) -> list[asyncpg.Record]:
    """Remove (and return) the marks that have waited since before `before` (inside enter_district)."""
    return list(
        await conn.fetch(
            """DELETE FROM marks_waiting WHERE district_id = $1 AND waiting_since < $2
               RETURNING student_key, event_id, topic, "partition", "offset", consumer, dead_letter_topic""",
            district_id,
            before,
        )
    )


async def record_suspension(
    conn: Connection,
    district_id: str,
    student_key: str,
    start: date,
    end: date,
    in_school: bool,
    school_id: str,
) -> None:
    await conn.execute(
        """INSERT INTO suspensions (district_id, student_key, start_date, end_date, in_school, school_id)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (district_id, student_key, start_date) DO UPDATE SET end_date = EXCLUDED.end_date,
               in_school = EXCLUDED.in_school, school_id = EXCLUDED.school_id""",
        district_id,
        student_key,
        start,
        end,
        in_school,
        school_id,
    )
    await touch(conn, district_id, student_key)


async def set_directory_opt_out(conn: Connection, district_id: str, student_key: str, opted_out: bool) -> None:
    await ensure_student(conn, district_id, student_key)
    await conn.execute(
        """UPDATE students SET directory_opt_out = $3, updated_at = clock_timestamp()
           WHERE district_id = $1 AND student_key = $2""",
        district_id,
        student_key,
        opted_out,
    )


async def destroy_student(conn: Connection, district_id: str, student_key: str, reason: str) -> None:
    """Delete a shredded student's data in one district and keep a tombstone. The read log
    stays: it records disclosures (element names only), which audit must keep."""
    await ensure_student(conn, district_id, student_key)
    args = (district_id, student_key)
    for table in (
        "parent_statements",
        "amendments",
        "student_elements",
        "enrollments",
        "attendance",
        "suspensions",
        "chronic_absence",
        "marks_waiting",
    ):
        await conn.execute(f"DELETE FROM {table} WHERE district_id = $1 AND student_key = $2", *args)  # noqa: S608
    await conn.execute(
        """UPDATE students SET destroyed_at = COALESCE(destroyed_at, clock_timestamp()), destroyed_reason = $3,
               plain_elements = '{}'::jsonb, program_flags = NULL, local_id_hash = '', updated_at = clock_timestamp()
           WHERE district_id = $1 AND student_key = $2""",
        *args,
        reason,
    )
    await conn.execute("DELETE FROM transfer_deliveries WHERE district_id = $1 AND student_key = $2", *args)
    await conn.execute(
        "DELETE FROM class_enrollments WHERE district_id = $1 AND user_key = $2 AND role = 'student'", *args
    )


async def destroy_district_students(conn: Connection, district_id: str, reason: str) -> int:
    keys = [
        r["student_key"]
        for r in await conn.fetch("SELECT student_key FROM students WHERE district_id = $1", district_id)
    ]
    for key in keys:
        await destroy_student(conn, district_id, key, reason)
    return len(keys)


# --- reading ----------------------------------------------------------------------------


@dataclass(slots=True)
class StoredRecord:
    """One student's rows in one district, as stored (sealed values still sealed)."""

    district_id: str
    student_key: str
    updated_at: datetime
    destroyed_at: datetime | None
    registered: bool
    chronic_absence: bool
    directory_opt_out: bool
    absence: dict[str, object] | None
    plain_elements: dict[str, str]
    program_flags: bytes | None
    sealed: dict[str, bytes]
    enrollments: list[asyncpg.Record] = field(default_factory=list)
    attendance: list[asyncpg.Record] = field(default_factory=list)
    suspensions: list[asyncpg.Record] = field(default_factory=list)
    amendments: list[asyncpg.Record] = field(default_factory=list)
    statements: list[asyncpg.Record] = field(default_factory=list)
    transfers: list[asyncpg.Record] = field(default_factory=list)

    def school_ids(self, *, current_on: date | None = None) -> set[str]:
        """Schools of the student's enrollments; only those open on `current_on` if given."""
        return {
            e["school_id"]
            for e in self.enrollments
            if current_on is None
            or (e["entry_date"] <= current_on and (e["exit_date"] is None or e["exit_date"] >= current_on))
        }


async def load_record(conn: Connection, district_id: str, student_key: str) -> StoredRecord | None:
    row = await conn.fetchrow(
        "SELECT * FROM students WHERE district_id = $1 AND student_key = $2", district_id, student_key
    )
    if row is None:
        return None
    args = (district_id, student_key)
    absence = await conn.fetchrow(
        """SELECT chronic, days_enrolled, days_absent, absence_rate, as_of_date, school_year, calendar_known,
                  missing_calendars FROM chronic_absence WHERE district_id = $1 AND student_key = $2""",
        *args,
    )
    sealed = {
        r["element"]: bytes(r["sealed"])
        for r in await conn.fetch(
            "SELECT element, sealed FROM student_elements WHERE district_id = $1 AND student_key = $2", *args
        )
    }
    return StoredRecord(
        district_id=district_id,
        student_key=student_key,
        updated_at=row["updated_at"],
        destroyed_at=row["destroyed_at"],
        registered=row["registered"],
        chronic_absence=bool(absence is not None and absence["chronic"]),
        absence=dict(absence) if absence is not None else None,
        directory_opt_out=row["directory_opt_out"],
        plain_elements=json.loads(row["plain_elements"]),
        program_flags=bytes(row["program_flags"]) if row["program_flags"] is not None else None,
        sealed=sealed,
        enrollments=list(
            await conn.fetch(
                "SELECT * FROM enrollments WHERE district_id = $1 AND student_key = $2 ORDER BY entry_date, school_id",
                *args,
            )
        ),
        attendance=list(
            await conn.fetch(
                "SELECT * FROM attendance WHERE district_id = $1 AND student_key = $2 ORDER BY day, period", *args
            )
        ),
        suspensions=list(
            await conn.fetch(
                "SELECT * FROM suspensions WHERE district_id = $1 AND student_key = $2 ORDER BY start_date", *args
            )
        ),
        amendments=list(
            await conn.fetch(
                "SELECT * FROM amendments WHERE district_id = $1 AND student_key = $2 ORDER BY created_at", *args
            )
        ),
        statements=list(
            await conn.fetch(
                "SELECT * FROM parent_statements WHERE district_id = $1 AND student_key = $2 ORDER BY created_at",
                *args,
            )
        ),
        transfers=list(
            await conn.fetch(
                "SELECT * FROM transfer_deliveries WHERE district_id = $1 AND student_key = $2 ORDER BY delivered_at",
                *args,
            )
        ),
    )


async def load_roster(conn: Connection, district_id: str, student_keys: Sequence[str]) -> list[StoredRecord]:
    """Identity and enrollments of many students in three queries (a rostering page): the
    other parts of their records (attendance, amendments ...) are left empty."""
    keys = list(student_keys)
    rows = await conn.fetch(
        "SELECT * FROM students WHERE district_id = $1 AND student_key = ANY($2::text[]) AND destroyed_at IS NULL",
        district_id,
        keys,
    )
    sealed: dict[str, dict[str, bytes]] = {}
    for r in await conn.fetch(
        """SELECT student_key, element, sealed FROM student_elements
           WHERE district_id = $1 AND student_key = ANY($2::text[])""",
        district_id,
        keys,
    ):
        sealed.setdefault(r["student_key"], {})[r["element"]] = bytes(r["sealed"])
    enrollments: dict[str, list[asyncpg.Record]] = {}
    for r in await conn.fetch(
        """SELECT * FROM enrollments WHERE district_id = $1 AND student_key = ANY($2::text[])
           ORDER BY student_key, entry_date, school_id""",
        district_id,
        keys,
    ):
        enrollments.setdefault(r["student_key"], []).append(r)
    # Parent statements (99.21) travel with the elements they contest: with their amendments.
    statements: dict[str, list[asyncpg.Record]] = {}
    for r in await conn.fetch(
        "SELECT * FROM parent_statements WHERE district_id = $1 AND student_key = ANY($2::text[]) ORDER BY created_at",
        district_id,
        keys,
    ):
        statements.setdefault(r["student_key"], []).append(r)
    amendments: dict[str, list[asyncpg.Record]] = {}
    if statements:
        for r in await conn.fetch(
            "SELECT * FROM amendments WHERE district_id = $1 AND id = ANY($2::uuid[]) ORDER BY created_at",
            district_id,
            [s["amendment_id"] for rows in statements.values() for s in rows],
        ):
            amendments.setdefault(r["student_key"], []).append(r)
    by_key = {
        r["student_key"]: StoredRecord(
            district_id=district_id,
            student_key=r["student_key"],
            updated_at=r["updated_at"],
            destroyed_at=None,
            registered=r["registered"],
            chronic_absence=False,
            absence=None,
            directory_opt_out=r["directory_opt_out"],
            plain_elements=json.loads(r["plain_elements"]),
            program_flags=None,
            sealed=sealed.get(r["student_key"], {}),
            enrollments=enrollments.get(r["student_key"], []),
            statements=statements.get(r["student_key"], []),
            amendments=amendments.get(r["student_key"], []),
        )
        for r in rows
    }
    return [by_key[k] for k in keys if k in by_key]


@dataclass(frozen=True, slots=True)
class EnrollmentFilter:
    """Which enrollments a rostering read asks for, the same in every district it covers (None:
    no limit of that kind); the fields in the order `list_enrollments`'s query takes them."""

    school_ids: list[str] | None = None  # at one of these schools
    updated_after: datetime | None = None  # changed after this time
    student_key: str | None = None
    school_id: str | None = None
    entry_on_or_before: date | None = None
    limit: int | None = None


async def list_enrollments(conn: Connection, district_id: str, only: EnrollmentFilter) -> list[asyncpg.Record]:
    """Enrollments of a district for rostering, ordered by student, school and entry."""
    return await conn.fetch(
        """SELECT * FROM enrollments WHERE district_id = $1
             AND ($2::text[] IS NULL OR school_id = ANY($2::text[]))
             AND ($3::timestamptz IS NULL OR updated_at > $3)
             AND ($4::text IS NULL OR student_key = $4)
             AND ($5::text IS NULL OR school_id = $5)
             AND ($6::date IS NULL OR entry_date <= $6)
           ORDER BY student_key, school_id, entry_date LIMIT $7""",
        district_id,
        *astuple(only),
    )


async def list_student_keys(
    conn: Connection,
    district_id: str,
    *,
    school_ids: Iterable[str] | None = None,
    current_on: date | None = None,
    updated_after: datetime | None = None,
    student_key: str | None = None,
    class_ids: Sequence[str] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[asyncpg.Record]:
    """Students of a district (optionally only those enrolled at some schools, open on a
    date; and, with ``class_ids``, in one of those classes), ordered by key, with their last
    change time, (with schools or a date) the first such school and (with ``class_ids``) which
    of those classes they are in: what a consent decision for the student names."""
    # Each student's first school and classes by one grouped join, not a correlated subquery per
    # student (which PostgreSQL ran twice, for the column and the filter: 155 ms against 14 ms at
    # 10,000 students). Ordered by key, the joins stream and stop at a small page's LIMIT; a
    # custom plan per run keeps the optional filters from becoming a scan of the district.
    await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
    return await conn.fetch(
        """SELECT s.student_key, s.updated_at,
                  CASE WHEN $8::text[] IS NULL THEN NULL ELSE cls.class_ids END AS class_ids, sch.school_id
           FROM students s
           LEFT JOIN (SELECT e.student_key, min(e.school_id) AS school_id FROM enrollments e
                      WHERE e.district_id = $1 AND ($2::text[] IS NOT NULL OR $3::date IS NOT NULL)
                        AND ($2::text[] IS NULL OR e.school_id = ANY($2::text[]))
                        AND ($3::date IS NULL OR (e.entry_date <= $3 AND (e.exit_date IS NULL OR e.exit_date >= $3)))
                      GROUP BY e.student_key) sch ON sch.student_key = s.student_key
           LEFT JOIN (SELECT ce.user_key, array_agg(ce.class_id ORDER BY ce.class_id) AS class_ids
                      FROM class_enrollments ce
                      WHERE ce.district_id = $1 AND $8::text[] IS NOT NULL AND ce.role = 'student' AND NOT ce.deleted
                        AND ce.class_id = ANY($8::text[])
                      GROUP BY ce.user_key) cls ON cls.user_key = s.student_key
           WHERE s.district_id = $1 AND s.destroyed_at IS NULL
             AND ($4::timestamptz IS NULL OR s.updated_at > $4)
             AND ($5::text IS NULL OR s.student_key = $5)
             AND (($2::text[] IS NULL AND $3::date IS NULL) OR sch.school_id IS NOT NULL)
             AND ($8::text[] IS NULL OR cls.class_ids IS NOT NULL)
           ORDER BY s.student_key LIMIT $6 OFFSET $7""",
        district_id,
        list(school_ids) if school_ids is not None else None,
        current_on,
        updated_after,
        student_key,
        limit,
        offset,
        list(class_ids) if class_ids is not None else None,
    )


# --- amendments (FERPA 99.20) and statements (99.21) ------------------------------------


@dataclass(frozen=True, slots=True)
class AmendmentRequest:
    """A parent's request to amend one element (FERPA 99.20): the requested value and the reason sealed."""

    district_id: str
    student_key: str
    element: str
    requested_value: bytes | None
    request_reason: bytes
    requested_by: str


async def add_amendment(conn: Connection, request: AmendmentRequest) -> uuid.UUID:
    amendment_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO amendments (id, district_id, student_key, element, requested_value, request_reason, requested_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        amendment_id,
        *astuple(request),
    )
    await touch(conn, request.district_id, request.student_key)
    return amendment_id


async def list_amendments(conn: Connection, status: str | None) -> list[asyncpg.Record]:
    """The district's amendment requests (the transaction's district: row-level security), oldest first."""
    return list(
        await conn.fetch(
            """SELECT id, student_key, element, status, outcome_reason, created_at, decided_at FROM amendments
               WHERE ($1::text IS NULL OR status = $1) ORDER BY created_at""",
            status,
        )
    )


async def get_amendment(conn: Connection, amendment_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM amendments WHERE id = $1", amendment_id)


async def decide_amendment(
    conn: Connection, amendment_id: uuid.UUID, status: str, reason: str, decided_by: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """UPDATE amendments SET status = $2, outcome_reason = $3, decided_by = $4, decided_at = clock_timestamp()
           WHERE id = $1 AND status = 'pending' RETURNING *""",
        amendment_id,
        status,
        reason,
        decided_by,
    )


async def add_statement(
    conn: Connection, amendment_id: uuid.UUID, district_id: str, student_key: str, statement: bytes, filed_by: str
) -> uuid.UUID | None:
    statement_id = uuid.uuid4()
    inserted = await conn.fetchval(
        """INSERT INTO parent_statements (id, amendment_id, district_id, student_key, statement, filed_by)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (amendment_id) DO NOTHING RETURNING id""",
        statement_id,
        amendment_id,
        district_id,
        student_key,
        statement,
        filed_by,
    )
    if inserted is None:
        return None
    await touch(conn, district_id, student_key)
    return statement_id


# --- transfers --------------------------------------------------------------------------


async def add_transfer_delivery(
    conn: Connection,
    case_id: str,
    district_id: str,
    student_key: str,
    from_district_id: str,
    to_school_id: str,
    package: bytes,
    elements: Sequence[str],
) -> bool:
    """True if this case was delivered now, False if it had been delivered before."""
    inserted = await conn.fetchval(
        """INSERT INTO transfer_deliveries (case_id, district_id, student_key, from_district_id, to_school_id,
               package, elements)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (case_id) DO NOTHING RETURNING 1""",
        case_id,
        district_id,
        student_key,
        from_district_id,
        to_school_id,
        package,
        list(elements),
    )
    return inserted is not None


# --- read log ---------------------------------------------------------------------------


ReadLogRow = tuple[str, str, str, str, str, list[str], str, str, str]


async def log_reads(conn: Connection, rows: Sequence[ReadLogRow]) -> None:
    """Many read-log rows (district, student key, role, requester, channel, elements, decision,
    agreement, disclosure id) in one pipelined round trip: a vendor's page releases up to 1,000."""
    await conn.executemany(
        """INSERT INTO read_log (district_id, student_key, requester_role, requester, channel, elements,
               decision_id, agreement_id, disclosure_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        rows,
    )


# --- release copies (sealed under an agreement's key) -------------------------------------


async def add_release_copy(
    conn: Connection,
    *,
    agreement_id: str,
    district_id: str,
    channel: str,
    disclosure_ids: Sequence[str],
    payload: bytes,
) -> None:
    await conn.execute(
        """INSERT INTO agreement_releases (agreement_id, district_id, channel, disclosure_ids, students, payload)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        agreement_id,
        district_id,
        channel,
        list(disclosure_ids),
        len(disclosure_ids),
        payload,
    )


async def release_copies(conn: Connection, agreement_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT id, payload, students FROM agreement_releases WHERE agreement_id = $1 ORDER BY id", agreement_id
        )
    )


async def drop_release_copies(conn: Connection, agreement_id: str) -> None:
    await conn.execute("DELETE FROM agreement_releases WHERE agreement_id = $1", agreement_id)


# --- destruction of a student's data ---------------------------------------------------------


async def count_student_rows(conn: Connection, district_id: str, student_key: str) -> tuple[int, int]:
    """Rows holding the student's data in the district, and the sealed bytes among them."""
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM student_elements WHERE district_id = $1 AND student_key = $2)
                + (SELECT count(*) FROM enrollments WHERE district_id = $1 AND student_key = $2)
                + (SELECT count(*) FROM attendance WHERE district_id = $1 AND student_key = $2)
                + (SELECT count(*) FROM suspensions WHERE district_id = $1 AND student_key = $2)
                + (SELECT count(*) FROM amendments WHERE district_id = $1 AND student_key = $2)
                + (SELECT count(*) FROM parent_statements WHERE district_id = $1 AND student_key = $2)
                + (SELECT count(*) FROM transfer_deliveries WHERE district_id = $1 AND student_key = $2) AS items,
                  (SELECT coalesce(sum(length(sealed)), 0) FROM student_elements
                    WHERE district_id = $1 AND student_key = $2) AS size""",
        district_id,
        student_key,
    )
    assert row is not None
    return int(row["items"]), int(row["size"])


async def delete_group(conn: Connection, district_id: str, student_key: str, group: str) -> int:
    """Remove one group of a student's data (retention): attendance or discipline."""
    tables = {"attendance": ("attendance", "chronic_absence"), "discipline": ("suspensions",)}[group]
    removed = 0
    for table in tables:
        status = await conn.execute(
            f"DELETE FROM {table} WHERE district_id = $1 AND student_key = $2",  # noqa: S608 - fixed names
            district_id,
            student_key,
        )
        removed += int(status.split()[-1])
    return removed


@dataclass(frozen=True, slots=True)
class DestructionLog:
    """A row of `destructions`: what was destroyed, why, on whose order, and whether proven unreadable."""

    district_id: str
    student_key: str
    scope: str
    reason: str
    ordered_by: str
    items: int
    verified_unreadable: bool


async def log_destruction(conn: Connection, row: DestructionLog) -> None:
    await conn.execute(
        """INSERT INTO destructions (district_id, student_key, scope, reason, ordered_by, items, verified_unreadable)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        *astuple(row),
    )


async def retention_policy(conn: Connection, district_id: str) -> dict[str, int]:
    rows = await conn.fetch("SELECT element_group, days FROM retention_policies WHERE district_id = $1", district_id)
    return {r["element_group"]: r["days"] for r in rows}


async def set_retention_policy(conn: Connection, district_id: str, groups: Mapping[str, int], set_by: str) -> None:
    await conn.execute("DELETE FROM retention_policies WHERE district_id = $1", district_id)
    await conn.executemany(
        "INSERT INTO retention_policies (district_id, element_group, days, set_by) VALUES ($1, $2, $3, $4)",
        [(district_id, group, days, set_by) for group, days in groups.items()],
    )


async def districts_with_retention(conn: Connection) -> list[str]:
    return [r["district_id"] for r in await conn.fetch("SELECT DISTINCT district_id FROM retention_policies")]


async def exited_students(conn: Connection, district_id: str, exited_on_or_before: date) -> list[tuple[str, date]]:
    """Live students whose every enrollment in the district is closed, with their last exit."""
    rows = await conn.fetch(
        """SELECT s.student_key, max(e.exit_date) AS last_exit FROM students s
           JOIN enrollments e ON e.district_id = s.district_id AND e.student_key = s.student_key
           WHERE s.district_id = $1 AND s.destroyed_at IS NULL
           GROUP BY s.student_key
           HAVING bool_and(e.exit_date IS NOT NULL) AND max(e.exit_date) <= $2""",
        district_id,
        exited_on_or_before,
    )
    return [(r["student_key"], r["last_exit"]) for r in rows]


async def has_group_data(conn: Connection, district_id: str, student_key: str, group: str) -> bool:
    table = {"attendance": "attendance", "discipline": "suspensions"}[group]
    query = f"SELECT 1 FROM {table} WHERE district_id = $1 AND student_key = $2 LIMIT 1"  # noqa: S608 - fixed names
    return await _exists(conn, query, district_id, student_key)


# --- the chronic-absence worklist, names for the owning district's staff ------------------


async def chronic_worklist(
    conn: Connection, district_id: str, school_ids: Sequence[str] | None
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT c.student_key, c.days_enrolled, c.days_absent, c.absence_rate, c.as_of_date, c.crossed_at,
                      c.changed_at, c.school_year,
                      (SELECT e.school_id FROM enrollments e WHERE e.district_id = c.district_id
                         AND e.student_key = c.student_key ORDER BY e.exit_date IS NULL DESC, e.entry_date DESC
                         LIMIT 1) AS school_id
               FROM chronic_absence c JOIN students s USING (district_id, student_key)
               WHERE c.district_id = $1 AND c.chronic AND s.destroyed_at IS NULL
                 AND ($2::text[] IS NULL OR EXISTS (SELECT 1 FROM enrollments e WHERE e.district_id = c.district_id
                      AND e.student_key = c.student_key AND e.school_id = ANY($2::text[]) AND e.exit_date IS NULL))
               ORDER BY c.absence_rate DESC, c.student_key""",
            district_id,
            list(school_ids) if school_ids is not None else None,
        )
    )


async def sealed_names(conn: Connection, district_id: str, keys: Sequence[str]) -> dict[str, dict[str, bytes]]:
    return await sealed_elements(conn, district_id, keys, ("student.first_name", "student.last_name"))


async def existing_student_keys(conn: Connection, district_id: str, keys: Sequence[str]) -> set[str]:
    """Which of these students the district holds a record of (not destroyed)."""
    rows = await conn.fetch(
        "SELECT student_key FROM students WHERE district_id = $1 AND student_key = ANY($2::text[])"
        " AND destroyed_at IS NULL",
        district_id,
        list(keys),
    )
    return {r["student_key"] for r in rows}


async def sealed_elements(
    conn: Connection, district_id: str, keys: Sequence[str], elements: Sequence[str]
) -> dict[str, dict[str, bytes]]:
    """These sealed elements of these students (not destroyed), by student key."""
    rows = await conn.fetch(
        """SELECT e.student_key, e.element, e.sealed FROM student_elements e
           JOIN students s USING (district_id, student_key)
           WHERE e.district_id = $1 AND e.student_key = ANY($2::text[]) AND s.destroyed_at IS NULL
             AND e.element = ANY($3::text[])""",
        district_id,
        list(keys),
        list(elements),
    )
    out: dict[str, dict[str, bytes]] = {}
    for r in rows:
        out.setdefault(r["student_key"], {})[r["element"]] = bytes(r["sealed"])
    return out


# --- the security log -----------------------------------------------------------------------


async def log_refusal(pool: asyncpg.Pool, **values: Any) -> None:
    await pool.execute(
        """INSERT INTO refused_reads (requester_role, requester, organization, agreement_id, method, route,
               student_key, district_id, status, reason)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        values["requester_role"],
        values["requester"],
        values["organization"],
        values["agreement_id"],
        values["method"],
        values["route"],
        values["student_key"],
        values["district_id"],
        values["status"],
        values["reason"],
    )


async def refusals(
    pool: asyncpg.Pool,
    *,
    requester: str | None,
    student_key: str | None,
    since: datetime | None,
    after: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            """SELECT * FROM refused_reads WHERE ($1::text IS NULL OR requester = $1)
                 AND ($2::text IS NULL OR student_key = $2) AND ($3::timestamptz IS NULL OR at >= $3)
                 AND ($4::bigint IS NULL OR id > $4)
               ORDER BY id LIMIT $5""",
            requester,
            student_key,
            since,
            after,
            limit,
        )
    )


# --- calendars and days enrolled ----------------------------------------------------------------


async def upsert_calendar(
    conn: Connection,
    district_id: str,
    school_id: str,
    school_year: int,
    source: str,
    days: Sequence[date],
    terms: Sequence[Mapping[str, object]],
    days_off: Sequence[date],
    source_format: str,
    event_id: str,
) -> None:
    """A school year's calendar from one source; the latest event replaces the one before."""
    await conn.execute(
        """INSERT INTO calendars (district_id, school_id, school_year, source, instructional_days, terms, days_off,
               source_format, event_id)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9)
           ON CONFLICT (district_id, school_id, school_year, source) DO UPDATE SET
               instructional_days = EXCLUDED.instructional_days, terms = EXCLUDED.terms, days_off = EXCLUDED.days_off,
               source_format = EXCLUDED.source_format, event_id = EXCLUDED.event_id, updated_at = clock_timestamp()""",
        district_id,
        school_id,
        school_year,
        source,
        list(days),
        json.dumps(list(terms)),
        list(days_off),
        source_format,
        event_id,
    )


async def queue_review(conn: Connection, district_id: str, student_keys: Iterable[str]) -> None:
    """Ask the absence reviewer to count these students again (after this transaction commits).

    A student already queued is updated, not left be: the update locks the row until this
    transaction commits, so the reviewer (which skips locked rows) cannot take the student
    and count them without the change this transaction is making."""
    keys = sorted(set(student_keys))
    if keys:
        await conn.execute(
            """INSERT INTO absence_reviews (district_id, student_key) SELECT $1, k FROM unnest($2::text[]) AS k
               ON CONFLICT (district_id, student_key) DO UPDATE SET queued_at = EXCLUDED.queued_at""",
            district_id,
            keys,
        )


async def queue_school_review(conn: Connection, district_id: str, school_id: str, first: date, last: date) -> int:
    """Every student enrolled at the school at any time in [first, last]: their days enrolled changed."""
    status: str = await conn.execute(
        """INSERT INTO absence_reviews (district_id, student_key)
           SELECT DISTINCT district_id, student_key FROM enrollments
           WHERE district_id = $1 AND school_id = $2 AND entry_date <= $4 AND (exit_date IS NULL OR exit_date >= $3)
           ORDER BY student_key
           ON CONFLICT (district_id, student_key) DO UPDATE SET queued_at = EXCLUDED.queued_at""",
        district_id,
        school_id,
        first,
        last,
    )
    return int(status.rsplit(" ", 1)[-1])


async def queue_open_enrollments(conn: Connection, district_id: str, today: date) -> int:
    """Once a day per district, whichever process asks first: every student of the district still
    enrolled, since each school day adds to days enrolled (call inside `district_tx`). The day is
    claimed in `absence_sweeps` in the same statement, so a restarted process or a second
    instance asking again the same day queues nobody (its row lock makes a concurrent claim wait
    for this transaction, then find the day taken)."""
    status: str = await conn.execute(
        """WITH claimed AS (
               INSERT INTO absence_sweeps (district_id, swept_on) VALUES ($1, $2)
               ON CONFLICT (district_id) DO UPDATE SET swept_on = EXCLUDED.swept_on
               WHERE absence_sweeps.swept_on < EXCLUDED.swept_on
               RETURNING district_id)
           INSERT INTO absence_reviews (district_id, student_key)
           SELECT DISTINCT district_id, student_key FROM enrollments
           WHERE district_id = $1 AND exit_date IS NULL AND EXISTS (SELECT 1 FROM claimed)
           ON CONFLICT (district_id, student_key) DO NOTHING""",
        district_id,
        today,
    )
    return int(status.rsplit(" ", 1)[-1])


async def districts_with_students(conn: Connection | asyncpg.Pool) -> list[str]:
    return [r["district_id"] for r in await conn.fetch("SELECT DISTINCT district_id FROM student_index")]


async def districts_to_review(conn: Connection | asyncpg.Pool, limit: int = 20) -> list[str]:
    rows = await conn.fetch(
        "SELECT district_id FROM absence_reviews GROUP BY district_id ORDER BY min(queued_at) LIMIT $1", limit
    )
    return [r["district_id"] for r in rows]


async def take_reviews(conn: Connection, district_id: str, limit: int) -> list[str]:
    """Claim (and remove, with this transaction) up to `limit` students queued for review."""
    rows = await conn.fetch(
        """DELETE FROM absence_reviews WHERE (district_id, student_key) IN (
               SELECT district_id, student_key FROM absence_reviews WHERE district_id = $1
               ORDER BY queued_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING student_key""",
        district_id,
        limit,
    )
    return [r["student_key"] for r in rows]


@dataclass(slots=True)
class AttendanceFacts:
    """What days enrolled and absences are counted from, for a set of students of one district."""

    windows: dict[str, list[tuple[str, date, date | None]]] = field(default_factory=dict)  # student -> windows
    absences: dict[str, list[tuple[str, date]]] = field(default_factory=dict)  # student -> (school, day)
    calendars: dict[tuple[str, int], list[date]] = field(default_factory=dict)  # (school, year) -> days
    chronic: dict[str, bool] = field(default_factory=dict)  # student -> flag as stored
    live: set[str] = field(default_factory=set)  # students with a live record


async def attendance_facts(conn: Connection, district_id: str, student_keys: Sequence[str]) -> AttendanceFacts:
    """Four queries for the whole set: enrollments, daily absences, the calendars of the schools
    involved (a school calendar wins over roster terms) and the flags as they stand."""
    facts = AttendanceFacts()
    keys = list(student_keys)
    for r in await conn.fetch(
        "SELECT student_key FROM students WHERE district_id = $1 AND student_key = ANY($2) AND destroyed_at IS NULL",
        district_id,
        keys,
    ):
        facts.live.add(r["student_key"])
    schools: set[str] = set()
    for r in await conn.fetch(
        """SELECT student_key, school_id, entry_date, exit_date FROM enrollments
           WHERE district_id = $1 AND student_key = ANY($2)""",
        district_id,
        keys,
    ):
        facts.windows.setdefault(r["student_key"], []).append((r["school_id"], r["entry_date"], r["exit_date"]))
        schools.add(r["school_id"])
    for r in await conn.fetch(
        """SELECT student_key, school_id, day FROM attendance
           WHERE district_id = $1 AND student_key = ANY($2) AND period = '' AND category = 'absent'""",
        district_id,
        keys,
    ):
        facts.absences.setdefault(r["student_key"], []).append((r["school_id"], r["day"]))
    for r in await conn.fetch(
        """SELECT DISTINCT ON (school_id, school_year) school_id, school_year, instructional_days FROM calendars
           WHERE district_id = $1 AND school_id = ANY($2)
           ORDER BY school_id, school_year, (source = 'calendar') DESC""",
        district_id,
        sorted(schools),
    ):
        facts.calendars[(r["school_id"], r["school_year"])] = list(r["instructional_days"])
    for r in await conn.fetch(
        "SELECT student_key, chronic FROM chronic_absence WHERE district_id = $1 AND student_key = ANY($2)",
        district_id,
        keys,
    ):
        facts.chronic[r["student_key"]] = r["chronic"]
    return facts


async def save_standings(conn: Connection, district_id: str, rows: Sequence[tuple[object, ...]]) -> None:
    """(student, chronic, days enrolled, days absent, rate or None, as of, school year, calendar known,
    missing calendars) per student: the record's attendance standing, as the reviewer counted it.
    One statement for the whole review (the missing calendars travel as JSON arrays: a text[]
    per row cannot be unnested). A standing counted again unchanged is not rewritten: `changed_at`
    is when the standing last changed, not when it was last counted (a present mark, a
    re-published event or a second count the same day changes nothing), and an unchanged row
    costs no new row version."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO chronic_absence (district_id, student_key, chronic, days_enrolled, days_absent, absence_rate,
               as_of_date, school_year, calendar_known, missing_calendars)
           SELECT $1, r.student_key, r.chronic, r.days_enrolled, r.days_absent, r.absence_rate, r.as_of_date,
                  r.school_year, r.calendar_known, ARRAY(SELECT jsonb_array_elements_text(r.missing::jsonb))
           FROM unnest($2::text[], $3::bool[], $4::int[], $5::int[], $6::float8[], $7::date[], $8::int[],
                       $9::bool[], $10::text[])
               AS r(student_key, chronic, days_enrolled, days_absent, absence_rate, as_of_date, school_year,
                    calendar_known, missing)
           ON CONFLICT (district_id, student_key) DO UPDATE SET chronic = EXCLUDED.chronic,
               days_enrolled = EXCLUDED.days_enrolled, days_absent = EXCLUDED.days_absent,
               absence_rate = EXCLUDED.absence_rate, as_of_date = EXCLUDED.as_of_date,
               school_year = EXCLUDED.school_year, calendar_known = EXCLUDED.calendar_known,
               missing_calendars = EXCLUDED.missing_calendars, changed_at = clock_timestamp()
           WHERE (chronic_absence.chronic, chronic_absence.days_enrolled, chronic_absence.days_absent,
                  chronic_absence.absence_rate, chronic_absence.as_of_date, chronic_absence.school_year,
                  chronic_absence.calendar_known, chronic_absence.missing_calendars)
                 IS DISTINCT FROM (EXCLUDED.chronic, EXCLUDED.days_enrolled, EXCLUDED.days_absent,
                  EXCLUDED.absence_rate, EXCLUDED.as_of_date, EXCLUDED.school_year, EXCLUDED.calendar_known,
                  EXCLUDED.missing_calendars)""",
        district_id,
        *[[r[i] for r in rows] for i in range(8)],
        [json.dumps(r[8]) for r in rows],
    )


# --- rosters (roster.v1, issue 23): academic sessions, courses, classes, staff, class enrollments ---
# Staff and class enrollments are read and written only inside `district_tx` (RLS: one district).
# --- writes (the roster.v1 consumer) ------------------------------------------------------

_CHANGED = "updated_at = clock_timestamp()"


def _upsert(table: str, key: str, columns: Sequence[str]) -> str:
    """The roster upsert: (district_id, key, *columns) as $1.., changing a row (and its updated_at)
    only where a value differs, so a roster sent again writes nothing."""
    every = ("district_id", key, *columns)
    values = ", ".join(f"${i}" for i in range(1, len(every) + 1))
    changes = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    old = ", ".join(f"t.{c}" for c in columns)
    new = ", ".join(f"EXCLUDED.{c}" for c in columns)
    return f"""INSERT INTO {table} AS t ({", ".join(every)}) VALUES ({values})
               ON CONFLICT (district_id, {key}) DO UPDATE SET {changes}, {_CHANGED}
               WHERE ({old}) IS DISTINCT FROM ({new})"""  # noqa: S608


SESSION_COLUMNS = ("title", "session_type", "start_date", "end_date", "parent_id", "school_year", "deleted")
COURSE_COLUMNS = ("title", "course_code", "school_id", "grades", "subjects", "school_year_id", "deleted")
CLASS_COLUMNS = (
    "title",
    "class_code",
    "class_type",
    "course_id",
    "school_id",
    "term_ids",
    "periods",
    "grades",
    "subjects",
    "location",
    "deleted",
)
_UPSERT_SESSION = _upsert("academic_sessions", "session_id", SESSION_COLUMNS)
_UPSERT_COURSE = _upsert("courses", "course_id", COURSE_COLUMNS)
_UPSERT_CLASS = _upsert("classes", "class_id", CLASS_COLUMNS)
_UPSERT_STAFF = _upsert("staff", "staff_key", ("role", "school_ids", "deleted"))


async def upsert_session(
    conn: Connection,
    district_id: str,
    session_id: str,
    *,
    title: str,
    session_type: str,
    start: date,
    end: date,
    parent_id: str,
    school_year: int,
    deleted: bool,
) -> None:
    row = (title, session_type, start, end, parent_id, school_year, deleted)
    await conn.execute(_UPSERT_SESSION, district_id, session_id, *row)


async def upsert_course(conn: Connection, district_id: str, course_id: str, values: Mapping[str, object]) -> None:
    await conn.execute(_UPSERT_COURSE, district_id, course_id, *(values[c] for c in COURSE_COLUMNS))


async def upsert_class(conn: Connection, district_id: str, class_id: str, values: Mapping[str, object]) -> None:
    await conn.execute(_UPSERT_CLASS, district_id, class_id, *(values[c] for c in CLASS_COLUMNS))


async def upsert_staff(
    conn: Connection,
    district_id: str,
    staff_key: str,
    *,
    role: str,
    school_ids: Sequence[str],
    sealed: Mapping[str, bytes],
    deleted: bool,
) -> None:
    """A staff member as last sent; a deleted one keeps no elements."""
    await conn.execute(_UPSERT_STAFF, district_id, staff_key, role, list(school_ids), deleted)
    if deleted:
        await conn.execute(
            "DELETE FROM staff_elements WHERE district_id = $1 AND staff_key = $2", district_id, staff_key
        )
        return
    changed = await conn.fetchval(
        """WITH new AS (SELECT * FROM unnest($3::text[], $4::bytea[]) AS n(element, sealed)),
                up AS (INSERT INTO staff_elements (district_id, staff_key, element, sealed)
                       SELECT $1, $2, element, sealed FROM new
                       ON CONFLICT (district_id, staff_key, element) DO UPDATE SET sealed = EXCLUDED.sealed
                       RETURNING 1)
           SELECT count(*) FROM up""",
        district_id,
        staff_key,
        list(sealed),
        list(sealed.values()),
    )
    if changed:
        await conn.execute(
            f"UPDATE staff SET {_CHANGED} WHERE district_id = $1 AND staff_key = $2",  # noqa: S608
            district_id,
            staff_key,
        )


ClassEnrollmentRow = tuple[str, str, str, str, bool, date | None, date | None, bool]


async def upsert_class_enrollments(conn: Connection, district_id: str, rows: Sequence[ClassEnrollmentRow]) -> None:
    """A batch of (class, role, user key, school, primary, begin, end, deleted), in order (a later
    row for the same enrollment wins), pipelined in one round trip per batch."""
    await conn.executemany(
        f"""INSERT INTO class_enrollments AS t (district_id, class_id, role, user_key, school_id, is_primary,
                                              begin_date, end_date, deleted)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (district_id, class_id, role, user_key) DO UPDATE SET school_id = EXCLUDED.school_id,
               is_primary = EXCLUDED.is_primary, begin_date = COALESCE(EXCLUDED.begin_date, t.begin_date),
               end_date = EXCLUDED.end_date, deleted = EXCLUDED.deleted, {_CHANGED}
           WHERE (t.school_id, t.is_primary, t.begin_date, t.end_date, t.deleted)
                 IS DISTINCT FROM (EXCLUDED.school_id, EXCLUDED.is_primary,
                                   COALESCE(EXCLUDED.begin_date, t.begin_date), EXCLUDED.end_date,
                                   EXCLUDED.deleted)""",  # noqa: S608
        [(district_id, *row) for row in rows],
    )


# --- reads (the OneRoster API) ------------------------------------------------------------


async def sessions(conn: Connection, district_ids: Sequence[str]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM academic_sessions WHERE district_id = ANY($1::text[]) ORDER BY district_id, session_id",
            list(district_ids),
        )
    )


async def courses(conn: Connection, district_ids: Sequence[str]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM courses WHERE district_id = ANY($1::text[]) ORDER BY district_id, course_id",
            list(district_ids),
        )
    )


async def classes(conn: Connection, district_ids: Sequence[str]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM classes WHERE district_id = ANY($1::text[]) ORDER BY district_id, class_id",
            list(district_ids),
        )
    )


async def staff(conn: Connection, district_id: str, staff_keys: Sequence[str] | None = None) -> list[asyncpg.Record]:
    """Staff of the district (in a district transaction), with their sealed elements."""
    return list(
        await conn.fetch(
            """SELECT s.*, COALESCE((SELECT array_agg(e.element ORDER BY e.element) FROM staff_elements e
                                     WHERE e.district_id = s.district_id AND e.staff_key = s.staff_key), '{}')
                               AS elements,
                      COALESCE((SELECT array_agg(e.sealed ORDER BY e.element) FROM staff_elements e
                                WHERE e.district_id = s.district_id AND e.staff_key = s.staff_key), '{}') AS sealed
               FROM staff s WHERE s.district_id = $1 AND ($2::text[] IS NULL OR s.staff_key = ANY($2::text[]))
               ORDER BY s.staff_key""",
            district_id,
            list(staff_keys) if staff_keys is not None else None,
        )
    )


# Room for class_enrollments' hashed subqueries (a district's current students: about 5 MB at
# 50,000) and its sorts; PostgreSQL's 4 MB default spilled them. Per transaction, SET LOCAL.
ROSTER_WORK_MEM = "64MB"


async def class_enrollments(
    conn: Connection,
    district_id: str,
    *,
    school_ids: Sequence[str] | None,
    class_id: str | None = None,
    class_ids: Sequence[str] | None = None,
    user_key: str | None = None,
    role: str | None = None,
    current_students_on: date | None = None,
    hidden_students: Sequence[str] = (),
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[asyncpg.Record], int]:
    """Class enrollments of a district (in a district transaction), ordered by class, role and
    user, and how many there are in all. Students count only while enrolled at the school on
    ``current_students_on`` (a vendor reaches only current students), and never the
    ``hidden_students`` (those the vendor's decision releases nothing to: not even counted)."""
    # Hashed IN subqueries, not joins: PostgreSQL then walks the (class, role, user) index in page
    # order and stops at the page (a join sorted all 250,000 rows, on disk past work_mem, for each
    # page and again for the count). The hashes must fit work_mem, or PostgreSQL re-runs the
    # subquery per row (which timed out at 250,000 enrollments): SET LOCAL below gives them room.
    query = """{select} FROM class_enrollments ce
               WHERE ce.district_id = $1 AND NOT ce.deleted
                 AND ce.class_id IN (SELECT c.class_id FROM classes c WHERE c.district_id = $1 AND NOT c.deleted)
                 AND ($2::text[] IS NULL OR ce.school_id = ANY($2::text[]))
                 AND ($3::text IS NULL OR ce.class_id = $3)
                 AND ($4::text IS NULL OR ce.user_key = $4)
                 AND ($5::text IS NULL OR ce.role = $5)
                 AND ($6::date IS NULL OR ce.role <> 'student' OR (ce.user_key, ce.school_id) IN (
                        SELECT e.student_key, e.school_id FROM enrollments e JOIN students s
                          ON s.district_id = e.district_id AND s.student_key = e.student_key AND s.destroyed_at IS NULL
                        WHERE e.district_id = $1 AND e.entry_date <= $6 AND (e.exit_date IS NULL OR e.exit_date >= $6)))
                 AND NOT (ce.role = 'student' AND ce.user_key = ANY($7::text[]))
                 AND ($8::text[] IS NULL OR ce.class_id = ANY($8::text[]))"""
    args: list[object] = [
        district_id,
        list(school_ids) if school_ids is not None else None,
        class_id,
        user_key,
        role,
        current_students_on,
        list(hidden_students),
        list(class_ids) if class_ids is not None else None,
    ]
    # The optional filters ($x IS NULL OR ...) make PostgreSQL's generic plan (chosen after five
    # runs of a prepared statement) a nested loop over every row: 9 s a page at 25,000 rows,
    # against 60 ms planned for the actual values. The caller's transaction plans each run.
    await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
    await conn.execute(f"SET LOCAL work_mem = '{ROSTER_WORK_MEM}'")
    total = await conn.fetchval(query.format(select="SELECT count(*)"), *args)
    rows = await conn.fetch(
        query.format(select="SELECT ce.*") + " ORDER BY ce.class_id, ce.role, ce.user_key LIMIT $9 OFFSET $10",
        *args,
        limit,
        offset,
    )
    return list(rows), int(total or 0)


async def teachers_of_classes(conn: Connection, district_id: str, class_ids: Sequence[str]) -> set[str]:
    """Staff keys teaching any of the classes (in a district transaction)."""
    rows = await conn.fetch(
        """SELECT DISTINCT user_key FROM class_enrollments
           WHERE district_id = $1 AND role = 'teacher' AND NOT deleted AND class_id = ANY($2::text[])""",
        district_id,
        list(class_ids),
    )
    return {r["user_key"] for r in rows}


async def classes_of_students(
    conn: Connection, district_id: str, student_keys: Sequence[str], class_ids: Sequence[str]
) -> dict[str, list[str]]:
    """Which of the classes each student is in (in a district transaction)."""
    out: dict[str, list[str]] = {}
    for r in await conn.fetch(
        """SELECT user_key, class_id FROM class_enrollments
           WHERE district_id = $1 AND role = 'student' AND NOT deleted AND user_key = ANY($2::text[])
             AND class_id = ANY($3::text[]) ORDER BY user_key, class_id""",
        district_id,
        list(student_keys),
        list(class_ids),
    ):
        out.setdefault(r["user_key"], []).append(r["class_id"])
    return out


async def has_classes(conn: Connection, district_ids: Sequence[str]) -> bool:
    """Whether any of the districts sends class rosters (then enrollments are class enrollments)."""
    return await _exists(conn, "SELECT 1 FROM classes WHERE district_id = ANY($1::text[]) LIMIT 1", list(district_ids))


async def staff_keys(conn: Connection, district_id: str) -> list[asyncpg.Record]:
    """Staff keys, roles, schools and change times (no sealed values), in a district transaction."""
    return list(
        await conn.fetch(
            """SELECT staff_key, role, school_ids, deleted, updated_at FROM staff
               WHERE district_id = $1 ORDER BY staff_key""",
            district_id,
        )
    )


async def releases_by_day(conn: Connection, district_id: str, agreement_id: str) -> list[asyncpg.Record]:
    """What the district released under an agreement, per day: distinct students and staff, reads."""
    return list(
        await conn.fetch(
            """SELECT read_at::date AS day,
                      count(DISTINCT student_key) FILTER (WHERE student_key LIKE 'stu\\_%') AS students,
                      count(DISTINCT student_key) FILTER (WHERE student_key LIKE 'stf\\_%') AS staff,
                      count(*) AS disclosures, min(read_at) AS first, max(read_at) AS last
               FROM read_log WHERE district_id = $1 AND agreement_id = $2
               GROUP BY 1 ORDER BY 1""",
            district_id,
            agreement_id,
        )
    )


async def students_released(conn: Connection, district_id: str, agreement_id: str) -> int:
    return int(
        await conn.fetchval(
            """SELECT count(DISTINCT student_key) FROM read_log
               WHERE district_id = $1 AND agreement_id = $2 AND student_key LIKE 'stu\\_%'""",
            district_id,
            agreement_id,
        )
        or 0
    )


async def grade_levels_on(conn: Connection, district_id: str, keys: Sequence[str], on: date) -> dict[str, list[str]]:
    """The grade levels of these students' enrollments current on `on` (for FERPA eligibility)."""
    rows = await conn.fetch(
        """SELECT student_key, grade_level FROM enrollments
           WHERE district_id = $1 AND student_key = ANY($2::text[]) AND entry_date <= $3
             AND (exit_date IS NULL OR exit_date >= $3) AND grade_level IS NOT NULL""",
        district_id,
        list(keys),
        on,
    )
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["student_key"], []).append(r["grade_level"])
    return out
