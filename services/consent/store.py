"""SQL of the consent service (tables in migrations/001_registry.sql). No rules here.

Every function takes the connection of the caller's transaction, so the state change
and its outbox event commit together.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import asyncpg

from homeroom.storage import Connection
from services.consent.agreements import Agreement, AgreementStatus, current_status


def _document(agreement: Agreement) -> str:
    return agreement.model_dump_json()


def _agreement(raw: str | dict[str, Any]) -> Agreement:
    if isinstance(raw, str):
        return Agreement.model_validate_json(raw)
    return Agreement.model_validate(raw)


# ------------------------------------------------------------------ agreements


@dataclass(frozen=True, slots=True)
class Choice:
    """A parent's choice as recorded: for which student in which district, by whom, how and when."""

    student_key: str
    district_id: str
    recorded_by: str
    method: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Head:
    agreement_id: str
    status: str
    latest_version: int
    districts: list[str]
    source_digest: str | None


async def lock_agreement(conn: Connection, agreement_id: str) -> Head | None:
    """The agreement's head row, locked until the transaction ends; None if unknown."""
    row = await conn.fetchrow(
        "SELECT agreement_id, status, latest_version, districts, source_digest FROM agreements"
        " WHERE agreement_id = $1 FOR UPDATE",
        agreement_id,
    )
    if row is None:
        return None
    return Head(row["agreement_id"], row["status"], row["latest_version"], list(row["districts"]), row["source_digest"])


async def history(conn: Connection, agreement_id: str) -> list[Agreement]:
    rows = await conn.fetch(
        "SELECT document FROM agreement_versions WHERE agreement_id = $1 ORDER BY version", agreement_id
    )
    return [_agreement(r["document"]) for r in rows]


async def histories(conn: Connection, agreement_ids: Iterable[str]) -> dict[str, list[Agreement]]:
    ids = sorted(set(agreement_ids))
    out: dict[str, list[Agreement]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = await conn.fetch(
        "SELECT agreement_id, document FROM agreement_versions WHERE agreement_id = ANY($1::text[])"
        " ORDER BY agreement_id, version",
        ids,
    )
    for r in rows:
        out[r["agreement_id"]].append(_agreement(r["document"]))
    return out


async def _refresh_head(conn: Connection, agreement_id: str, digest: str | None = None) -> None:
    versions = await history(conn, agreement_id)
    latest = versions[-1]
    districts = sorted({d for v in versions for d in v.terms.districts})
    await conn.execute(
        """UPDATE agreements SET status = $2, latest_version = $3, districts = $4, organization = $5, category = $6,
               source_digest = COALESCE($7, source_digest), updated_at = now()
           WHERE agreement_id = $1""",
        agreement_id,
        current_status(versions).value,
        latest.version,
        districts,
        latest.organization,
        latest.category.value,
        digest,
    )


async def insert_agreement(conn: Connection, agreement: Agreement, *, digest: str | None = None) -> None:
    await conn.execute(
        """INSERT INTO agreements (agreement_id, organization, category, status, latest_version, districts, source,
               source_digest)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        agreement.id,
        agreement.organization,
        agreement.category.value,
        agreement.status.value,
        agreement.version,
        sorted(agreement.terms.districts),
        agreement.source,
        digest,
    )
    await insert_version(conn, agreement)


async def insert_version(conn: Connection, agreement: Agreement, *, digest: str | None = None) -> None:
    await conn.execute(
        """INSERT INTO agreement_versions (agreement_id, version, status, document, recorded_by, recorded_at)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6)""",
        agreement.id,
        agreement.version,
        agreement.status.value,
        _document(agreement),
        agreement.recorded_by,
        agreement.recorded_at,
    )
    await _refresh_head(conn, agreement.id, digest)


async def replace_version(conn: Connection, agreement: Agreement, *, digest: str | None = None) -> None:
    """Overwrite one version: a draft's terms while it is a proposal, or a version's status."""
    await conn.execute(
        "UPDATE agreement_versions SET status = $3, document = $4::jsonb WHERE agreement_id = $1 AND version = $2",
        agreement.id,
        agreement.version,
        agreement.status.value,
        _document(agreement),
    )
    await _refresh_head(conn, agreement.id, digest)


async def add_history(
    conn: Connection, agreement_id: str, version: int, change: str, actor: str, detail: dict[str, Any] | None = None
) -> None:
    await conn.execute(
        "INSERT INTO agreement_history (agreement_id, version, change, actor, detail)"
        " VALUES ($1, $2, $3, $4, $5::jsonb)",
        agreement_id,
        version,
        change,
        actor,
        json.dumps(detail or {}),
    )


async def change_log(conn: Connection, agreement_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT version, change, actor, detail, at FROM agreement_history WHERE agreement_id = $1 ORDER BY id",
        agreement_id,
    )
    return [
        {
            "version": r["version"],
            "change": r["change"],
            "actor": r["actor"],
            "detail": json.loads(r["detail"]),
            "at": r["at"].isoformat(),
        }
        for r in rows
    ]


async def list_agreement_ids(
    conn: Connection, *, district: str | None = None, status: str | None = None, limit: int = 500, offset: int = 0
) -> list[str]:
    rows = await conn.fetch(
        """SELECT agreement_id FROM agreements
           WHERE ($1::text IS NULL OR $1 = ANY(districts)) AND ($2::text IS NULL OR status = $2)
           ORDER BY organization, agreement_id LIMIT $3 OFFSET $4""",
        district,
        status,
        limit,
        offset,
    )
    return [r["agreement_id"] for r in rows]


async def ids_with_status(conn: Connection, statuses: Sequence[AgreementStatus]) -> list[str]:
    rows = await conn.fetch(
        "SELECT agreement_id FROM agreements WHERE status = ANY($1::text[]) ORDER BY agreement_id",
        [s.value for s in statuses],
    )
    return [r["agreement_id"] for r in rows]


# ------------------------------------------------------------------------ ends


@dataclass(frozen=True, slots=True)
class EndRecord:
    agreement_id: str
    version: int
    reason: str
    disposition: str
    ended_on: date
    ended_by: str
    ended_at: datetime
    districts: list[str]
    keys_destroyed: int | None
    keys_destroyed_at: datetime | None
    copies_destroyed: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "reason": self.reason,
            "disposition": self.disposition,
            "ended_on": self.ended_on.isoformat(),
            "ended_by": self.ended_by,
            "ended_at": self.ended_at.isoformat(),
            "districts": self.districts,
            "keys_destroyed": self.keys_destroyed,
            "keys_destroyed_at": self.keys_destroyed_at.isoformat() if self.keys_destroyed_at else None,
            "copies_destroyed": self.copies_destroyed,
        }


def _end(row: asyncpg.Record) -> EndRecord:
    return EndRecord(
        row["agreement_id"],
        row["version"],
        row["reason"],
        row["disposition"],
        row["ended_on"],
        row["ended_by"],
        row["ended_at"],
        list(row["districts"]),
        row["keys_destroyed"],
        row["keys_destroyed_at"],
        json.loads(row["copies_destroyed"]) if isinstance(row["copies_destroyed"], str) else row["copies_destroyed"],
    )


async def insert_end(
    conn: Connection,
    *,
    agreement_id: str,
    version: int,
    reason: str,
    disposition: str,
    ended_on: date,
    ended_by: str,
    districts: Sequence[str],
) -> None:
    end = {
        "agreement_id": agreement_id,
        "version": version,
        "reason": reason,
        "disposition": disposition,
        "ended_on": ended_on,
        "ended_by": ended_by,
        "districts": list(districts),
    }
    await insert_row(conn, "agreement_ends", end)


async def insert_row(conn: Connection, table: str, row: Mapping[str, Any]) -> None:
    """INSERT one row of these columns' values into `table`."""
    values = ", ".join(f"${n}" for n in range(1, len(row) + 1))
    await conn.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({values})", *row.values())  # noqa: S608 (names from this package)


async def get_end(conn: Connection, agreement_id: str) -> EndRecord | None:
    row = await conn.fetchrow("SELECT * FROM agreement_ends WHERE agreement_id = $1", agreement_id)
    return _end(row) if row is not None else None


async def ends(conn: Connection, agreement_ids: Iterable[str]) -> dict[str, EndRecord]:
    rows = await conn.fetch("SELECT * FROM agreement_ends WHERE agreement_id = ANY($1::text[])", list(agreement_ids))
    return {r["agreement_id"]: _end(r) for r in rows}


async def pending_destructions(conn: Connection) -> list[str]:
    rows = await conn.fetch("SELECT agreement_id FROM agreement_ends WHERE keys_destroyed_at IS NULL ORDER BY ended_at")
    return [r["agreement_id"] for r in rows]


async def mark_destroyed(conn: Connection, agreement_id: str, keys_destroyed: int) -> EndRecord | None:
    """Record that the agreement's keys are destroyed, unless that is recorded already: the end
    record as marked, or None when another call marked it first (the UPDATE waits for its row
    lock and then finds it marked)."""
    row = await conn.fetchrow(
        """UPDATE agreement_ends SET keys_destroyed = $2, keys_destroyed_at = now()
           WHERE agreement_id = $1 AND keys_destroyed_at IS NULL RETURNING *""",
        agreement_id,
        keys_destroyed,
    )
    return _end(row) if row is not None else None


# ------------------------------------------------------------- parents' choices


async def directory_opt_out(conn: Connection, student_key: str, district_id: str) -> bool:
    value = await conn.fetchval(
        "SELECT opted_out FROM directory_opt_outs WHERE student_key = $1 AND district_id = $2", student_key, district_id
    )
    return bool(value)


async def set_directory_opt_out(conn: Connection, choice: Choice, opted_out: bool) -> None:
    await conn.execute(
        """INSERT INTO directory_opt_outs (student_key, district_id, opted_out, recorded_by, method, recorded_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (student_key, district_id) DO UPDATE SET opted_out = EXCLUDED.opted_out,
               recorded_by = EXCLUDED.recorded_by, method = EXCLUDED.method, recorded_at = EXCLUDED.recorded_at""",
        choice.student_key,
        choice.district_id,
        opted_out,
        choice.recorded_by,
        choice.method,
        choice.at,
    )


async def add_choice(
    conn: Connection, choice: Choice, kind: str, *, consent_id: str | None = None, detail: dict[str, Any] | None = None
) -> None:
    await conn.execute(
        """INSERT INTO parental_choices (student_key, district_id, kind, consent_id, recorded_by, method, at, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)""",
        choice.student_key,
        choice.district_id,
        kind,
        consent_id,
        choice.recorded_by,
        choice.method,
        choice.at,
        json.dumps(detail or {}),
    )


async def insert_consent(
    conn: Connection,
    choice: Choice,
    *,
    consent_id: str,
    recipient: str,
    elements: Sequence[str],
    purpose: str | None,
    valid_until: date | None,
) -> None:
    await conn.execute(
        """INSERT INTO written_consents (consent_id, student_key, district_id, recipient, elements, purpose,
               valid_until, recorded_by, method, given_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        consent_id,
        choice.student_key,
        choice.district_id,
        recipient,
        list(elements),
        purpose,
        valid_until,
        choice.recorded_by,
        choice.method,
        choice.at,
    )


async def lock_consent(conn: Connection, consent_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM written_consents WHERE consent_id = $1 FOR UPDATE", consent_id
    )
    return row


async def withdraw_consent(conn: Connection, consent_id: str, choice: Choice) -> None:
    await conn.execute(
        "UPDATE written_consents SET withdrawn_at = $2, withdrawn_by = $3, withdrawn_method = $4 WHERE consent_id = $1",
        consent_id,
        choice.at,
        choice.recorded_by,
        choice.method,
    )


# ---- a student's choices, as the history shows them (application/choices.py)


async def opt_outs(conn: Connection, student_key: str, district_id: str | None) -> list[dict[str, Any]]:
    return await _student_rows(conn, student_key, district_id, "directory_opt_outs", _OPT_OUT_COLUMNS, "district_id")


async def consents(conn: Connection, student_key: str, district_id: str | None) -> list[dict[str, Any]]:
    return await _student_rows(conn, student_key, district_id, "written_consents", _CONSENT_COLUMNS, "given_at")


async def choices(conn: Connection, student_key: str, district_id: str | None) -> list[dict[str, Any]]:
    rows = await _student_rows(conn, student_key, district_id, "parental_choices", _CHOICE_COLUMNS, "id")
    return [r | {"detail": json.loads(r["detail"])} for r in rows]


# What a student's choices show of each table, in answer order.
_OPT_OUT_COLUMNS = "district_id, opted_out, recorded_by, method, recorded_at"
_CHOICE_COLUMNS = "district_id, kind, consent_id, recorded_by, method, at, detail"
_CONSENT_COLUMNS = """consent_id, district_id, recipient, elements, purpose, valid_until, recorded_by, method,
    given_at, withdrawn_at, withdrawn_by, withdrawn_method"""


async def _student_rows(
    conn: Connection, student_key: str, district_id: str | None, table: str, columns: str, order: str
) -> list[dict[str, Any]]:
    """A student's rows of one of the choice tables (in one district, or every one), as JSON
    values: times and dates in ISO 8601, ids as text, in the order of `columns`."""
    rows = await conn.fetch(
        f"""SELECT {columns} FROM {table} WHERE student_key = $1 AND ($2::text IS NULL OR district_id = $2)
            ORDER BY {order}""",  # noqa: S608 (names from this module, never from a request)
        student_key,
        district_id,
    )
    return [{name: _json_value(value) for name, value in r.items()} for r in rows]


def _json_value(value: Any) -> Any:
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


# ------------------------------------------------------------------- decisions


async def denials_by_reason(conn: Connection, since: datetime, limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
    """Decisions that released nothing since `since`: how many, and the `limit` most frequent
    (action, denial code), each with one of its reasons in words as an example."""
    total = await conn.fetchval("SELECT count(*) FROM decisions WHERE NOT allow AND decided_at >= $1", since)
    rows = await conn.fetch(
        "SELECT request->>'action' AS action, answer->>'denial' AS code, count(*) AS count,"
        " max(decided_at) AS last_at, min(answer->>'reason') AS example FROM decisions"
        " WHERE NOT allow AND decided_at >= $1 GROUP BY 1, 2 ORDER BY count(*) DESC, 2 LIMIT $2",
        since,
        limit,
    )
    return int(total), [
        {
            "action": r["action"],
            "code": r["code"],
            "count": r["count"],
            "last_at": r["last_at"].isoformat(),
            "example": r["example"],
        }
        for r in rows
    ]


async def get_decision(conn: Connection, decision_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM decisions WHERE decision_id = $1", decision_id)
    if row is None:
        return None
    return {
        "decision_id": str(row["decision_id"]),
        "request": json.loads(row["request"]),
        "answer": json.loads(row["answer"]),
        "decided_at": row["decided_at"].isoformat(),
    }


async def transfer_exclusions(conn: Connection, district_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM transfer_exclusions WHERE district_id = $1", district_id)
    if row is None:
        return None
    return {
        "district_id": row["district_id"],
        "elements": list(row["elements"]),
        "recorded_by": row["recorded_by"],
        "recorded_at": row["recorded_at"].isoformat(),
    }


async def set_transfer_exclusions(
    conn: Connection, district_id: str, elements: Sequence[str], *, recorded_by: str, at: datetime
) -> None:
    await conn.execute(
        """INSERT INTO transfer_exclusions (district_id, elements, recorded_by, recorded_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (district_id) DO UPDATE SET elements = EXCLUDED.elements, recorded_by = EXCLUDED.recorded_by,
               recorded_at = EXCLUDED.recorded_at""",
        district_id,
        list(elements),
        recorded_by,
        at,
    )


# --- what shredding destroyed, and the recipient's certification --------------------------


async def record_copies_destroyed(
    conn: Connection, agreement_id: str, district_id: str, *, items: int, size: int, verified_unreadable: bool
) -> None:
    await conn.execute(
        """UPDATE agreement_ends SET copies_destroyed = copies_destroyed || jsonb_build_object($2::text,
               jsonb_build_object('items', $3::int, 'bytes', $4::bigint, 'verified_unreadable', $5::boolean))
           WHERE agreement_id = $1""",
        agreement_id,
        district_id,
        items,
        size,
        verified_unreadable,
    )


async def has_directory_choice(conn: Connection, student_key: str, district_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM directory_opt_outs WHERE student_key = $1 AND district_id = $2", student_key, district_id
        )
    )


async def request_certification(
    conn: Connection, *, agreement_id: str, organization: str, disposition: str, due_on: date
) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO destruction_certifications (agreement_id, organization, disposition, due_on)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1""",
        agreement_id,
        organization,
        disposition,
        due_on,
    )
    return inserted is not None


def _certification(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "agreement_id": row["agreement_id"],
        "organization": row["organization"],
        "disposition": row["disposition"],
        "requested_at": row["requested_at"].isoformat(),
        "due_on": row["due_on"].isoformat(),
        "certified": row["certified_at"] is not None,
        "certified_at": row["certified_at"].isoformat() if row["certified_at"] else None,
        "certified_by": row["certified_by"],
        "method": row["method"],
        "completed_on": row["completed_on"].isoformat() if row["completed_on"] else None,
        "what": row["what"],
        "recorded_by": row["recorded_by"],
        "escalated_at": row["escalated_at"].isoformat() if row["escalated_at"] else None,
    }


async def certification(conn: Connection, agreement_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    query = "SELECT * FROM destruction_certifications WHERE agreement_id = $1"
    row = await conn.fetchrow(query + " FOR UPDATE" if lock else query, agreement_id)
    return _certification(row) if row is not None else None


async def certify(
    conn: Connection,
    agreement_id: str,
    *,
    certified_by: str,
    method: str,
    completed_on: date,
    what: str,
    recorded_by: str,
    at: datetime,
) -> None:
    await conn.execute(
        """UPDATE destruction_certifications SET certified_at = $2, certified_by = $3, method = $4,
               completed_on = $5, what = $6, recorded_by = $7 WHERE agreement_id = $1""",
        agreement_id,
        at,
        certified_by,
        method,
        completed_on,
        what,
        recorded_by,
    )


async def overdue_certifications(conn: Connection, today: date) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT * FROM destruction_certifications WHERE certified_at IS NULL AND escalated_at IS NULL
           AND due_on < $1 ORDER BY due_on FOR UPDATE SKIP LOCKED""",
        today,
    )
    return [_certification(r) for r in rows]


async def mark_escalated(conn: Connection, agreement_id: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE destruction_certifications SET escalated_at = $2 WHERE agreement_id = $1", agreement_id, at
    )


async def uncertified(conn: Connection) -> list[dict[str, Any]]:
    """Ended agreements whose recipient has not certified destruction or return yet."""
    rows = await conn.fetch("SELECT * FROM destruction_certifications WHERE certified_at IS NULL ORDER BY due_on")
    return [_certification(r) for r in rows]


async def set_import_problems(conn: Connection, agreement_id: str, problems: list[dict[str, Any]]) -> None:
    await conn.execute(
        "UPDATE agreements SET import_problems = $2::jsonb WHERE agreement_id = $1", agreement_id, json.dumps(problems)
    )


async def import_problems(conn: Connection, agreement_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    rows = await conn.fetch(
        "SELECT agreement_id, import_problems FROM agreements WHERE agreement_id = ANY($1::text[])",
        list(agreement_ids),
    )
    return {
        r["agreement_id"]: json.loads(r["import_problems"])
        if isinstance(r["import_problems"], str)
        else r["import_problems"]
        for r in rows
    }
