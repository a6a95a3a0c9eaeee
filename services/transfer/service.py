"""The transfer service as the kernel runs it: `homeroom serve transfer`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from homeroom.contracts.clients import ConsentClient, RecordsClient
from homeroom.service import ServiceSpec
from services.transfer.api import TAGS, router
from services.transfer.consumers import consumer_spec
from services.transfer.settings import TransferSettings
from services.transfer.state import TransferRuntime, TransferState
from services.transfer.worker import CaseWorker


@contextlib.asynccontextmanager
async def lifecycle(runtime: TransferRuntime) -> AsyncIterator[TransferState]:
    """The peers' clients (to the transports a test gave, else the network) and the case
    worker, started when enabled; stopped and closed on the way out."""
    settings = runtime.settings
    async with contextlib.AsyncExitStack() as stack:
        token, timeout_s = runtime.service_token, settings.peer_timeout_s
        consent = ConsentClient(settings.consent_url, token, timeout_s=timeout_s, transport=runtime.peer("consent"))
        stack.push_async_callback(consent.aclose)
        records = RecordsClient(settings.records_url, token, timeout_s=timeout_s, transport=runtime.peer("records"))
        stack.push_async_callback(records.aclose)
        state = TransferState(consent=consent, records=records)
        runtime.provide(state)  # the worker reads it through the runtime as soon as it runs
        state.worker = worker = CaseWorker(runtime)
        stack.push_async_callback(worker.stop)
        if settings.worker_enabled:
            worker.start()
        yield state


SERVICE = ServiceSpec(
    settings=TransferSettings,
    routers=(router,),
    consumers=(consumer_spec(),),
    description="A student's record follows them to a new district: a persisted case per transfer.",
    uses_cipher=True,
    sends_notices=True,
    lifecycle=lifecycle,
    openapi_tags=TAGS,
)
