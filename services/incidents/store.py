"""SQL of the incidents service. Functions take a connection, so the caller decides the transaction."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from homeroom.storage import Connection
from services.incidents.incidents import Kind, Plan
from services.incidents.scope import StudentScope

INCIDENT_FIELDS = (
    "status",
    "discovered_at",
    "discovered_by",
    "recipient_org",
    "system",
    "agreement_ids",
    "districts",
    "exposure_start",
    "exposure_end",
    "disclosed_since",
    "description",
    "investigation",
    "contact",
    "parents_delay_reason",
    "parents_delay_ended_at",
    "latest_version",
    "closed_at",
)


async def _rows(conn: Connection | asyncpg.Pool, sql: str, *args: Any) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
    return rows


async def _insert(conn: Connection, table: str, values: Mapping[str, Any]) -> None:
    """One row of `table`, its columns named by `values`' keys (ours, never a caller's input)."""
    placeholders = ", ".join(f"${i + 1}" for i in range(len(values)))
    await conn.execute(
        f"INSERT INTO {table} ({', '.join(values)}) VALUES ({placeholders})",  # noqa: S608 (table and column names are ours)
        *values.values(),
    )


async def insert_incident(conn: Connection, values: Mapping[str, Any]) -> None:
    await _insert(conn, "incidents", values)


_PLAIN = "SELECT * FROM incidents WHERE incident_id = $1"
_LOCKED = _PLAIN + " FOR UPDATE"


async def get_incident(
    conn: Connection | asyncpg.Pool, incident_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(_LOCKED if lock else _PLAIN, incident_id)
    return row


async def update_incident(conn: Connection, incident_id: str, **values: Any) -> None:
    unknown = set(values) - set(INCIDENT_FIELDS)
    if unknown:
        raise ValueError(f"not incident fields: {sorted(unknown)}")
    sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(values))
    await conn.execute(f"UPDATE incidents SET {sets} WHERE incident_id = $1", incident_id, *values.values())  # noqa: S608


async def list_incidents(
    conn: Connection | asyncpg.Pool, *, district: str | None = None, agreement: str | None = None, limit: int = 200
) -> list[asyncpg.Record]:
    """All (compliance), a district's, or an agreement's incidents, newest first."""
    return await _rows(
        conn,
        """SELECT * FROM incidents
           WHERE ($1::text IS NULL OR $1 = ANY(districts)) AND ($2::text IS NULL OR $2 = ANY(agreement_ids))
           ORDER BY opened_at DESC LIMIT $3""",
        district,
        agreement,
        limit,
    )


async def add_history(
    conn: Connection, incident_id: str, at: datetime, actor: str, change: str, details: Mapping[str, Any] | None = None
) -> None:
    await conn.execute(
        "INSERT INTO incident_history (incident_id, at, actor, change, details) VALUES ($1, $2, $3, $4, $5::jsonb)",
        incident_id,
        at,
        actor,
        change,
        json.dumps(dict(details or {}), default=str),
    )


async def history(conn: Connection | asyncpg.Pool, incident_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT at, actor, change, details FROM incident_history WHERE incident_id = $1 ORDER BY id", incident_id
    )
    return [
        {"at": r["at"].isoformat(), "actor": r["actor"], "change": r["change"], "details": json.loads(r["details"])}
        for r in rows
    ]


# --- the contractor's notices and the clocks ---------------------------------------------------


async def record_contractor_notice(
    conn: Connection, incident_id: str, district: str, at: datetime, by: str, method: str
) -> bool:
    status = await conn.execute(
        """INSERT INTO contractor_notices (incident_id, district_id, received_at, recorded_by, method)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
        incident_id,
        district,
        at,
        by,
        method,
    )
    return status == "INSERT 0 1"


async def contractor_notices(conn: Connection | asyncpg.Pool, incident_id: str) -> dict[str, datetime]:
    rows = await conn.fetch(
        "SELECT district_id, received_at FROM contractor_notices WHERE incident_id = $1", incident_id
    )
    return {r["district_id"]: r["received_at"] for r in rows}


async def obligations(conn: Connection | asyncpg.Pool, incident_id: str) -> list[asyncpg.Record]:
    return await _rows(
        conn,
        """SELECT * FROM obligations WHERE incident_id = $1
           ORDER BY district_id,
                    array_position(ARRAY['contractor_to_agency', 'agency_to_cpo', 'agency_to_parents'], kind),
                    basis DESC""",
        incident_id,
    )


async def sync_plans(conn: Connection, incident_id: str, plans: Sequence[Plan], delayed: bool) -> None:
    """Insert new obligations; move the start and due time of open ones whose facts changed.
    A closed obligation is never reopened or moved."""
    for p in plans:
        state = "delayed" if delayed and p.kind is Kind.AGENCY_TO_PARENTS and p.basis == "law" else "open"
        await conn.execute(
            """INSERT INTO obligations (incident_id, kind, district_id, basis, citation, start_event, starts_at,
                   due_at, state)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (incident_id, kind, district_id, basis) DO UPDATE
               SET citation = EXCLUDED.citation, start_event = EXCLUDED.start_event, starts_at = EXCLUDED.starts_at,
                   due_at = EXCLUDED.due_at, state = EXCLUDED.state
               WHERE obligations.state IN ('open', 'delayed')""",
            incident_id,
            p.kind.value,
            p.district_id,
            p.basis,
            p.citation,
            p.start_event,
            p.starts_at,
            p.due_at,
            state,
        )


async def close_obligations(
    conn: Connection,
    incident_id: str,
    kind: Kind,
    districts: Sequence[str],
    *,
    at: datetime,
    by: str,
    act: str,
    state: str = "met",
) -> list[asyncpg.Record]:
    """Close the open obligations of `kind` in these districts (law's and district's); returns those closed."""
    return await _rows(
        conn,
        """UPDATE obligations SET state = $4, closed_at = $5, closed_by = $6, act = $7
           WHERE incident_id = $1 AND kind = $2 AND district_id = ANY($3::text[]) AND state IN ('open', 'delayed')
           RETURNING *""",
        incident_id,
        kind.value,
        list(districts),
        state,
        at,
        by,
        act,
    )


async def open_obligations(conn: Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    """Every obligation still running, of every incident (the clocks' metrics)."""
    return await _rows(
        conn,
        """SELECT o.* FROM obligations o JOIN incidents i USING (incident_id)
           WHERE o.state IN ('open', 'delayed') AND i.status <> 'closed'""",
    )


async def district_deadlines(conn: Connection | asyncpg.Pool, districts: Sequence[str]) -> dict[str, dict[Kind, int]]:
    rows = await conn.fetch(
        "SELECT district_id, hours FROM district_deadlines WHERE district_id = ANY($1::text[])", list(districts)
    )
    return {r["district_id"]: {Kind(k): int(v) for k, v in json.loads(r["hours"]).items()} for r in rows}


async def set_district_deadlines(
    conn: Connection, district: str, hours: Mapping[Kind, int], by: str, at: datetime
) -> None:
    await conn.execute(
        """INSERT INTO district_deadlines (district_id, hours, set_by, set_at) VALUES ($1, $2::jsonb, $3, $4)
           ON CONFLICT (district_id) DO UPDATE SET hours = EXCLUDED.hours, set_by = EXCLUDED.set_by,
               set_at = EXCLUDED.set_at""",
        district,
        json.dumps({k.value: v for k, v in hours.items()}),
        by,
        at,
    )


async def incidents_of_districts(conn: Connection, district: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT incident_id FROM incidents WHERE $1 = ANY(districts) AND status <> 'closed'", district
    )
    return [r["incident_id"] for r in rows]


# --- frozen scopes ----------------------------------------------------------------------------------


async def insert_version(conn: Connection, values: Mapping[str, Any]) -> None:
    await _insert(conn, "scope_versions", {k: json.dumps(v) if isinstance(v, dict) else v for k, v in values.items()})


async def insert_chunk(conn: Connection, incident_id: str, version: int, n: int, data: bytes) -> None:
    await conn.execute(
        "INSERT INTO scope_bundle_chunks (incident_id, version, n, data) VALUES ($1, $2, $3, $4)",
        incident_id,
        version,
        n,
        data,
    )


async def insert_students(conn: Connection, incident_id: str, version: int, students: Sequence[StudentScope]) -> None:
    """Every affected student of a version (COPY)."""
    await conn.copy_records_to_table(
        "scope_students",
        records=[
            (
                incident_id,
                version,
                s.district_id,
                s.student_key,
                s.elements,
                s.unreadable_elements,
                len(s.disclosures),
                s.first_shared,
                s.last_shared,
                s.destructions,
            )
            for s in students
        ],
        columns=[
            "incident_id",
            "version",
            "district_id",
            "student_key",
            "elements",
            "unreadable_elements",
            "disclosures",
            "first_shared",
            "last_shared",
            "destructions",
        ],
    )


async def versions(conn: Connection | asyncpg.Pool, incident_id: str) -> list[asyncpg.Record]:
    return await _rows(conn, "SELECT * FROM scope_versions WHERE incident_id = $1 ORDER BY version", incident_id)


async def version(conn: Connection | asyncpg.Pool, incident_id: str, number: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM scope_versions WHERE incident_id = $1 AND version = $2", incident_id, number
    )
    return row


async def bundle_chunks(pool: asyncpg.Pool, incident_id: str, number: int) -> AsyncIterator[bytes]:
    """The bundle's compressed chunks in order, one query each (memory holds one chunk)."""
    n = 0
    while True:
        data = await pool.fetchval(
            "SELECT data FROM scope_bundle_chunks WHERE incident_id = $1 AND version = $2 AND n = $3",
            incident_id,
            number,
            n,
        )
        if data is None:
            return
        yield bytes(data)
        n += 1


async def students(
    conn: Connection | asyncpg.Pool,
    incident_id: str,
    number: int,
    *,
    district: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    return await _rows(
        conn,
        """SELECT * FROM scope_students WHERE incident_id = $1 AND version = $2
             AND ($3::text IS NULL OR district_id = $3)
             AND ($4::text IS NULL OR (district_id, student_key) > ($4, $5))
           ORDER BY district_id, student_key LIMIT $6""",
        incident_id,
        number,
        district,
        after[0] if after else None,
        after[1] if after else "",
        limit,
    )


async def students_of(conn: Connection, incident_id: str, number: int, district: str) -> list[asyncpg.Record]:
    return await _rows(
        conn,
        """SELECT * FROM scope_students WHERE incident_id = $1 AND version = $2 AND district_id = $3
           ORDER BY student_key""",
        incident_id,
        number,
        district,
    )


# --- containment, reports, letters, publications ------------------------------------------------------


async def add_step(
    conn: Connection, incident_id: str, at: datetime, actor: str, action: str, agreement_id: str, details: Any
) -> None:
    await conn.execute(
        """INSERT INTO containment_steps (incident_id, at, actor, action, agreement_id, details)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb)""",
        incident_id,
        at,
        actor,
        action,
        agreement_id,
        json.dumps(details, default=str),
    )


async def steps(conn: Connection | asyncpg.Pool, incident_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT at, actor, action, agreement_id, details FROM containment_steps WHERE incident_id = $1 ORDER BY id",
        incident_id,
    )
    return [
        {
            "at": r["at"].isoformat(),
            "actor": r["actor"],
            "action": r["action"],
            "agreement_id": r["agreement_id"],
            "details": json.loads(r["details"]),
        }
        for r in rows
    ]


async def add_report(conn: Connection, values: Mapping[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO reports (report_id, incident_id, version, kind, district_id, created_at, created_by, document,
               machine, notice_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)
           ON CONFLICT (report_id) DO NOTHING""",
        values["report_id"],
        values["incident_id"],
        values["version"],
        values["kind"],
        values["district_id"],
        values["created_at"],
        values["created_by"],
        values["document"],
        json.dumps(values["machine"], default=str),
        values["notice_id"],
    )


async def reports(conn: Connection | asyncpg.Pool, incident_id: str) -> list[asyncpg.Record]:
    return await _rows(
        conn,
        """SELECT r.*, n.sent_at, n.address, n.last_error FROM reports r LEFT JOIN notices n USING (notice_id)
           WHERE r.incident_id = $1 ORDER BY r.created_at""",
        incident_id,
    )


async def report(conn: Connection | asyncpg.Pool, incident_id: str, report_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM reports WHERE incident_id = $1 AND report_id = $2", incident_id, report_id
    )
    return row


async def letter_digests(conn: Connection, incident_id: str, district: str) -> dict[str, str]:
    """What each family of the district was last told (student key → digest)."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (student_key) student_key, digest FROM letters
           WHERE incident_id = $1 AND district_id = $2 ORDER BY student_key, version DESC""",
        incident_id,
        district,
    )
    return {r["student_key"]: r["digest"] for r in rows}


async def insert_letters(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table(
        "letters",
        records=rows,
        columns=[
            "incident_id",
            "version",
            "district_id",
            "student_key",
            "notice_id",
            "language",
            "requested_language",
            "digest",
            "issued_at",
        ],
    )


async def letters(
    conn: Connection | asyncpg.Pool, incident_id: str, *, district: str | None, after: str | None, limit: int
) -> list[asyncpg.Record]:
    return await _rows(
        conn,
        """SELECT l.*, n.subject, n.body, n.sent_at, n.address, n.last_error
           FROM letters l JOIN notices n USING (notice_id)
           WHERE l.incident_id = $1 AND ($2::text IS NULL OR l.district_id = $2)
             AND ($3::text IS NULL OR l.notice_id > $3)
           ORDER BY l.notice_id LIMIT $4""",
        incident_id,
        district,
        after,
        limit,
    )


async def letters_about(conn: Connection | asyncpg.Pool, student_key: str) -> list[asyncpg.Record]:
    """Every breach letter about a student, newest first, with its incident's recipient and status."""
    return await _rows(
        conn,
        """SELECT l.incident_id, l.district_id, l.version, l.language, l.issued_at, n.subject, n.body, n.sent_at,
                  i.recipient_org, i.status
           FROM letters l JOIN notices n USING (notice_id) JOIN incidents i USING (incident_id)
           WHERE l.student_key = $1 ORDER BY l.issued_at DESC""",
        student_key,
    )


async def letter_counts(conn: Connection | asyncpg.Pool, incident_id: str) -> list[asyncpg.Record]:
    return await _rows(
        conn,
        """SELECT l.district_id, l.language, count(*) AS letters, count(n.sent_at) AS emailed
           FROM letters l JOIN notices n USING (notice_id) WHERE l.incident_id = $1
           GROUP BY l.district_id, l.language ORDER BY 1, 2""",
        incident_id,
    )


async def publish(conn: Connection, incident_id: str, district: str, text: str, at: datetime, by: str) -> None:
    await _insert(
        conn,
        "publications",
        {"incident_id": incident_id, "district_id": district, "text": text, "published_at": at, "published_by": by},
    )


async def publications(conn: Connection | asyncpg.Pool, *, incident_id: str | None = None) -> list[asyncpg.Record]:
    """Published breach notices, newest first (the latest text per incident and district)."""
    return await _rows(
        conn,
        """SELECT * FROM (
               SELECT DISTINCT ON (p.incident_id, p.district_id) p.*, i.recipient_org, i.discovered_at, i.contact
               FROM publications p JOIN incidents i USING (incident_id)
               WHERE $1::text IS NULL OR p.incident_id = $1
               ORDER BY p.incident_id, p.district_id, p.published_at DESC) latest
           ORDER BY published_at DESC LIMIT 100""",
        incident_id,
    )
