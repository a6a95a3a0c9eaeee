"""The consent service as the kernel runs it: `homeroom serve consent`."""

from __future__ import annotations

from pathlib import Path

from homeroom.service import ServiceSpec
from services.consent.settings import ConsentSettings

SERVICE = ServiceSpec(
    name="consent",
    settings=ConsentSettings,
    migrations=Path(__file__).parent / "migrations",
    description="Data-sharing agreements, parents' choices and the disclosure decision point.",
    uses_cipher=True,
)
