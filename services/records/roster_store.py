"""SQL for rosters (roster.v1, issue 23): academic sessions, courses, classes, staff and class
enrollments. Kept beside `store.py` (same conventions: the caller's connection, staff and class
enrollments only inside `store.district_tx`, where RLS confines them to one district)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import asyncpg

from homeroom.storage import Connection

# --- writes (the roster.v1 consumer) ------------------------------------------------------

_CHANGED = "updated_at = clock_timestamp()"


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
    await conn.execute(
        f"""INSERT INTO academic_sessions AS t (district_id, session_id, title, session_type, start_date, end_date,
                                              parent_id, school_year, deleted)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (district_id, session_id) DO UPDATE SET title = EXCLUDED.title,
               session_type = EXCLUDED.session_type, start_date = EXCLUDED.start_date, end_date = EXCLUDED.end_date,
               parent_id = EXCLUDED.parent_id, school_year = EXCLUDED.school_year, deleted = EXCLUDED.deleted,
               {_CHANGED}
           WHERE (t.title, t.session_type, t.start_date, t.end_date, t.parent_id, t.school_year, t.deleted)
                 IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.session_type, EXCLUDED.start_date, EXCLUDED.end_date,
                                   EXCLUDED.parent_id, EXCLUDED.school_year, EXCLUDED.deleted)""",  # noqa: S608
        district_id,
        session_id,
        title,
        session_type,
        start,
        end,
        parent_id,
        school_year,
        deleted,
    )


async def upsert_course(conn: Connection, district_id: str, course_id: str, values: Mapping[str, object]) -> None:
    await conn.execute(
        f"""INSERT INTO courses AS t (district_id, course_id, title, course_code, school_id, grades, subjects,
                                    school_year_id, deleted)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (district_id, course_id) DO UPDATE SET title = EXCLUDED.title,
               course_code = EXCLUDED.course_code, school_id = EXCLUDED.school_id, grades = EXCLUDED.grades,
               subjects = EXCLUDED.subjects, school_year_id = EXCLUDED.school_year_id, deleted = EXCLUDED.deleted,
               {_CHANGED}
           WHERE (t.title, t.course_code, t.school_id, t.grades, t.subjects, t.school_year_id, t.deleted)
                 IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.course_code, EXCLUDED.school_id, EXCLUDED.grades,
                                   EXCLUDED.subjects, EXCLUDED.school_year_id, EXCLUDED.deleted)""",  # noqa: S608
        district_id,
        course_id,
        values["title"],
        values["course_code"],
        values["school_id"],
        values["grades"],
        values["subjects"],
        values["school_year_id"],
        values["deleted"],
    )


async def upsert_class(conn: Connection, district_id: str, class_id: str, values: Mapping[str, object]) -> None:
    await conn.execute(
        f"""INSERT INTO classes AS t (district_id, class_id, title, class_code, class_type, course_id, school_id,
                                    term_ids, periods, grades, subjects, location, deleted)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
           ON CONFLICT (district_id, class_id) DO UPDATE SET title = EXCLUDED.title,
               class_code = EXCLUDED.class_code, class_type = EXCLUDED.class_type, course_id = EXCLUDED.course_id,
               school_id = EXCLUDED.school_id, term_ids = EXCLUDED.term_ids, periods = EXCLUDED.periods,
               grades = EXCLUDED.grades, subjects = EXCLUDED.subjects, location = EXCLUDED.location,
               deleted = EXCLUDED.deleted, {_CHANGED}
           WHERE (t.title, t.class_code, t.class_type, t.course_id, t.school_id, t.term_ids, t.periods, t.grades,
                  t.subjects, t.location, t.deleted)
                 IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.class_code, EXCLUDED.class_type, EXCLUDED.course_id,
                                   EXCLUDED.school_id, EXCLUDED.term_ids, EXCLUDED.periods, EXCLUDED.grades,
                                   EXCLUDED.subjects, EXCLUDED.location, EXCLUDED.deleted)""",  # noqa: S608
        district_id,
        class_id,
        values["title"],
        values["class_code"],
        values["class_type"],
        values["course_id"],
        values["school_id"],
        values["term_ids"],
        values["periods"],
        values["grades"],
        values["subjects"],
        values["location"],
        values["deleted"],
    )


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
    await conn.execute(
        f"""INSERT INTO staff AS t (district_id, staff_key, role, school_ids, deleted) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (district_id, staff_key) DO UPDATE SET role = EXCLUDED.role, school_ids = EXCLUDED.school_ids,
               deleted = EXCLUDED.deleted, {_CHANGED}
           WHERE (t.role, t.school_ids, t.deleted) IS DISTINCT FROM (EXCLUDED.role, EXCLUDED.school_ids,
                                                                     EXCLUDED.deleted)""",  # noqa: S608
        district_id,
        staff_key,
        role,
        list(school_ids),
        deleted,
    )
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


async def class_enrollments(
    conn: Connection,
    district_id: str,
    *,
    school_ids: Sequence[str] | None,
    class_id: str | None = None,
    user_key: str | None = None,
    role: str | None = None,
    current_students_on: date | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[asyncpg.Record], int]:
    """Class enrollments of a district (in a district transaction), ordered by class, role and
    user, and how many there are in all. Students count only while enrolled at the school on
    ``current_students_on`` (a vendor reaches only current students)."""
    # Joins, not per-row subqueries: a correlated EXISTS per row, and an IN subquery whose hash
    # outgrew work_mem (then re-run per row), both timed out at 250,000 enrollments.
    query = """WITH live AS (SELECT c.class_id FROM classes c WHERE c.district_id = $1 AND NOT c.deleted),
                    cur AS MATERIALIZED (
                        SELECT DISTINCT e.student_key, e.school_id FROM enrollments e JOIN students s
                          ON s.district_id = e.district_id AND s.student_key = e.student_key AND s.destroyed_at IS NULL
                        WHERE e.district_id = $1 AND $6::date IS NOT NULL AND e.entry_date <= $6
                          AND (e.exit_date IS NULL OR e.exit_date >= $6))
               {select} FROM class_enrollments ce
               JOIN live ON live.class_id = ce.class_id
               LEFT JOIN cur ON cur.student_key = ce.user_key AND cur.school_id = ce.school_id
               WHERE ce.district_id = $1 AND NOT ce.deleted
                 AND ($2::text[] IS NULL OR ce.school_id = ANY($2::text[]))
                 AND ($3::text IS NULL OR ce.class_id = $3)
                 AND ($4::text IS NULL OR ce.user_key = $4)
                 AND ($5::text IS NULL OR ce.role = $5)
                 AND ($6::date IS NULL OR ce.role <> 'student' OR cur.student_key IS NOT NULL)"""
    args: list[object] = [
        district_id,
        list(school_ids) if school_ids is not None else None,
        class_id,
        user_key,
        role,
        current_students_on,
    ]
    total = await conn.fetchval(query.format(select="SELECT count(*)"), *args)
    rows = await conn.fetch(
        query.format(select="SELECT ce.*") + " ORDER BY ce.class_id, ce.role, ce.user_key LIMIT $7 OFFSET $8",
        *args,
        limit,
        offset,
    )
    return list(rows), int(total or 0)


async def has_classes(conn: Connection, district_ids: Sequence[str]) -> bool:
    """Whether any of the districts sends class rosters (then enrollments are class enrollments)."""
    return bool(
        await conn.fetchval("SELECT 1 FROM classes WHERE district_id = ANY($1::text[]) LIMIT 1", list(district_ids))
    )


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
