"""The reports service as the kernel runs it: `homeroom serve reports`.

It holds no key and reads no sealed value (`uses_cipher=False`): the tally reads the
pseudonymised events and the coarse group codes of groups.v1 only (docs/services/reports.md)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from homeroom.gc_tuning import young_threshold
from homeroom.service import ServiceSpec
from services.reports.api import TAGS, public, router
from services.reports.consumers import TallyStream, reference_consumer
from services.reports.settings import ReportsSettings
from services.reports.state import ReportsRuntime, ReportsState, ReportTopics


def build_spec(suffix: str = "") -> ServiceSpec[ReportsSettings, ReportsState]:
    """The service; tests pass a topic suffix (their own copies of the topics)."""
    topics = ReportTopics(suffix)

    @contextlib.asynccontextmanager
    async def lifecycle(runtime: ReportsRuntime) -> AsyncIterator[ReportsState]:
        """The state; the streaming tally wherever consumers run (stopped on the way out)."""
        settings = runtime.settings
        state = ReportsState(settings=settings, topics=topics, clock=runtime.clock)
        if not settings.start_consumers:
            yield state
            return
        stream = TallyStream(runtime, topics, settings, runtime.clock)
        state.tally, state.freshness = stream.tally, stream.freshness
        with young_threshold(settings.gc_young_threshold):  # while the tally runs (settings.py)
            await stream.start()
            try:
                yield state
            finally:
                await stream.stop()

    return ServiceSpec(
        settings=ReportsSettings,
        routers=(public, router),
        consumers=(reference_consumer(topics),),
        description="Statewide comparisons from pseudonymised events: published with small cells suppressed.",
        uses_cipher=False,
        gzip_minimum_size=2048,  # a statewide snapshot is tens of MB of JSON; about 1/20 gzipped
        lifecycle=lifecycle,
        openapi_tags=TAGS,
    )


SERVICE = build_spec()
