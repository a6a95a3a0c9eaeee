"""Verify the log as stored now (`GET /v1/verification`, and the head keeper every `verify_interval_s`).

Use cases:
- `verify_stored`: every leaf recomputed from its row, every receipt and head checked
  (`homeroom/tlog/verify.py`, the offline verifier, fed page by page from the database).
- `check_stored_tree`: every stored tree node what its children make, every signed root foldable.
- `witness_findings`: what the witnessed checkpoints say (a truncation the witness saw).
- `report`: all three as the verification report the API answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from homeroom.tlog.verify import ExportedEntry, VerificationReport, verify_log
from services.audit import metrics, store
from services.audit.application import witnessing
from services.audit.state import AuditRuntime


async def verify_stored(runtime: AuditRuntime) -> VerificationReport:
    """Verify the log as stored now: every leaf recomputed from its row, every receipt and head.

    The verifier runs in a thread and pulls pages of rows from the event loop as it goes,
    so memory holds one page of entries at a time (plus the verifier's 33 bytes per leaf).
    """
    batch = runtime.settings.export_batch
    heads = await store.heads(runtime.pool)
    loop = asyncio.get_running_loop()

    def entries() -> Iterator[ExportedEntry]:
        after = -1
        while True:
            page = asyncio.run_coroutine_threadsafe(store.entries_after(runtime.pool, after, batch), loop).result()
            if not page:
                return
            for e in page:
                yield ExportedEntry(e.seq, e.canonical(), e.leaf_hash, e.receipt)
            after = page[-1].seq

    report = await asyncio.to_thread(verify_log, entries(), heads, runtime.state.keyring)
    metrics.VERIFICATIONS.labels("intact" if report.ok else "tampered").inc()
    for kind, count in report.counts.items():
        metrics.VERIFICATION_FAILURES.labels(kind.value).inc(count)
    return report


@dataclass(frozen=True, slots=True)
class StoredTreeCheck:
    bad_nodes: list[tuple[int, int]]  # (level, index) whose hash is not what its children (or entry) give
    bad_roots: list[int]  # sizes of signed heads whose root the stored nodes no longer give

    @property
    def ok(self) -> bool:
        return not self.bad_nodes and not self.bad_roots


async def check_stored_tree(runtime: AuditRuntime, limit: int = 1000) -> StoredTreeCheck:
    """Is every stored node what its children make, every leaf its entry's, every signed root foldable?

    The proofs the API serves are folded from ``tree_nodes``; an altered or missing node
    makes them fail for whoever checks them. ``verify_stored`` checks the entries; this
    checks what proofs are made of.
    """
    bad_nodes = await store.bad_tree_nodes(runtime.pool, limit)
    roots: dict[int, set[bytes]] = {}
    for signed in await store.heads(runtime.pool):
        roots.setdefault(signed.head.size, set()).add(signed.head.root)
    bad_roots = []
    for size, signed_roots in sorted(roots.items()):
        try:
            stored = await store.root(runtime.pool, size)
        except LookupError:
            stored = b""
        if stored not in signed_roots:
            bad_roots.append(size)
    if bad_nodes:
        metrics.VERIFICATION_FAILURES.labels("stored_node_invalid").inc(len(bad_nodes))
    if bad_roots:
        metrics.VERIFICATION_FAILURES.labels("stored_root_mismatch").inc(len(bad_roots))
    return StoredTreeCheck(bad_nodes, bad_roots)


async def witness_findings(runtime: AuditRuntime, log_size: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """What the witnessed checkpoints say about the stored log: the latest cosigned head, and
    a truncation finding naming the missing range when a witness saw a larger log."""
    findings: list[dict[str, Any]] = []
    recorded = await witnessing.latest(runtime)
    witnessed_size = recorded.size if recorded else 0
    head = await store.latest_head(runtime.pool)
    if head is not None and runtime.settings.witness_url:
        answer = await witnessing.submit(runtime, head)
        if answer.truncated is not None:
            witnessed_size = max(witnessed_size, answer.witness_size or 0)
        recorded = await witnessing.latest(runtime) or recorded
    if witnessed_size > log_size:
        first, last = log_size, witnessed_size - 1
        findings.append(
            {
                "kind": "truncated",
                "message": f"a witness cosigned a log of {witnessed_size} entries; the log holds {log_size}: "
                f"entries {first} to {last} missing (truncated)",
                "index": first,
                "last_index": last,
                "head": None,
            }
        )
    return (None if recorded is None else recorded.to_dict()), findings


async def report(runtime: AuditRuntime) -> dict[str, Any]:
    """The stored log verified now: entries, stored nodes and what the witness saw."""
    checked = await verify_stored(runtime)
    tree = await check_stored_tree(runtime)
    witnessed, truncation = await witness_findings(runtime, await store.tree_size(runtime.pool))
    return {
        "ok": checked.ok and tree.ok and not truncation,
        "witnessed_checkpoint": witnessed,
        "entries_ok": checked.ok,
        "stored_nodes_invalid": [{"level": level, "index": index} for level, index in tree.bad_nodes],
        "stored_roots_mismatched": tree.bad_roots,
        "entries_read": checked.entries_read,
        "log_size": checked.log_size,
        "heads_checked": checked.heads_checked,
        "authenticated_size": checked.authenticated_size,
        "findings": truncation
        + [
            {
                "kind": f.kind.value,
                "message": f.message,
                "index": f.index,
                "last_index": f.last_index,
                "head": None if f.head is None else {"size": f.head.size, "timestamp_ms": f.head.timestamp_ms},
            }
            for f in checked.findings
        ],
        "failing_entries": checked.entry_indices(),
        "failing_heads": [{"size": h.size, "timestamp_ms": h.timestamp_ms} for h in checked.heads()],
    }
