"""The records service as the kernel runs it: `homeroom serve records`."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from homeroom.contracts.clients import AuditClient, ConsentClient
from homeroom.service import Runtime, ServiceSpec
from services.records import api, oneroster_api, store
from services.records.absence import AbsenceReviewer
from services.records.application.waiting_marks import WaitingMarks
from services.records.consumers import CONSUMERS
from services.records.destruction import retention_loop
from services.records.reconcile import keep_reconciling
from services.records.settings import RecordsSettings


async def on_start(runtime: Runtime) -> None:
    """The consent client, unless one was injected (tests put theirs in runtime.extras);
    the absence reviewer and the waiting marks' task wherever consumers run."""
    settings = runtime.settings
    assert isinstance(settings, RecordsSettings)
    if "consent" not in runtime.extras:
        runtime.extras["consent"] = ConsentClient(
            settings.consent_url,
            runtime.service_token,
            transport=runtime.peer("consent"),
            timeout_s=settings.consent_timeout_s,
        )
    if settings.reconcile_interval_s > 0 and (settings.audit_url or "audit" in runtime.extras):
        if "audit" not in runtime.extras:
            runtime.extras["audit"] = AuditClient(
                settings.audit_url, runtime.service_token, transport=runtime.peer("audit")
            )
        runtime.extras["reconcile_task"] = asyncio.create_task(
            keep_reconciling(
                runtime, runtime.extras["audit"].present, settings.reconcile_interval_s, settings.reconcile_grace_s
            ),
            name="records-reconcile",
        )
    if settings.start_consumers and settings.retention_interval_s > 0:
        runtime.extras["retention_task"] = asyncio.create_task(
            retention_loop(runtime, settings.retention_interval_s), name="records-retention"
        )
    if settings.start_consumers:
        reviewer = AbsenceReviewer(runtime, settings.chronic_absence_threshold, settings.chronic_absence_min_days)
        reviewer.start()
        runtime.extras["absence_reviewer"] = reviewer
        waiting = WaitingMarks(runtime, settings.unknown_student_wait_s)
        waiting.start()
        runtime.extras["waiting_marks"] = waiting


async def on_stop(runtime: Runtime) -> None:
    reviewer = runtime.extras.get("absence_reviewer")
    if isinstance(reviewer, AbsenceReviewer):
        await reviewer.stop()
    waiting = runtime.extras.get("waiting_marks")
    if isinstance(waiting, WaitingMarks):
        await waiting.stop()
    for name in ("reconcile_task", "retention_task"):
        task = runtime.extras.pop(name, None)
        if isinstance(task, asyncio.Task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    audit = runtime.extras.get("audit")
    if isinstance(audit, AuditClient):
        await audit.aclose()
    client = runtime.extras.get("consent")
    if isinstance(client, ConsentClient):
        await client.aclose()


SERVICE = ServiceSpec(
    name="records",
    settings=RecordsSettings,
    routers=(api.router, oneroster_api.router),
    consumers=CONSUMERS,
    migrations=Path(__file__).parent / "migrations",
    description="Each student's current record per district, encrypted, served by role and agreement.",
    uses_cipher=True,
    database_roles=(store.APP_ROLE,),
    sends_notices=True,
    on_start=on_start,
    on_stop=on_stop,
    openapi_tags=(
        {"name": "records", "description": "Student records by role; amendments (FERPA 99.20/99.21)"},
        {"name": "oneroster", "description": "OneRoster 1.2 rostering subset for vendors, cut to the agreement"},
        {"name": "internal", "description": "Service-to-service calls of the transfer flow"},
    ),
)
