"""The ingest service as the kernel runs it: `homeroom serve ingest`."""

from __future__ import annotations

from pathlib import Path

from homeroom.service import ServiceSpec
from services.ingest.settings import IngestSettings

SERVICE = ServiceSpec(
    name="ingest",
    settings=IngestSettings,
    migrations=Path(__file__).parent / "migrations",
    description="Districts publish enrollment, attendance and discipline data; every submission gets a report.",
    uses_cipher=True,
)
