"""The clocks as metrics: every running obligation's due time, refreshed from the database.

Computing and closing obligations is part of each use case (`common.replan`,
`common.close_obligations`); this keeps what Prometheus sees in step with the database,
so alerts fire before a deadline passes even when nobody looks at the incident page.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from homeroom.tasks import cancel
from services.incidents import metrics, store

log = logging.getLogger(__name__)


async def refresh(pool: asyncpg.Pool) -> int:
    """Set the clocks' gauges from the database; returns how many obligations are running."""
    running = await store.open_obligations(pool)
    statuses = await pool.fetch("SELECT status, count(*) AS n FROM incidents WHERE status <> 'closed' GROUP BY status")
    # No await from here on: a scrape never sees the gauges half set.
    metrics.OBLIGATION_DUE.clear()
    per_kind = dict.fromkeys(metrics.KINDS, 0)
    for o in running:
        per_kind[o["kind"]] = per_kind.get(o["kind"], 0) + 1
        if o["due_at"] is not None:
            metrics.OBLIGATION_DUE.labels(o["incident_id"], o["district_id"], o["kind"], o["basis"]).set(
                o["due_at"].timestamp()
            )
    for kind, n in per_kind.items():
        metrics.OBLIGATIONS_RUNNING.labels(kind).set(n)
    counts = {r["status"]: r["n"] for r in statuses}
    for status in metrics.STATUSES:
        metrics.INCIDENTS_OPEN.labels(status).set(counts.get(status, 0))
    return len(running)


async def keep(pool: asyncpg.Pool, interval_s: float) -> None:
    while True:
        try:
            await refresh(pool)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away: the next round tries again
            log.warning("refreshing the clocks failed", extra={"error": repr(exc)})
        await asyncio.sleep(interval_s)


async def stop(task: asyncio.Task[None]) -> None:
    await cancel(task)
