"""The records service as the kernel runs it: `homeroom serve records`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from homeroom.contracts.clients import AuditClient
from homeroom.service import ServiceSpec
from homeroom.tasks import cancel
from services.records import api, oneroster_api, store
from services.records.absence import AbsenceReviewer
from services.records.application.waiting_marks import WaitingMarks
from services.records.consumers import CONSUMERS
from services.records.destruction import retention_loop
from services.records.reconcile import keep_reconciling
from services.records.settings import RecordsSettings
from services.records.state import RecordsRuntime, RecordsState, consent_client


@contextlib.asynccontextmanager
async def lifecycle(runtime: RecordsRuntime) -> AsyncIterator[RecordsState]:
    """The consent client; the audit client and reconciliation where audit is configured (or a
    test gave it as a peer); retention, the absence reviewer and the waiting marks wherever
    consumers run. Everything started is stopped on the way out, in reverse."""
    settings = runtime.settings
    state = RecordsState(consent=consent_client(runtime))
    try:
        audit_transport = runtime.peer("audit")
        if settings.reconcile_interval_s > 0 and (settings.audit_url or audit_transport is not None):
            state.audit = AuditClient(
                settings.audit_url or "http://audit.test", runtime.service_token, transport=audit_transport
            )
            reconciling = keep_reconciling(
                runtime, state.audit.present, settings.reconcile_interval_s, settings.reconcile_grace_s
            )
            state.tasks.append(asyncio.create_task(reconciling, name="records-reconcile"))
        if settings.start_consumers and settings.retention_interval_s > 0:
            retention = retention_loop(runtime, settings.retention_interval_s)
            state.tasks.append(asyncio.create_task(retention, name="records-retention"))
        if settings.start_consumers:
            state.absence_reviewer = AbsenceReviewer(
                runtime, settings.chronic_absence_threshold, settings.chronic_absence_min_days
            )
            state.absence_reviewer.start()
            state.waiting_marks = WaitingMarks(runtime, settings.unknown_student_wait_s)
            state.waiting_marks.start()
        yield state
    finally:
        for loop in (state.waiting_marks, state.absence_reviewer):
            if loop is not None:
                await loop.stop()
        for task in reversed(state.tasks):
            await cancel(task)
        if state.audit is not None:
            await state.audit.aclose()
        await state.consent.aclose()


SERVICE = ServiceSpec(
    settings=RecordsSettings,
    routers=(api.router, oneroster_api.router),
    consumers=CONSUMERS,
    description="Each student's current record per district, encrypted, served by role and agreement.",
    uses_cipher=True,
    database_roles=(store.APP_ROLE,),
    sends_notices=True,
    lifecycle=lifecycle,
    openapi_tags=api.TAGS,
)
