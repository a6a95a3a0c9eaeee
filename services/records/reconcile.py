"""Reconciliation: every release in records' read log must be in the audit log.

A release and its disclosure record stand or fall together: both are written in one
transaction (read-log row and outbox event), and audit records every disclosure it
receives. This check proves it continuously: every `reconcile_interval_s` the read-log
rows older than `reconcile_grace_s` that are not yet confirmed are looked up in audit's
log (by disclosure id, `POST /v1/internal/disclosures/present`); found ones are marked in
`read_log_audited`, the rest are counted in `homeroom_records_disclosures_unaudited`,
which the alert HomeroomReleaseWithoutAuditEntry pages on. The lookup is
`homeroom.contracts.clients.AuditClient.present`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from homeroom.contracts.clients import PeerUnavailable
from homeroom.service import Runtime
from services.records import store
from services.records.metrics import RECONCILIATIONS, UNAUDITED

log = logging.getLogger(__name__)

Present = Callable[[Sequence[str]], Awaitable[set[str]]]
BATCH = 2000


async def reconcile_once(runtime: Runtime, present: Present, grace_s: float) -> int:
    """One pass over every district; returns (and exports) the releases audit does not hold."""
    async with runtime.pool.acquire() as conn:
        districts = [r["district_id"] for r in await conn.fetch("SELECT DISTINCT district_id FROM student_index")]
    missing = 0
    for district in districts:
        async with store.district_tx(runtime.pool, district) as conn:
            rows = await conn.fetch(
                """SELECT r.disclosure_id FROM read_log r
                   WHERE r.read_at < clock_timestamp() - make_interval(secs => $1)
                     AND NOT EXISTS (SELECT 1 FROM read_log_audited a WHERE a.disclosure_id = r.disclosure_id)
                   ORDER BY r.id""",
                grace_s,
            )
        ids = [r["disclosure_id"] for r in rows]
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH]
            found = await present(batch)
            missing += len(batch) - len(found & set(batch))
            if found:
                async with store.district_tx(runtime.pool, district) as conn:
                    await conn.executemany(
                        """INSERT INTO read_log_audited (disclosure_id, district_id)
                           VALUES ($1, $2) ON CONFLICT DO NOTHING""",
                        [(d, district) for d in batch if d in found],
                    )
    UNAUDITED.set(missing)
    if missing:
        log.error("releases without their audit entry", extra={"unaudited": missing})
    return missing


async def keep_reconciling(runtime: Runtime, present: Present, interval_s: float, grace_s: float) -> None:
    while True:
        try:
            await reconcile_once(runtime, present, grace_s)
            RECONCILIATIONS.labels("ok").inc()
        except asyncio.CancelledError:
            raise
        except PeerUnavailable as exc:
            RECONCILIATIONS.labels("audit_unavailable").inc()
            log.warning("reconciliation: audit unavailable", extra={"error": str(exc)})
        except Exception as exc:  # database away: next interval
            RECONCILIATIONS.labels("failed").inc()
            log.warning("reconciliation failed", extra={"error": repr(exc)})
        await asyncio.sleep(interval_s)
