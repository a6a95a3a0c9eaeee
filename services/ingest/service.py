"""The ingest service as the kernel runs it: `homeroom serve ingest`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from homeroom.gc_tuning import young_threshold
from homeroom.service import ServiceSpec
from services.ingest.api import TAGS, router
from services.ingest.application.jobs import Ingestor
from services.ingest.application.pipeline import RunParts
from services.ingest.settings import IngestSettings
from services.ingest.state import IngestRuntime, IngestState


@contextlib.asynccontextmanager
async def lifecycle(runtime: IngestRuntime) -> AsyncIterator[IngestState]:
    """The state; submissions left unfinished by the last run start again (cancelled on the way out).
    The collector's young generation is raised while the service runs (process-wide: submission
    chunks are what this process allocates)."""
    settings = runtime.settings
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    parts = RunParts(runtime.pool, runtime.require_cipher(), runtime.pseudonymizer, settings, lambda: runtime.clock())
    ingestor = Ingestor(parts)
    with young_threshold(settings.gc_young_threshold):
        try:
            await ingestor.resume()
            yield IngestState(settings=settings, pool=runtime.pool, ingestor=ingestor)
        finally:
            await ingestor.stop()


SERVICE: ServiceSpec[IngestSettings, IngestState] = ServiceSpec(
    settings=IngestSettings,
    routers=[router],
    description="Districts publish enrollment, attendance and discipline data; every submission gets a report.",
    uses_cipher=True,
    lifecycle=lifecycle,
    openapi_tags=TAGS,
)
