"""SQL of the transfer service: cases, their history, and last known enrollments.

Every state change is a compare-and-set on the case's current state, so two workers (or
a worker and an API call) can never both move one case, and a step replayed after a
crash finds the case already moved and does nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from homeroom.storage import Connection
from services.transfer.transfers import OPEN, WORKED, CaseView, Enrollment, State

_WORKED = [s.value for s in WORKED]
_OPEN = [s.value for s in OPEN]


@dataclass(frozen=True, slots=True)
class Case:
    case_id: str
    student_key: str
    from_district_id: str
    to_district_id: str
    to_school_id: str
    enrollment_ref: str
    entry_date: date
    state: State
    reason: str
    attempt: int
    resends: int
    next_attempt_at: datetime
    enrolled_at: datetime
    opened_at: datetime
    decided_at: datetime | None
    delivered_at: datetime | None
    closed_at: datetime | None
    decision_id: str
    legal_basis: str
    elements_released: list[str]
    elements_withheld: list[dict[str, str]]
    package_sealed: bytes | None
    cause_event_id: str
    updated_at: datetime
    clock_started_at: datetime
    retries: int

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Case:
        values = dict(row)
        values.pop("lease_until", None)
        values["state"] = State(values["state"])
        values["elements_released"] = list(values["elements_released"])
        withheld = values["elements_withheld"]
        values["elements_withheld"] = json.loads(withheld) if isinstance(withheld, str) else list(withheld)
        return cls(**values)

    @property
    def view(self) -> CaseView:
        return CaseView(self.state, self.clock_started_at, self.delivered_at, self.attempt, self.resends)

    def public(self) -> dict[str, Any]:
        """The case as the API shows it (never the package itself), times as ISO 8601."""
        return {name: _shown(getattr(self, name)) for name in _PUBLIC_FIELDS}


# What the API shows of a case: not the sealed package, the retry clock or the bookkeeping.
_PUBLIC_FIELDS = (
    *("case_id", "student_key", "from_district_id", "to_district_id", "to_school_id", "entry_date"),  # whose, where
    *("state", "reason", "attempt", "resends", "retries"),  # where it stands
    *("opened_at", "decided_at", "delivered_at", "closed_at"),  # when
    *("decision_id", "legal_basis", "elements_released", "elements_withheld"),  # what was decided
)


def _shown(value: object) -> object:
    if isinstance(value, date):  # a datetime is a date too
        return value.isoformat()
    return value.value if isinstance(value, State) else value


# --- enrollments ------------------------------------------------------------------------


async def known_enrollments(conn: Connection, student_key: str) -> list[Enrollment]:
    rows = await conn.fetch(
        "SELECT district_id, school_id, entry_date FROM student_enrollments WHERE student_key = $1 FOR UPDATE",
        student_key,
    )
    return [Enrollment(r["district_id"], r["school_id"], r["entry_date"]) for r in rows]


async def record_enrollment(conn: Connection, student_key: str, enrollment: Enrollment, event_id: str) -> None:
    """Keep the latest enrollment per district; an older one arriving late changes nothing."""
    await conn.execute(
        """INSERT INTO student_enrollments (student_key, district_id, school_id, entry_date, event_id)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (student_key, district_id) DO UPDATE
             SET school_id = EXCLUDED.school_id, entry_date = EXCLUDED.entry_date,
                 event_id = EXCLUDED.event_id, updated_at = now()
             WHERE student_enrollments.entry_date <= EXCLUDED.entry_date""",
        student_key,
        enrollment.district_id,
        enrollment.school_id,
        enrollment.entry_date,
        event_id,
    )


# --- cases ------------------------------------------------------------------------------


async def open_case(
    conn: Connection,
    *,
    case_id: str,
    student_key: str,
    from_district_id: str,
    to: Enrollment,
    enrollment_ref: str,
    enrolled_at: datetime,
    cause_event_id: str,
) -> bool:
    """Insert a new case; False when it (or another open case for the pair) exists."""
    inserted = await conn.fetchval(
        """INSERT INTO transfer_cases (case_id, student_key, from_district_id, to_district_id, to_school_id,
                                       enrollment_ref, entry_date, state, enrolled_at, cause_event_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'requested', $8, $9)
           ON CONFLICT DO NOTHING RETURNING 1""",
        case_id,
        student_key,
        from_district_id,
        to.district_id,
        to.school_id,
        enrollment_ref,
        to.entry_date,
        enrolled_at,
        cause_event_id,
    )
    return bool(inserted)


async def add_history(
    conn: Connection,
    case_id: str,
    step: str,
    state: State,
    *,
    reason: str = "",
    detail: dict[str, Any] | None = None,
    event_id: str = "",
) -> bool:
    """Record a step once; False if this step of this case was recorded before."""
    inserted = await conn.fetchval(
        """INSERT INTO transfer_history (case_id, step, state, reason, detail, event_id)
           VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT (case_id, step) DO NOTHING RETURNING 1""",
        case_id,
        step,
        state.value,
        reason,
        json.dumps(detail or {}),
        event_id,
    )
    return bool(inserted)


_SETTABLE = frozenset(
    {
        "reason",
        "attempt",
        "resends",
        "next_attempt_at",
        "decided_at",
        "delivered_at",
        "closed_at",
        "decision_id",
        "legal_basis",
        "elements_released",
        "elements_withheld",
        "package_sealed",
        "lease_until",
        "clock_started_at",
        "retries",
    }
)


async def move(conn: Connection, case_id: str, expected: State, target: State, **fields: Any) -> Case | None:
    """Compare-and-set the case from `expected` to `target` with `fields`; None if the case
    is no longer in `expected` (someone else moved it, or a replay)."""
    unknown = set(fields) - _SETTABLE
    if unknown:
        raise ValueError(f"not settable: {sorted(unknown)}")
    sets = ["state = $3", "updated_at = now()"]
    args: list[Any] = [case_id, expected.value, target.value]
    for name, value in fields.items():
        args.append(json.dumps(value) if name == "elements_withheld" else value)
        cast = "::jsonb" if name == "elements_withheld" else ""
        sets.append(f"{name} = ${len(args)}{cast}")
    row = await conn.fetchrow(
        f"UPDATE transfer_cases SET {', '.join(sets)} WHERE case_id = $1 AND state = $2 RETURNING *",  # noqa: S608
        *args,
    )
    return Case.from_row(row) if row is not None else None


async def note_failure(
    conn: Connection, case_id: str, state: State, attempt: int, next_attempt_at: datetime, reason: str
) -> bool:
    done = await conn.fetchval(
        """UPDATE transfer_cases SET attempt = $3, next_attempt_at = $4, reason = $5, lease_until = NULL,
                                     updated_at = now()
           WHERE case_id = $1 AND state = $2 RETURNING 1""",
        case_id,
        state.value,
        attempt,
        next_attempt_at,
        reason,
    )
    return bool(done)


async def claim_due(pool: asyncpg.Pool, limit: int, lease_s: float, now: datetime) -> list[Case]:
    """Lease up to `limit` cases whose next step is due at `now` (the service's clock: deadlines
    and backoffs are rules about time), skipping ones another worker holds (leases are the
    database's own time: they coordinate processes)."""
    rows = await pool.fetch(
        """UPDATE transfer_cases SET lease_until = now() + make_interval(secs => $3)
           WHERE case_id IN (
               SELECT case_id FROM transfer_cases
               WHERE state = ANY($1::text[]) AND next_attempt_at <= $4
                 AND (lease_until IS NULL OR lease_until < now())
               ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING *""",
        _WORKED,
        limit,
        lease_s,
        now,
    )
    return [Case.from_row(r) for r in rows]


async def release(pool: asyncpg.Pool, case_id: str) -> None:
    await pool.execute("UPDATE transfer_cases SET lease_until = NULL WHERE case_id = $1", case_id)


async def get_case(conn: Connection | asyncpg.Pool, case_id: str) -> Case | None:
    row = await conn.fetchrow("SELECT * FROM transfer_cases WHERE case_id = $1", case_id)
    return Case.from_row(row) if row is not None else None


async def history(conn: Connection | asyncpg.Pool, case_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT step, state, at, reason, detail FROM transfer_history WHERE case_id = $1 ORDER BY seq", case_id
    )
    return [
        {
            "step": r["step"],
            "state": r["state"],
            "at": r["at"].isoformat(),
            "reason": r["reason"],
            "detail": json.loads(r["detail"]) if isinstance(r["detail"], str) else r["detail"],
        }
        for r in rows
    ]


async def list_cases(
    pool: asyncpg.Pool,
    *,
    districts_in: str | None,
    districts_out: str | None,
    student_keys: list[str] | None,
    state: State | None,
    limit: int,
    to_schools: list[str] | None = None,
) -> list[Case]:
    """Cases into `districts_in` or out of `districts_out` (None: no such condition; both
    None and no student keys: every case), newest first."""
    where: list[str] = []
    args: list[Any] = []
    scope: list[str] = []
    if districts_in is not None:
        args.append(districts_in)
        scope.append(f"to_district_id = ${len(args)}")
    if districts_out is not None:
        args.append(districts_out)
        scope.append(f"from_district_id = ${len(args)}")
    if student_keys is not None:
        args.append(student_keys)
        scope.append(f"student_key = ANY(${len(args)}::text[])")
    if scope:
        where.append("(" + " OR ".join(scope) + ")")
    if to_schools is not None:
        args.append(to_schools)
        where.append(f"to_school_id = ANY(${len(args)}::text[])")
    if state is not None:
        args.append(state.value)
        where.append(f"state = ${len(args)}")
    args.append(limit)
    sql = "SELECT * FROM transfer_cases"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY opened_at DESC, case_id LIMIT ${len(args)}"
    rows = await pool.fetch(sql, *args)
    return [Case.from_row(r) for r in rows]


async def open_case_exists(conn: Connection, student_key: str, from_district: str, to_district: str) -> bool:
    found = await conn.fetchval(
        """SELECT 1 FROM transfer_cases WHERE student_key = $1 AND from_district_id = $2 AND to_district_id = $3
           AND state = ANY($4::text[])""",
        student_key,
        from_district,
        to_district,
        _OPEN,
    )
    return bool(found)


async def count_by_state(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT state, count(*) AS n FROM transfer_cases GROUP BY state")
    return {r["state"]: int(r["n"]) for r in rows}
