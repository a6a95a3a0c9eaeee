"""The records service as the kernel runs it: `homeroom serve records`."""

from __future__ import annotations

from pathlib import Path

from homeroom.service import ServiceSpec
from services.records.settings import RecordsSettings

SERVICE = ServiceSpec(
    name="records",
    settings=RecordsSettings,
    migrations=Path(__file__).parent / "migrations",
    description="Each student's current record per district, encrypted, served by role and agreement.",
    uses_cipher=True,
)
