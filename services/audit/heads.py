"""Signing tree heads (on demand, and periodically by the head keeper task) and verifying the stored log.

The keeper also verifies the whole stored log every `verify_interval_s` (0: never), so
the verification-failure alert fires without anyone asking."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from homeroom.service import Runtime
from services.audit import metrics, store
from services.audit.settings import AuditSettings
from services.audit.signing import LogSigner, SignedTreeHead
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
    return signed


async def verify_stored(runtime: Runtime) -> VerificationReport:
    """Verify the log as stored now: every leaf recomputed from its row, every receipt and head.

    The verifier runs in a thread and pulls pages of rows from the event loop as it goes,
    so memory holds one page of entries at a time (plus the verifier's 33 bytes per leaf).
    """
    settings = runtime.settings
    assert isinstance(settings, AuditSettings)
    signer: LogSigner = runtime.extras["signer"]
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

    report = await asyncio.to_thread(verify_log, entries(), heads, signer.public_key)
    metrics.VERIFICATIONS.labels("intact" if report.ok else "tampered").inc()
    for kind, count in report.counts.items():
        metrics.VERIFICATION_FAILURES.labels(kind.value).inc(count)
    return report


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
