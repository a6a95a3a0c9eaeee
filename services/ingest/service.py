"""The ingest service as the kernel runs it: `homeroom serve ingest`."""

from __future__ import annotations

from pathlib import Path

from homeroom.service import Runtime, ServiceSpec
from services.ingest.api import ingest_settings, router
from services.ingest.pipeline import Ingestor
from services.ingest.settings import IngestSettings


async def _start(runtime: Runtime) -> None:
    settings = ingest_settings(runtime)
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    ingestor = Ingestor(runtime.pool, runtime.require_cipher(), runtime.pseudonymizer, settings)
    runtime.extras["ingestor"] = ingestor
    await ingestor.resume()


async def _stop(runtime: Runtime) -> None:
    ingestor = runtime.extras.get("ingestor")
    if isinstance(ingestor, Ingestor):
        await ingestor.stop()


SERVICE = ServiceSpec(
    name="ingest",
    settings=IngestSettings,
    routers=[router],
    migrations=Path(__file__).parent / "migrations",
    description="Districts publish enrollment, attendance and discipline data; every submission gets a report.",
    uses_cipher=True,
    on_start=_start,
    on_stop=_stop,
    openapi_tags=[{"name": "ingest", "description": "Uploads, submission reports and the organisation registry"}],
)
