"""Export the whole log (`GET /v1/export`): for offline verification, or for a spreadsheet.

Use cases:
- `jsonl`: the log line, every signed head, then every entry in order, in the format the
  offline verifier reads (`homeroom/tlog/export.py`).
- `csv`: one row per entry, text cells a spreadsheet would run as a formula defused.

Both stream keyset pages of `export_batch` entries: no long transaction, flat memory.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

from homeroom.tlog import export
from homeroom.tlog.canonical import format_time
from services.audit import store
from services.audit.entries import entry_object
from services.audit.state import AuditRuntime


async def jsonl(runtime: AuditRuntime) -> AsyncIterator[str]:
    heads = await store.heads(runtime.pool)
    size = await store.tree_size(runtime.pool)
    yield export.header_line(runtime.state.keyring, size, runtime.state.now_ms())
    for head in heads:
        yield export.head_line(head)
    async for batch in store.iter_entries(runtime.pool, runtime.settings.export_batch):
        yield "".join(
            export.entry_line(e.seq, entry_object(e.seq, e.recorded_at_ms, e.draft), e.leaf_hash, e.receipt)
            for e in batch
        )


CSV_COLUMNS = (
    "seq",
    "event_id",
    "kind",
    "occurred_at",
    "requester_organization",
    "requester_role",
    "requester_person",
    "recipient_organization",
    "recipient_role",
    "recipient_client_id",
    "student_key",
    "district_id",
    "elements",
    "purpose",
    "legal_basis",
    "agreement_id",
    "decision_id",
    "redisclosure_parties",
    "channel",
    "record_required",
    "leaf_hash",
    "receipt_signature",
)


def _cell(value: object) -> object:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe (OWASP CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _row(e: store.StoredEntry) -> tuple[object, ...]:
    d = e.draft
    return (
        e.seq,
        d.event_id,
        d.kind,
        format_time(d.occurred_at),
        d.requester.organization,
        d.requester.role,
        d.requester.person,
        d.recipient.organization,
        d.recipient.role,
        d.recipient.client_id,
        d.student_key,
        d.district_id,
        ";".join(d.elements),
        d.purpose,
        d.legal_basis,
        d.agreement_id,
        d.decision_id,
        ";".join(d.redisclosure_parties),
        d.channel,
        "true" if d.record_required else "false",
        e.leaf_hash.hex(),
        "" if e.receipt is None else e.receipt.signature.hex(),
    )


async def csv_rows(runtime: AuditRuntime) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    async for batch in store.iter_entries(runtime.pool, runtime.settings.export_batch):
        for e in batch:
            writer.writerow(_cell(v) for v in _row(e))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
