"""The transfer service as the kernel runs it: `homeroom serve transfer`."""

from __future__ import annotations

from pathlib import Path

from homeroom.contracts.clients import ConsentClient, RecordsClient
from homeroom.service import Runtime, ServiceSpec
from services.transfer.api import router
from services.transfer.consumers import consumer_spec
from services.transfer.settings import TransferSettings
from services.transfer.worker import CONSENT_EXTRA, RECORDS_EXTRA, CaseWorker

WORKER_EXTRA = "transfer.worker"
_OWNED_EXTRA = "transfer.owned_clients"


async def on_start(runtime: Runtime) -> None:
    """Build the peer clients (unless already put in runtime.extras) and start the case worker."""
    settings = runtime.settings
    assert isinstance(settings, TransferSettings)
    owned: list[ConsentClient | RecordsClient] = []
    if CONSENT_EXTRA not in runtime.extras:
        consent = ConsentClient(
            settings.consent_url,
            runtime.service_token,
            transport=runtime.peer("consent"),
            timeout_s=settings.peer_timeout_s,
        )
        runtime.extras[CONSENT_EXTRA] = consent
        owned.append(consent)
    if RECORDS_EXTRA not in runtime.extras:
        records = RecordsClient(
            settings.records_url,
            runtime.service_token,
            transport=runtime.peer("records"),
            timeout_s=settings.peer_timeout_s,
        )
        runtime.extras[RECORDS_EXTRA] = records
        owned.append(records)
    runtime.extras[_OWNED_EXTRA] = owned
    worker = CaseWorker(runtime)
    runtime.extras[WORKER_EXTRA] = worker
    if settings.worker_enabled:
        worker.start()


async def on_stop(runtime: Runtime) -> None:
    worker = runtime.extras.get(WORKER_EXTRA)
    if isinstance(worker, CaseWorker):
        await worker.stop()
    for client in runtime.extras.get(_OWNED_EXTRA, []):
        await client.aclose()


SERVICE = ServiceSpec(
    name="transfer",
    settings=TransferSettings,
    routers=(router,),
    consumers=(consumer_spec(),),
    migrations=Path(__file__).parent / "migrations",
    description="A student's record follows them to a new district: a persisted case per transfer.",
    uses_cipher=True,
    sends_notices=True,
    on_start=on_start,
    on_stop=on_stop,
    openapi_tags=({"name": "transfers", "description": "Records-transfer cases between districts"},),
)
