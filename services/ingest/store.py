"""SQL of the ingest service: submissions and their problems, the organisation registry, the
students and enrollment windows known per district (pseudonymised), and the records taken.

Functions take a connection (inside the caller's transaction) or a pool for plain reads.
Nothing here holds a raw student id: students are stored by ``ref_hash`` (the keyed pseudonym
of the upload's student id, scoped to the district)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from homeroom.calendar import Term
from homeroom.storage import Connection
from services.ingest.parsed_records import CalendarRecord, Issue

STATUSES = ("received", "processing", "completed", "failed", "held")
FINAL_STATUSES = ("completed", "failed")


@dataclass(frozen=True, slots=True)
class NewSubmission:
    id: uuid.UUID
    district_id: str
    format: str
    file_name: str
    submitted_by: str
    bytes: int
    sha256: str
    upload_path: str
    resource: str | None = None
    idempotency_key: str | None = None
    options: Mapping[str, Any] | None = None


async def insert_submission(conn: Connection, s: NewSubmission) -> asyncpg.Record | None:
    """Insert a received submission; None when the district already used this idempotency key."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """INSERT INTO submissions (id, district_id, format, resource, file_name, options, status, submitted_by,
                idempotency_key, bytes, sha256, upload_path)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb, 'received', $7, $8, $9, $10, $11)
            ON CONFLICT (district_id, submitted_by, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING *""",
        s.id,
        s.district_id,
        s.format,
        s.resource,
        s.file_name,
        json.dumps(dict(s.options or {})),
        s.submitted_by,
        s.idempotency_key,
        s.bytes,
        s.sha256,
        s.upload_path,
    )
    return row


async def submission_by_key(
    conn: Connection | asyncpg.Pool, district_id: str, submitted_by: str, key: str
) -> asyncpg.Record | None:
    """The submission this person already sent to this district with this Idempotency-Key."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM submissions WHERE district_id = $1 AND submitted_by = $2 AND idempotency_key = $3",
        district_id,
        submitted_by,
        key,
    )
    return row


async def get_submission(conn: Connection | asyncpg.Pool, submission_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM submissions WHERE id = $1", submission_id)
    return row


async def list_submissions(
    conn: Connection | asyncpg.Pool, district_id: str, *, limit: int, offset: int, status: str | None = None
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT * FROM submissions
            WHERE district_id = $1 AND ($2::text IS NULL OR status = $2)
            ORDER BY created_at DESC, id LIMIT $3 OFFSET $4""",
        district_id,
        status,
        limit,
        offset,
    )
    return rows


async def unfinished_submissions(conn: Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM submissions WHERE status IN ('received', 'processing') ORDER BY created_at"
    )
    return rows


async def set_status(
    conn: Connection | asyncpg.Pool,
    submission_id: uuid.UUID,
    status: str,
    *,
    error: str | None = None,
    held_schools: Sequence[Mapping[str, Any]] | None = None,
    clear_upload: bool = False,
) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown submission status {status!r}")
    await conn.execute(
        """UPDATE submissions SET status = $2,
               error = COALESCE($3, error),
               held_schools = COALESCE($4::jsonb, held_schools),
               upload_path = CASE WHEN $5 THEN NULL ELSE upload_path END,
               started_at = CASE WHEN $2 = 'processing' AND started_at IS NULL THEN now() ELSE started_at END,
               finished_at = CASE WHEN $2 IN ('completed', 'failed') THEN now() ELSE finished_at END,
               progress = CASE WHEN $2 = 'completed' THEN 1 ELSE progress END,
               updated_at = now()
           WHERE id = $1""",
        submission_id,
        status,
        error,
        json.dumps(list(held_schools)) if held_schools is not None else None,
        clear_upload,
    )


async def confirm_held(conn: Connection, submission_id: uuid.UUID, by: str) -> bool:
    """Move a held submission back to received; False when it is not held (any more)."""
    done = await conn.fetchval(
        """UPDATE submissions SET status = 'received', confirmed_by = $2, confirmed_at = now(), updated_at = now()
           WHERE id = $1 AND status = 'held' RETURNING true""",
        submission_id,
        by,
    )
    return bool(done)


@dataclass(slots=True)
class ProgressDelta:
    records_read: int = 0
    accepted: int = 0
    rejected: int = 0
    warned: int = 0
    unchanged: int = 0
    events: int = 0
    problems_dropped: int = 0
    skipped: int = 0


async def add_progress(
    conn: Connection,
    submission_id: uuid.UUID,
    delta: ProgressDelta,
    *,
    bytes_read: int,
    progress: float,
    dropped: list[dict[str, object]] | None = None,
) -> None:
    """Add a chunk's counts; ``dropped`` (at the end) is the list of what was not collected."""
    await conn.execute(
        """UPDATE submissions SET records_read = records_read + $2, accepted = accepted + $3,
               rejected = rejected + $4, warned = warned + $5, unchanged = unchanged + $6, events = events + $7,
               problems_dropped = problems_dropped + $8,
               bytes_read = GREATEST(bytes_read, $9), progress = GREATEST(progress, $10), updated_at = now(),
               skipped = skipped + $11, not_collected = COALESCE($12::jsonb, not_collected)
           WHERE id = $1""",
        submission_id,
        delta.records_read,
        delta.accepted,
        delta.rejected,
        delta.warned,
        delta.unchanged,
        delta.events,
        delta.problems_dropped,
        bytes_read,
        min(1.0, max(0.0, progress)),
        delta.skipped,
        json.dumps(dropped) if dropped is not None else None,
    )


async def reset_counts(conn: Connection, submission_id: uuid.UUID) -> None:
    """Before (re)processing from the start: counts and problems begin again (events are idempotent)."""
    await conn.execute("DELETE FROM submission_problems WHERE submission_id = $1", submission_id)
    await conn.execute(
        """UPDATE submissions SET records_read = 0, accepted = 0, rejected = 0, warned = 0, unchanged = 0, events = 0,
               problems_dropped = 0, bytes_read = 0, progress = 0, skipped = 0, not_collected = NULL,
               updated_at = now() WHERE id = $1""",
        submission_id,
    )


# --- problems -----------------------------------------------------------------------------------


async def add_problems(conn: Connection, submission_id: uuid.UUID, first_seq: int, issues: Sequence[Issue]) -> None:
    if not issues:
        return
    await conn.copy_records_to_table(
        "submission_problems",
        records=[
            (submission_id, first_seq + i, p.severity, p.file, p.line, p.field, p.value_class, p.rule, p.message)
            for i, p in enumerate(issues)
        ],
        columns=["submission_id", "seq", "severity", "file", "line", "field", "value_class", "rule", "message"],
    )


async def list_problems(
    conn: Connection | asyncpg.Pool,
    submission_id: uuid.UUID,
    *,
    limit: int,
    after: int,
    severity: str | None = None,
    rule: str | None = None,
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT seq, severity, file, line, field, value_class, rule, message FROM submission_problems
           WHERE submission_id = $1 AND seq > $2 AND ($3::text IS NULL OR severity = $3)
                 AND ($4::text IS NULL OR rule = $4)
           ORDER BY seq LIMIT $5""",
        submission_id,
        after,
        severity,
        rule,
        limit,
    )
    return rows


async def problem_counts_by_rule(conn: Connection | asyncpg.Pool, submission_id: uuid.UUID) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT rule, count(*) AS n FROM submission_problems WHERE submission_id = $1 GROUP BY rule ORDER BY rule",
        submission_id,
    )
    return {r["rule"]: r["n"] for r in rows}


# --- organisation registry ------------------------------------------------------------------------


async def org_owners(conn: Connection | asyncpg.Pool, org_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """org id -> (owning district, org type) for the ids that are registered."""
    rows = await conn.fetch(
        "SELECT org_id, district_id, org_type FROM organizations WHERE org_id = ANY($1::text[])", list(set(org_ids))
    )
    return {r["org_id"]: (r["district_id"], r["org_type"]) for r in rows}


async def district_orgs(conn: Connection | asyncpg.Pool, district_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT org_id, org_type, name, registered_by, registered_at FROM organizations WHERE district_id = $1 "
        "ORDER BY org_type, org_id",
        district_id,
    )
    return rows


async def register_org(
    conn: Connection, org_id: str, district_id: str, org_type: str, name: str | None, by: str
) -> tuple[str, str]:
    """Claim an organisation for a district; returns the (district, type) that owns it afterwards."""
    row = await conn.fetchrow(
        """INSERT INTO organizations (org_id, district_id, org_type, name, registered_by) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (org_id) DO UPDATE SET name = COALESCE(EXCLUDED.name, organizations.name)
               WHERE organizations.district_id = EXCLUDED.district_id
           RETURNING district_id, org_type""",
        org_id,
        district_id,
        org_type,
        name,
        by,
    )
    if row is None:  # owned by another district: the update did not apply
        owner = await conn.fetchrow("SELECT district_id, org_type FROM organizations WHERE org_id = $1", org_id)
        assert owner is not None
        return owner["district_id"], owner["org_type"]
    return row["district_id"], row["org_type"]


# --- students and enrollment windows ------------------------------------------------------------


async def student_keys(conn: Connection, district_id: str, ref_hashes: Iterable[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT ref_hash, student_key FROM students WHERE district_id = $1 AND ref_hash = ANY($2::text[])",
        district_id,
        list(ref_hashes),
    )
    return {r["ref_hash"]: r["student_key"] for r in rows}


async def upsert_students(conn: Connection, district_id: str, pairs: Mapping[str, str]) -> None:
    if not pairs:
        return
    await conn.execute(
        """INSERT INTO students (district_id, ref_hash, student_key)
           SELECT $1, h, k FROM unnest($2::text[], $3::text[]) AS t(h, k)
           ON CONFLICT (district_id, ref_hash) DO UPDATE SET student_key = EXCLUDED.student_key, updated_at = now()
               WHERE students.student_key <> EXCLUDED.student_key""",
        district_id,
        list(pairs.keys()),
        list(pairs.values()),
    )


async def enrollment_windows(
    conn: Connection, district_id: str, ref_hashes: Iterable[str]
) -> list[tuple[str, str, date | None, date | None]]:
    rows = await conn.fetch(
        """SELECT ref_hash, school_id, entry_date, exit_date FROM enrollment_windows
           WHERE district_id = $1 AND ref_hash = ANY($2::text[])""",
        district_id,
        list(ref_hashes),
    )
    return [(r["ref_hash"], r["school_id"], r["entry_date"], r["exit_date"]) for r in rows]


async def add_windows(
    conn: Connection, district_id: str, windows: Sequence[tuple[str, str, date | None, date | None]]
) -> None:
    """Record enrollment windows; one already on record (same student, school and dates) is skipped."""
    if not windows:
        return
    await conn.execute(
        """INSERT INTO enrollment_windows (district_id, ref_hash, school_id, entry_date, exit_date)
           SELECT DISTINCT $1, t.h, t.s, t.e, t.x FROM unnest($2::text[], $3::text[], $4::date[], $5::date[])
               AS t(h, s, e, x)
           WHERE NOT EXISTS (SELECT 1 FROM enrollment_windows w WHERE w.district_id = $1 AND w.ref_hash = t.h
                             AND w.school_id = t.s AND w.entry_date IS NOT DISTINCT FROM t.e
                             AND w.exit_date IS NOT DISTINCT FROM t.x)""",
        district_id,
        [w[0] for w in windows],
        [w[1] for w in windows],
        [w[2] for w in windows],
        [w[3] for w in windows],
    )


async def close_windows(conn: Connection, district_id: str, closes: Sequence[tuple[str, str, date]]) -> None:
    """Close the open window of each (student, school) at the exit date (or record a closed one)."""
    for ref_hash, school_id, exit_date in closes:
        closed = await conn.fetchval(
            """UPDATE enrollment_windows SET exit_date = $4
               WHERE id = (SELECT id FROM enrollment_windows WHERE district_id = $1 AND ref_hash = $2
                           AND school_id = $3 AND exit_date IS NULL AND (entry_date IS NULL OR entry_date <= $4)
                           ORDER BY entry_date NULLS FIRST LIMIT 1)
               RETURNING true""",
            district_id,
            ref_hash,
            school_id,
            exit_date,
        )
        if not closed:
            await add_windows(conn, district_id, [(ref_hash, school_id, None, exit_date)])


async def enrolled_now(conn: Connection | asyncpg.Pool, district_id: str) -> dict[str, set[str]]:
    """Per school, the students (ref hashes) with an open enrollment window."""
    rows = await conn.fetch(
        "SELECT school_id, ref_hash FROM enrollment_windows WHERE district_id = $1 AND exit_date IS NULL",
        district_id,
    )
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r["school_id"], set()).add(r["ref_hash"])
    return out


# --- records already taken ------------------------------------------------------------------------


async def taken_records(conn: Connection, district_id: str, record_hashes: Iterable[str]) -> dict[str, str]:
    rows = await conn.fetch(
        """SELECT record_hash, content_hash FROM ingested_records
           WHERE district_id = $1 AND record_hash = ANY($2::text[])""",
        district_id,
        list(record_hashes),
    )
    return {r["record_hash"]: r["content_hash"] for r in rows}


async def mark_taken(conn: Connection, district_id: str, submission_id: uuid.UUID, taken: Mapping[str, str]) -> None:
    if not taken:
        return
    await conn.execute(
        """INSERT INTO ingested_records (district_id, record_hash, content_hash, submission_id)
           SELECT $1, h, c, $4 FROM unnest($2::text[], $3::text[]) AS t(h, c)
           ON CONFLICT (district_id, record_hash) DO UPDATE
               SET content_hash = EXCLUDED.content_hash, submission_id = EXCLUDED.submission_id""",
        district_id,
        list(taken.keys()),
        list(taken.values()),
        submission_id,
    )


# --- calendars ------------------------------------------------------------------------------------

CalendarRow = tuple[Term | None, date | None, bool | None]  # a term, or a dated entry (day, instructional)


def part_rows(parts: Sequence[CalendarRecord]) -> list[CalendarRow]:
    rows: list[CalendarRow] = []
    for p in parts:
        rows.extend((t, None, None) for t in p.sessions)
        rows.extend((None, d, i) for d, i in p.days)
    return rows


async def add_calendar_parts(conn: Connection, district_id: str, parts: Sequence[CalendarRecord]) -> None:
    """Keep each term and dated entry of a school year's calendar (the latest upload of a part wins)."""
    rows: list[tuple[object, ...]] = []
    for p in parts:
        base = (district_id, p.school_id, p.school_year, p.calendar_source.value)
        for t in p.sessions:
            rows.append((*base, f"term:{t.name}", t.name, t.begin, t.end, t.declared_days, None, None))
        for d, instructional in p.days:
            rows.append((*base, f"day:{d.isoformat()}", None, None, None, None, d, instructional))
    if not rows:
        return
    await conn.executemany(
        """INSERT INTO calendar_parts (district_id, school_id, school_year, source, part, term_name, begin_date,
               end_date, declared_days, day, instructional)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
           ON CONFLICT (district_id, school_id, school_year, source, part) DO UPDATE SET
               term_name = EXCLUDED.term_name, begin_date = EXCLUDED.begin_date, end_date = EXCLUDED.end_date,
               declared_days = EXCLUDED.declared_days, day = EXCLUDED.day, instructional = EXCLUDED.instructional""",
        rows,
    )


async def calendar_parts(
    conn: Connection, district_id: str, school_id: str, school_year: int, source: str
) -> list[CalendarRow]:
    rows = await conn.fetch(
        """SELECT term_name, begin_date, end_date, declared_days, day, instructional FROM calendar_parts
           WHERE district_id = $1 AND school_id = $2 AND school_year = $3 AND source = $4 ORDER BY part""",
        district_id,
        school_id,
        school_year,
        source,
    )
    out: list[CalendarRow] = []
    for r in rows:
        if r["term_name"] is not None:
            out.append((Term(r["term_name"], r["begin_date"], r["end_date"], r["declared_days"]), None, None))
        else:
            out.append((None, r["day"], r["instructional"]))
    return out
