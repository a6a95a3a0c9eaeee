"""Append entries: a poll's events, already made entries (`consumers.to_draft`), become leaves
of the log in one append.

Use case:
- `append`: the drafts appended in order in the caller's transaction (the consumer's), as
  the writer role (set once per transaction); an event already in the log is skipped
  (`store.append_many` checks `event_id` under the append lock), and each new disclosure is
  counted by recipient role and legal basis.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping, Sequence
from typing import Any

from homeroom.storage import Connection
from services.audit import metrics, store
from services.audit.entries import EntryDraft


async def append(
    conn: Connection, drafts: Sequence[EntryDraft], now_ms: int, writer_role: str, tx: MutableMapping[str, Any]
) -> list[store.Appended | None]:
    """`tx`: what this transaction has done already (the kernel's per-transaction handler state)."""
    started = time.perf_counter()
    if not tx.get("writer"):
        await store.act_as_writer(conn, writer_role)
        tx["writer"] = True
    appended = await store.append_many(conn, drafts, now_ms)
    # Observed inside the transaction; entries appended and the tree size are counted from the
    # database by the head keeper, so a rolled-back batch is never counted.
    per_entry = (time.perf_counter() - started) / len(drafts) if drafts else 0.0
    for draft, entry in zip(drafts, appended, strict=True):
        if entry is None:
            continue
        metrics.APPEND_SECONDS.observe(per_entry)
        if draft.kind == "disclosure_recorded":
            metrics.DISCLOSURES.labels(draft.recipient.role or "unknown", draft.legal_basis or "unknown").inc()
    return appended
