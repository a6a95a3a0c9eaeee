"""What a running records service holds, typed: one object, reached by routes and consumers alike.

`RecordsState` is built by the service's lifecycle (`service.py`) and is `runtime.state`:
the consent client every release asks, the audit client reconciliation asks, and the
background work (absence reviewer, waiting marks, reconciliation and retention tasks) the
lifecycle started and stops. `RecordsRuntime` is the kernel's runtime typed with records'
settings and state; `RuntimeDep` hands it to a route."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated

from fastapi import Depends, Request

from homeroom.contracts.clients import AuditClient, ConsentClient
from homeroom.service import Runtime
from services.records.absence import AbsenceReviewer
from services.records.application.waiting_marks import WaitingMarks
from services.records.settings import RecordsSettings


@dataclass(slots=True)
class RecordsState:
    consent: ConsentClient
    audit: AuditClient | None = None  # reconciliation's lookup (None: no audit configured)
    absence_reviewer: AbsenceReviewer | None = None  # where consumers run
    waiting_marks: WaitingMarks | None = None  # where consumers run
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # reconciliation, retention


RecordsRuntime = Runtime[RecordsSettings, RecordsState]


def consent_client(runtime: RecordsRuntime) -> ConsentClient:
    """The one place records builds its consent client: to the configured URL, or to the peer a
    test gave (`peers={"consent": ...}`). Neither: every release fails closed (503)."""
    settings, transport = runtime.settings, runtime.peer("consent")
    return ConsentClient(
        settings.consent_url, runtime.service_token, transport=transport, timeout_s=settings.consent_timeout_s
    )


def today(runtime: Runtime) -> date:
    """Today by the runtime's clock: who is enrolled now, what a term covers."""
    return runtime.clock().date()


async def get_runtime(request: Request) -> RecordsRuntime:
    runtime: RecordsRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[RecordsRuntime, Depends(get_runtime)]
