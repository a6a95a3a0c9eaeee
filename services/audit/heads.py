"""Signing tree heads (on demand, and periodically by the head keeper task) and verifying the stored log.

The keeper also verifies the whole stored log every `verify_interval_s` (0: never), so
the verification-failure alert fires without anyone asking."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from homeroom.service import Runtime
from services.audit import metrics, store, witnessing
from services.audit.settings import AuditSettings
from services.audit.signing import Keyring, LogSigner, SignedTreeHead
from services.audit.verify import ExportedEntry, VerificationReport, verify_log

log = logging.getLogger(__name__)

TICK_S = 1.0


async def sign_now(runtime: Runtime) -> SignedTreeHead:
    """Sign a tree head over the log as committed now (the on-demand and periodic path)."""
    settings = runtime.settings
    assert isinstance(settings, AuditSettings)
    signer: LogSigner = runtime.extras["signer"]
    async with runtime.pool.acquire() as conn, conn.transaction():
        await store.act_as_writer(conn, settings.writer_role)
        signed = await store.sign_head(conn, signer, time.time_ns() // 1_000_000)
    metrics.record_head(signed.head.size, signed.head.timestamp_ms)
    metrics.record_size(signed.head.size)
    if settings.witness_url:  # published where the operator cannot withdraw it (witnessing.py)
        witnessed = await witnessing.submit(runtime, signed)
        if witnessed.problem:
            log.warning("head not witnessed", extra={"size": signed.head.size, "problem": witnessed.problem})
    return signed


async def verify_stored(runtime: Runtime) -> VerificationReport:
    """Verify the log as stored now: every leaf recomputed from its row, every receipt and head.

    The verifier runs in a thread and pulls pages of rows from the event loop as it goes,
    so memory holds one page of entries at a time (plus the verifier's 33 bytes per leaf).
    """
    settings = runtime.settings
    assert isinstance(settings, AuditSettings)
    keys: Keyring = runtime.extras["keyring"]
    heads = await store.heads(runtime.pool)
    loop = asyncio.get_running_loop()

    def entries() -> Iterator[ExportedEntry]:
        after = -1
        while True:
            page = asyncio.run_coroutine_threadsafe(
                store.entries_after(runtime.pool, after, settings.export_batch), loop
            ).result()
            if not page:
                return
            for e in page:
                yield ExportedEntry(e.seq, e.canonical(), e.leaf_hash, e.receipt)
            after = page[-1].seq

    report = await asyncio.to_thread(verify_log, entries(), heads, keys)
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


async def check_stored_tree(runtime: Runtime, limit: int = 1000) -> StoredTreeCheck:
    """Is every stored node what its children make, every leaf its entry's, every signed root foldable?

    The proofs the API serves are folded from ``tree_nodes``; an altered or missing node
    makes them fail for whoever checks them. ``verify_stored`` checks the entries; this
    checks what proofs are made of (in SQL, one pass over the nodes).
    """
    rows = await runtime.pool.fetch(
        """SELECT level, idx FROM (
               SELECT p.level, p.idx FROM tree_nodes p
               LEFT JOIN tree_nodes l ON l.level = p.level - 1 AND l.idx = 2 * p.idx
               LEFT JOIN tree_nodes r ON r.level = p.level - 1 AND r.idx = 2 * p.idx + 1
               WHERE p.level >= 1 AND (l.hash IS NULL OR r.hash IS NULL
                                       OR p.hash <> sha256('\\x01'::bytea || l.hash || r.hash))
               UNION ALL
               SELECT t.level, t.idx FROM tree_nodes t LEFT JOIN entries e ON e.seq = t.idx
               WHERE t.level = 0 AND e.leaf_hash IS DISTINCT FROM t.hash
           ) bad ORDER BY level, idx LIMIT $1""",
        limit,
    )
    bad_nodes = [(r["level"], r["idx"]) for r in rows]
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


async def keep_heads(runtime: Runtime, settings: AuditSettings) -> None:
    last = await store.latest_head(runtime.pool)
    last_size = -1 if last is None else last.head.size
    last_at = 0.0 if last is None else last.head.timestamp_ms / 1000
    if last is not None:
        metrics.record_head(last.head.size, last.head.timestamp_ms)
    last_verified = time.monotonic()
    while True:
        try:
            if settings.verify_interval_s > 0 and time.monotonic() - last_verified >= settings.verify_interval_s:
                last_verified = time.monotonic()
                report = await verify_stored(runtime)
                if not (await check_stored_tree(runtime)).ok:
                    log.error("the stored tree nodes no longer give the signed roots: proofs served will fail")
                if not report.ok:
                    log.error("the stored audit log fails verification", extra={"findings": report.lines()[:20]})
            size = await store.tree_size(runtime.pool)
            metrics.record_size(size)
            age = time.time() - last_at
            if (size != last_size and age >= settings.head_interval_s) or age >= settings.head_max_age_s:
                signed = await sign_now(runtime)
                last_size, last_at = signed.head.size, signed.head.timestamp_ms / 1000
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # database away: try again next tick, the log is unharmed
            log.warning("tree head keeper failed", extra={"error": repr(exc)})
        await asyncio.sleep(min(TICK_S, settings.head_interval_s))
