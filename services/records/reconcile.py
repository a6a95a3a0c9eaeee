"""Reconciliation: every release in records' read log must be in the audit log.

A release and its disclosure record stand or fall together: both are written in one
transaction (read-log row and outbox event), and audit records every disclosure it
receives. This check proves it continuously: every `reconcile_interval_s` the read-log
rows older than `reconcile_grace_s` that are not yet confirmed are looked up in audit's
log (by disclosure id, `POST /v1/internal/disclosures/present`); found ones are marked in
`read_log_audited`, the rest are counted in `homeroom_records_disclosures_unaudited`,
which the alert HomeroomReleaseWithoutAuditEntry pages on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import httpx

from homeroom.service import Runtime
from services.records import store
from services.records.metrics import RECONCILIATIONS, UNAUDITED

log = logging.getLogger(__name__)

Present = Callable[[Sequence[str]], Awaitable[set[str]]]
BATCH = 2000


class AuditUnavailable(Exception):
    pass


class AuditClient:
    """The audit service's reconciliation lookup, with this service's own token."""

    def __init__(self, base_url: str, token: Callable[[], str], *, transport: httpx.AsyncBaseTransport | None = None):
        self._client = httpx.AsyncClient(base_url=base_url, timeout=10.0, transport=transport)
        self._token = token

    async def present(self, disclosure_ids: Sequence[str]) -> set[str]:
        try:
            response = await self._client.post(
                "/v1/internal/disclosures/present",
                json={"disclosure_ids": list(disclosure_ids)},
                headers={"Authorization": f"Bearer {self._token()}"},
            )
        except httpx.HTTPError as exc:
            raise AuditUnavailable(str(exc)) from exc
        if response.status_code != 200:
            raise AuditUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
        return set(response.json()["present"])

    async def aclose(self) -> None:
        await self._client.aclose()


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
        except AuditUnavailable as exc:
            RECONCILIATIONS.labels("audit_unavailable").inc()
            log.warning("reconciliation: audit unavailable", extra={"error": str(exc)})
        except Exception as exc:  # database away: next interval
            RECONCILIATIONS.labels("failed").inc()
            log.warning("reconciliation failed", extra={"error": repr(exc)})
        await asyncio.sleep(interval_s)
