"""SQL of guardianship links, linking codes and redemption attempts (migrations/006_guardianship.sql).

Kept apart from `store.py` (agreements and choices) so each file holds one aggregate's SQL.
Every function takes the connection of the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from homeroom.storage import Connection
from services.consent.guardianship import LinkingCode, LinkStatus, Relationship
from services.consent.store import insert_row


def _code(row: Any) -> LinkingCode:
    return LinkingCode(
        code_id=row["code_id"],
        district_id=row["district_id"],
        student_key=row["student_key"],
        relationship=Relationship(row["relationship"]),
        issued_by=row["issued_by"],
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        eligibility_basis=row["eligibility_basis"],
        redeemed_at=row["redeemed_at"],
        redeemed_by=row["redeemed_by"],
        revoked_at=row["revoked_at"],
    )


async def insert_code(conn: Connection, code: LinkingCode, digest: bytes) -> None:
    await conn.execute(
        """INSERT INTO linking_codes (code_id, code_hash, district_id, student_key, relationship, issued_by,
                                      issued_at, expires_at, eligibility_basis)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        code.code_id,
        digest,
        code.district_id,
        code.student_key,
        code.relationship.value,
        code.issued_by,
        code.issued_at,
        code.expires_at,
        code.eligibility_basis,
    )


async def code_by_hash(conn: Connection, digest: bytes) -> tuple[LinkingCode, bytes] | None:
    """The code with this digest and the digest stored, locked until the transaction ends (two redemptions of one code
    at once: the second waits and then finds it used)."""
    row = await conn.fetchrow("SELECT * FROM linking_codes WHERE code_hash = $1 FOR UPDATE", digest)
    return (_code(row), bytes(row["code_hash"])) if row is not None else None


async def mark_redeemed(conn: Connection, code_id: str, subject: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE linking_codes SET redeemed_at = $2, redeemed_by = $3 WHERE code_id = $1", code_id, at, subject
    )


async def revoke_code(conn: Connection, district_id: str, code_id: str, by: str, at: datetime) -> LinkingCode | None:
    """Withdraw an unredeemed code of this district; None if there is no such code to withdraw."""
    row = await conn.fetchrow(
        """UPDATE linking_codes SET revoked_at = $3, revoked_by = $4
           WHERE code_id = $1 AND district_id = $2 AND revoked_at IS NULL AND redeemed_at IS NULL
           RETURNING *""",
        code_id,
        district_id,
        at,
        by,
    )
    return _code(row) if row is not None else None


async def codes_of_district(
    conn: Connection, district_id: str, student_key: str | None, limit: int
) -> list[LinkingCode]:
    rows = await conn.fetch(
        """SELECT * FROM linking_codes WHERE district_id = $1 AND ($2::text IS NULL OR student_key = $2)
           ORDER BY issued_at DESC, code_id LIMIT $3""",
        district_id,
        student_key,
        limit,
    )
    return [_code(r) for r in rows]


async def rights_with_student(conn: Connection, student_key: str) -> bool:
    """The student holds the rights (an active eligible-student link in any district: FERPA 99.5)."""
    return bool(
        await conn.fetchval(
            """SELECT 1 FROM guardianships WHERE student_key = $1
               AND relationship = 'eligible_student' AND status = 'active'""",
            student_key,
        )
    )


async def live_link(conn: Connection, subject: str, student_key: str, district_id: str) -> Any:
    return await conn.fetchrow(
        """SELECT * FROM guardianships WHERE subject = $1 AND student_key = $2 AND district_id = $3
           AND status IN ('active', 'proposed')""",
        subject,
        student_key,
        district_id,
    )


async def insert_link(
    conn: Connection,
    *,
    link_id: str,
    subject: str,
    student_key: str,
    district_id: str,
    relationship: Relationship,
    status: LinkStatus,
    code_id: str | None,
    issued_by: str,
    at: datetime,
    from_district_id: str | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO guardianships (link_id, subject, student_key, district_id, relationship, status, code_id,
                                      issued_by, linked_at, from_district_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        link_id,
        subject,
        student_key,
        district_id,
        relationship.value,
        status.value,
        code_id,
        issued_by,
        at,
        from_district_id,
    )


async def end_link(
    conn: Connection, link_id: str, district_id: str, *, status: LinkStatus, by: str, reason: str, at: datetime
) -> Any:
    """End a live link of this district (revoked or declined); the ended row, or None."""
    return await conn.fetchrow(
        """UPDATE guardianships SET status = $3, ended_at = $4, ended_by = $5, end_reason = $6
           WHERE link_id = $1 AND district_id = $2 AND status IN ('active', 'proposed')
           RETURNING *""",
        link_id,
        district_id,
        status.value,
        at,
        by,
        reason,
    )


async def accept_link(conn: Connection, link_id: str, district_id: str, by: str, at: datetime) -> Any:
    return await conn.fetchrow(
        """UPDATE guardianships SET status = 'active', issued_by = $3, linked_at = $4
           WHERE link_id = $1 AND district_id = $2 AND status = 'proposed' RETURNING *""",
        link_id,
        district_id,
        by,
        at,
    )


async def parent_links_of(conn: Connection, student_key: str) -> list[Any]:
    """The student's live parent links in every district, locked."""
    return list(
        await conn.fetch(
            """SELECT * FROM guardianships WHERE student_key = $1
               AND relationship = 'parent' AND status IN ('active', 'proposed') FOR UPDATE""",
            student_key,
        )
    )


async def active_links_of_student(conn: Connection, student_key: str, district_id: str) -> list[Any]:
    return list(
        await conn.fetch(
            "SELECT * FROM guardianships WHERE student_key = $1 AND district_id = $2 AND status = 'active'",
            student_key,
            district_id,
        )
    )


async def links_of_subject(conn: Connection, subject: str) -> list[Any]:
    return list(await conn.fetch("SELECT * FROM guardianships WHERE subject = $1 ORDER BY linked_at, link_id", subject))


async def links_of_district(conn: Connection, district_id: str, student_key: str | None, limit: int) -> list[Any]:
    return list(
        await conn.fetch(
            """SELECT * FROM guardianships WHERE district_id = $1 AND ($2::text IS NULL OR student_key = $2)
               ORDER BY linked_at DESC, link_id LIMIT $3""",
            district_id,
            student_key,
            limit,
        )
    )


async def record_attempt(
    conn: Connection,
    *,
    at: datetime,
    subject: str,
    client: str,
    outcome: str,
    code: LinkingCode | None = None,
) -> None:
    attempt: dict[str, Any] = {"attempted_at": at, "subject": subject, "client": client, "outcome": outcome}
    if code is not None:  # the code the attempt named, when it named one that exists
        attempt |= {"code_id": code.code_id, "district_id": code.district_id, "student_key": code.student_key}
    await insert_row(conn, "linking_attempts", attempt)


async def record_refused_issue(
    conn: Connection, *, at: datetime, actor: str, district_id: str, student_key: str, outcome: str
) -> None:
    """Staff asked for a code the rules refuse (a student their district does not hold, or of the
    wrong relationship for the student's eligibility): kept with the attempts."""
    await conn.execute(
        """INSERT INTO linking_attempts (attempted_at, subject, outcome, district_id, student_key)
           VALUES ($1, $2, $3, $4, $5)""",
        at,
        actor,
        outcome,
        district_id,
        student_key,
    )


async def attempts(
    conn: Connection, *, subject: str | None, outcomes: Sequence[str], since: datetime | None, limit: int
) -> list[Any]:
    return list(
        await conn.fetch(
            """SELECT * FROM linking_attempts
               WHERE ($1::text IS NULL OR subject = $1) AND (cardinality($2::text[]) = 0 OR outcome = ANY($2::text[]))
               AND ($3::timestamptz IS NULL OR attempted_at >= $3)
               ORDER BY attempt_id DESC LIMIT $4""",
            subject,
            list(outcomes),
            since,
            limit,
        )
    )


async def subject_links(conn: Connection, subject: str) -> tuple[bool, dict[tuple[str, str], str]]:
    """Whether the registry knows this person at all, and their link status per (student, district)
    (a live link over an ended one): the parent-inspection rule's facts outside a decision."""
    rows = await conn.fetch(
        "SELECT student_key, district_id, status FROM guardianships WHERE subject = $1 ORDER BY linked_at, link_id",
        subject,
    )
    statuses: dict[tuple[str, str], str] = {}
    for r in rows:
        pair = (r["student_key"], r["district_id"])
        if statuses.get(pair) not in ("active", "proposed") or r["status"] in ("active", "proposed"):
            statuses[pair] = r["status"]
    return bool(rows), statuses


async def record_move(
    conn: Connection, student_key: str, from_district: str, to_district: str, case_id: str, at: datetime
) -> None:
    await conn.execute(
        """INSERT INTO student_moves (student_key, district_id, to_district_id, case_id, moved_at)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
        student_key,
        from_district,
        to_district,
        case_id,
        at,
    )


async def moves_of(conn: Connection, student_keys: Sequence[str]) -> dict[tuple[str, str], set[str]]:
    """(student, sending district) -> the districts the student was transferred to from there."""
    rows = await conn.fetch(
        "SELECT student_key, district_id, to_district_id FROM student_moves WHERE student_key = ANY($1::text[])",
        list(student_keys),
    )
    out: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        out.setdefault((r["student_key"], r["district_id"]), set()).add(r["to_district_id"])
    return out
