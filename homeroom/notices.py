"""Notices that reach people: one mechanism for every service.

A notice is a letter Homeroom owes someone: a transfer notice to the sending district and
the parent (FERPA 99.34(a)(1)), a request to certify destruction at the end of an
agreement, an escalation to compliance, a parent's amendment decision, and later the
per-family letters of a breach response. It names a *recipient* (a role and an id: the
district `d-100`, the parent of `stu_...`, the recipient of agreement `acme-1`, compliance),
a `kind`, a subject, a plain-text body and its `cause` (the case, agreement or amendment
it is about).

Delivery goes through an outbox, as events do: `add(conn, notice)` writes the notice into
the service's `notices` table in the caller's transaction, so a notice exists exactly when
the change that owes it committed. `NoticeRelay` sends each unsent notice by e-mail through
the configured SMTP server (`HOMEROOM_SMTP_*`; the embedded stack and tests run a real local
one; a batch of up to `batch_size` notices in one SMTP session), holding the row's lock
while it talks to the server and recording the address and time in the same transaction;
a crash before that commit sends the same message again
with the same `Message-ID` (receivers drop the repeat), a crash before the send loses
nothing. Every notice is also listed for its recipient (`GET /v1/notices`, which the
portal's notification list reads), whether or not mail could be sent: a recipient with no
known address is recorded as such.

Addresses come from an address book (`HOMEROOM_NOTICE_ADDRESS_BOOK_FILE`, JSON mapping
"role:id" to an address); outside production a recipient it does not list gets a made-up
address under `HOMEROOM_NOTICE_DEV_DOMAIN`, so the embedded stack delivers everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import aiosmtplib
import asyncpg
from fastapi import APIRouter, Depends, Query, Request

from homeroom.auth import Principal, Role, require_roles
from homeroom.storage import Connection
from homeroom.tasks import RELAY_FALLBACK_S, NotifyWake, cancel

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "homeroom_notices"
RecipientRole = Literal[
    "district", "parent", "recipient", "compliance", "cpo"
]  # cpo: the state's Chief Privacy Officer
_NAMESPACE = uuid.UUID("1f5a4c02-8b8e-4c39-a3a4-2b0d2f6c9e51")


@dataclass(frozen=True, slots=True)
class Recipient:
    role: RecipientRole
    id: str

    @property
    def label(self) -> str:
        return f"{self.role}:{self.id}"


@dataclass(frozen=True, slots=True)
class Notice:
    """One letter owed to one recipient. `notice_id` defaults to uuid5 of (cause, kind,
    recipient), so writing the same notice again (a replayed step) writes it once."""

    recipient: Recipient
    kind: str
    subject: str
    body: str
    cause: str
    student_key: str = ""
    district_id: str = ""
    notice_id: str = ""

    @property
    def id(self) -> str:
        return self.notice_id or str(uuid.uuid5(_NAMESPACE, f"{self.cause}|{self.kind}|{self.recipient.label}"))


async def add(conn: Connection, notices: Notice | Iterable[Notice]) -> int:
    """Write notices on `conn`, inside the caller's transaction; a notice id already
    written is skipped. Returns how many were new."""
    batch = [notices] if isinstance(notices, Notice) else list(notices)
    if not batch:
        return 0
    rows = await conn.fetch(
        """INSERT INTO notices (notice_id, recipient_role, recipient_id, kind, subject, body, cause, student_key,
               district_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
               $8::text[], $9::text[])
           ON CONFLICT (notice_id) DO NOTHING RETURNING notice_id""",
        [n.id for n in batch],
        [n.recipient.role for n in batch],
        [n.recipient.id for n in batch],
        [n.kind for n in batch],
        [n.subject for n in batch],
        [n.body for n in batch],
        [n.cause for n in batch],
        [n.student_key for n in batch],
        [n.district_id for n in batch],
    )
    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return len(rows)


# --- addresses ------------------------------------------------------------------------------


class AddressBook:
    """Recipient → e-mail address. `entries` maps "role:id" (or "role:*" for a default of a
    role) to an address; `dev_domain` (development and tests only) makes one up otherwise."""

    def __init__(self, entries: Mapping[str, str] | None = None, dev_domain: str | None = None) -> None:
        self.entries = dict(entries or {})
        self.dev_domain = dev_domain

    @classmethod
    def from_file(cls, path: Path | None, dev_domain: str | None) -> AddressBook:
        entries: dict[str, str] = {}
        if path is not None:
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
                raise ValueError(f'{path}: the address book is a JSON object of "role:id": "address"')
            entries = raw
        return cls(entries, dev_domain)

    def address(self, recipient: Recipient) -> str | None:
        found = self.entries.get(recipient.label) or self.entries.get(f"{recipient.role}:*")
        if found:
            return found
        if self.dev_domain:
            local = re.sub(r"[^a-z0-9._-]+", "-", f"{recipient.role}.{recipient.id}".lower()).strip("-.")
            return f"{local}@{self.dev_domain}"
        return None


# --- sending --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    starttls: bool = False
    use_tls: bool = False
    username: str = ""
    password: str = ""
    timeout_s: float = 10.0


def message_for(row: asyncpg.Record | Mapping[str, Any], address: str, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = address
    message["Subject"] = row["subject"]
    message["Message-ID"] = f"<{row['notice_id']}@homeroom>"  # the same on a re-send: receivers drop repeats
    message["Date"] = format_datetime(row["created_at"])
    message["X-Homeroom-Notice-Kind"] = row["kind"]
    message["X-Homeroom-Cause"] = row["cause"]
    message.set_content(row["body"])
    return message


# Seconds until the earliest unsent notice falls due (NULL: none will; 'infinity': no address).
_NEXT_DUE = """SELECT extract(epoch FROM min(next_attempt_at) - clock_timestamp())::float8 FROM notices
    WHERE sent_at IS NULL AND next_attempt_at < 'infinity'"""


class _Session:
    """One SMTP connection for a batch of notices: opened at the first message that has an
    address (and again after the server dropped it), closed with QUIT after the batch."""

    def __init__(self, smtp: SmtpSettings) -> None:
        self.smtp = smtp
        self.client: aiosmtplib.SMTP | None = None

    async def send(self, message: EmailMessage) -> None:
        if self.client is None or not self.client.is_connected:
            smtp = self.smtp
            client = aiosmtplib.SMTP(
                hostname=smtp.host,
                port=smtp.port,
                start_tls=smtp.starttls,
                use_tls=smtp.use_tls,
                username=smtp.username or None,
                password=smtp.password or None,
                timeout=smtp.timeout_s,
            )
            await client.connect()
            self.client = client
        try:
            await self.client.send_message(message)
        except BaseException:  # the next notice starts on a fresh connection, whatever state this one is in
            await self.close()
            raise

    async def close(self) -> None:
        if self.client is not None and self.client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await self.client.quit()
        self.client = None


@dataclass(eq=False)
class NoticeRelay:
    """Sends unsent notices by e-mail, oldest first; several instances share the work
    (`FOR UPDATE SKIP LOCKED`). Without an SMTP host it does nothing: notices stay listed."""

    service: str
    pool: asyncpg.Pool
    smtp: SmtpSettings | None
    book: AddressBook
    _: KW_ONLY
    poll_interval_s: float = 1.0
    fallback_s: float = RELAY_FALLBACK_S  # a retry's due time is waited for exactly
    max_backoff_s: float = 300.0
    batch_size: int = 50
    sent: int = field(default=0, init=False)
    wake: NotifyWake = field(init=False, repr=False)
    _next_due_s: float | None = field(default=None, init=False, repr=False)  # the next retry, from now
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.wake = NotifyWake(self.pool, NOTIFY_CHANNEL, self.poll_interval_s, self.fallback_s)

    def start(self) -> None:
        if self.smtp is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"notice-relay-{self.service}")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        wake = self.wake
        try:
            while True:
                try:
                    await wake.listen()
                    done = await self.send_due()
                except Exception as exc:  # the database is away: try again after the short poll
                    log.warning("notice relay pass failed", extra={"error": repr(exc)})
                    await wake.wait(busy=True)
                    continue
                wake.found(done > 0)
                if done == 0:  # a notice backing off after a failed send wakes nobody: wait until it is due
                    await wake.wait(within_s=self._next_due_s)
        finally:
            await wake.close()

    async def send_due(self) -> int:
        """Send what is due now; returns how many notices were handled (sent or failed)."""
        if self.smtp is None:
            return 0
        handled = 0
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT * FROM notices WHERE sent_at IS NULL AND next_attempt_at <= clock_timestamp()
                   ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
                self.batch_size,
            )
            session = _Session(self.smtp)
            try:
                for row in rows:
                    await self._send_one(conn, row, session)
                    handled += 1
            finally:
                await session.close()
            if not rows:
                self._next_due_s = await conn.fetchval(_NEXT_DUE)
        return handled

    async def _send_one(self, conn: Connection, row: asyncpg.Record, session: _Session) -> None:
        assert self.smtp is not None
        address = self.book.address(Recipient(row["recipient_role"], row["recipient_id"]))
        if address is None:
            await conn.execute(
                """UPDATE notices SET attempts = attempts + 1, last_error = 'no e-mail address for this recipient',
                       next_attempt_at = 'infinity' WHERE notice_id = $1""",
                row["notice_id"],
            )
            return
        try:
            await session.send(message_for(row, address, self.smtp.sender))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            backoff = min(self.max_backoff_s, 2.0 ** min(row["attempts"], 16))
            await conn.execute(
                """UPDATE notices SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3
                   WHERE notice_id = $1""",
                row["notice_id"],
                f"{type(exc).__name__}: {exc}"[:500],
                datetime.now(UTC) + timedelta(seconds=backoff),
            )
            return
        await conn.execute(
            "UPDATE notices SET sent_at = clock_timestamp(), address = $2, attempts = attempts + 1, last_error = ''"
            " WHERE notice_id = $1",
            row["notice_id"],
            address,
        )
        self.sent += 1


# --- listing --------------------------------------------------------------------------------

Reader = Annotated[Principal, Depends(require_roles(Role.PARENT, Role.DISTRICT_STAFF, Role.COMPLIANCE, Role.VENDOR))]


def notice_json(row: asyncpg.Record | Mapping[str, Any]) -> dict[str, Any]:
    return {
        "notice_id": row["notice_id"],
        "kind": row["kind"],
        "subject": row["subject"],
        "body": row["body"],
        "cause": row["cause"],
        "recipient": {"role": row["recipient_role"], "id": row["recipient_id"]},
        "student_key": row["student_key"] or None,
        "district_id": row["district_id"] or None,
        "created_at": row["created_at"].isoformat(),
        "sent_at": row["sent_at"].isoformat() if row["sent_at"] else None,
        "delivery": "e-mailed" if row["sent_at"] else (row["last_error"] or "waiting to be e-mailed"),
    }


def _own(principal: Principal) -> tuple[str, list[str]]:
    """The recipient role and ids whose notices this caller reads: never anyone else's."""
    if principal.role is Role.PARENT:
        return "parent", sorted(principal.student_keys)
    if principal.role is Role.DISTRICT_STAFF:
        return "district", [principal.district_id or ""]
    if principal.role is Role.VENDOR:
        return "recipient", [principal.agreement_id or ""]
    return "compliance", ["compliance"]


async def list_for(pool: asyncpg.Pool, principal: Principal, limit: int) -> list[dict[str, Any]]:
    role, ids = _own(principal)
    rows = await pool.fetch(
        """SELECT * FROM notices WHERE recipient_role = $1 AND recipient_id = ANY($2::text[])
           ORDER BY created_at DESC LIMIT $3""",
        role,
        ids,
        limit,
    )
    return [notice_json(r) for r in rows]


router = APIRouter(prefix="/v1", tags=["notices"])


@router.get("/notices", summary="Notices this service sent you (a parent: about your children; staff: your district)")
async def my_notices(
    request: Request, principal: Reader, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict[str, Any]:
    pool: asyncpg.Pool = request.app.state.runtime.pool
    return {"notices": await list_for(pool, principal, limit)}
