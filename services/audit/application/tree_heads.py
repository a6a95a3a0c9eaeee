"""Sign a tree head: on demand (`POST /v1/tree-heads`) and periodically (the head keeper).

Use cases:
- `sign_head`: the signature itself, in the caller's transaction under the append lock (so a
  head's time order agrees with its size order); what every other path calls.
- `sign_now`: sign over the log as committed now, as the writer role, and hand the head to the
  witness when one is configured.
- `keep_heads`: the background task that signs a head every `head_interval_s` when the log
  has grown (and at least every `head_max_age_s` regardless), keeps the size metrics in
  step with what is committed and verifies the stored log every `verify_interval_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from homeroom.storage import Connection
from homeroom.tlog.signing import LogSigner, SignedTreeHead, TreeHead
from services.audit import metrics, store
from services.audit.application import verification, witnessing
from services.audit.state import AuditRuntime

log = logging.getLogger(__name__)

TICK_S = 1.0


async def sign_head(conn: Connection, signer: LogSigner, now_ms: int) -> SignedTreeHead:
    """Sign the tree as it is now and keep the head, in the caller's transaction (taken under
    the append lock, so a head's time order agrees with its size order)."""
    await store.lock_appends(conn)
    last = await store.latest_head(conn)
    if last is not None:
        now_ms = max(now_ms, last.head.timestamp_ms)
    size = await store.tree_size(conn)
    signed = signer.sign_head(TreeHead(size, await store.root(conn, size), now_ms))
    await store.insert_head(conn, signed)
    return signed


async def sign_now(runtime: AuditRuntime) -> SignedTreeHead:
    """Sign a tree head over the log as committed now (the on-demand and periodic path)."""
    state = runtime.state
    async with runtime.pool.acquire() as conn, conn.transaction():
        await store.act_as_writer(conn, runtime.settings.writer_role)
        signed = await sign_head(conn, state.signer, state.now_ms())
    metrics.record_head(signed.head.size, signed.head.timestamp_ms)
    metrics.record_size(signed.head.size)
    if runtime.settings.witness_url:  # published where the operator cannot withdraw it (witnessing.py)
        witnessed = await witnessing.submit(runtime, signed)
        if witnessed.problem:
            log.warning("head not witnessed", extra={"size": signed.head.size, "problem": witnessed.problem})
    return signed


async def keep_heads(runtime: AuditRuntime) -> None:
    """The head keeper (started and stopped by the service's lifecycle)."""
    settings, state = runtime.settings, runtime.state
    last = await store.latest_head(runtime.pool)
    last_size = -1 if last is None else last.head.size
    last_at_ms = 0 if last is None else last.head.timestamp_ms
    if last is not None:
        metrics.record_head(last.head.size, last.head.timestamp_ms)
    last_verified = time.monotonic()
    while True:
        try:
            if settings.verify_interval_s > 0 and time.monotonic() - last_verified >= settings.verify_interval_s:
                last_verified = time.monotonic()
                report = await verification.verify_stored(runtime)
                if not (await verification.check_stored_tree(runtime)).ok:
                    log.error("the stored tree nodes no longer give the signed roots: proofs served will fail")
                if not report.ok:
                    log.error("the stored audit log fails verification", extra={"findings": report.lines()[:20]})
            size = await store.tree_size(runtime.pool)
            metrics.record_size(size)
            age = (state.now_ms() - last_at_ms) / 1000
            if (size != last_size and age >= settings.head_interval_s) or age >= settings.head_max_age_s:
                signed = await sign_now(runtime)
                last_size, last_at_ms = signed.head.size, signed.head.timestamp_ms
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # database away: try again next tick, the log is unharmed
            log.warning("tree head keeper failed", extra={"error": repr(exc)})
        await asyncio.sleep(min(TICK_S, settings.head_interval_s))
