"""The reports service as the kernel runs it: `homeroom serve reports`.

It holds no key and reads no sealed value (`uses_cipher=False`): the tally reads the
pseudonymised events and the coarse group codes of groups.v1 only (docs/services/reports.md)."""

from __future__ import annotations

from pathlib import Path

from homeroom.service import Runtime, ServiceSpec
from services.reports.api import public, router
from services.reports.consumers import TallyStream, reference_consumer
from services.reports.settings import ReportsSettings
from services.reports.state import STATE_KEY, Clock, ReportsState, ReportTopics, state_of, wall_clock


def build_spec(suffix: str = "", clock: Clock = wall_clock) -> ServiceSpec:
    """The service; tests pass a topic suffix (their own copies of the topics) and a clock."""
    topics = ReportTopics(suffix)

    async def on_start(runtime: Runtime) -> None:
        settings = runtime.settings
        assert isinstance(settings, ReportsSettings)
        state = ReportsState(settings=settings, topics=topics, clock=clock)
        runtime.extras[STATE_KEY] = state
        if settings.start_consumers:
            stream = TallyStream(runtime, topics, settings, clock)
            state.stream, state.tally, state.freshness = stream, stream.tally, stream.freshness
            await stream.start()

    async def on_stop(runtime: Runtime) -> None:
        state = state_of(runtime)
        if state.stream is not None:
            await state.stream.stop()

    return ServiceSpec(
        name="reports",
        settings=ReportsSettings,
        routers=(public, router),
        consumers=(reference_consumer(topics),),
        migrations=Path(__file__).parent / "migrations",
        description="Statewide comparisons from pseudonymised events: published with small cells suppressed.",
        uses_cipher=False,
        gzip_minimum_size=2048,  # a statewide snapshot is tens of MB of JSON; about 1/20 gzipped
        on_start=on_start,
        on_stop=on_stop,
        openapi_tags=(
            {"name": "public statistics", "description": "Published statewide snapshots: anyone, JSON or CSV"},
            {"name": "statistics", "description": "Publishing, and a district's own numbers"},
        ),
    )


SERVICE = build_spec()
