"""Signing tree heads: on demand, and periodically by the head keeper task."""

from __future__ import annotations

import asyncio
import logging
import time

from homeroom.service import Runtime
from services.audit import metrics, store
from services.audit.settings import AuditSettings
from services.audit.signing import LogSigner, SignedTreeHead

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


async def keep_heads(runtime: Runtime, settings: AuditSettings) -> None:
    last = await store.latest_head(runtime.pool)
    last_size = -1 if last is None else last.head.size
    last_at = 0.0 if last is None else last.head.timestamp_ms / 1000
    if last is not None:
        metrics.record_head(last.head.size, last.head.timestamp_ms)
    while True:
        try:
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
