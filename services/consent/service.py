"""The consent service as the kernel runs it: `homeroom serve consent`."""

from __future__ import annotations

from pathlib import Path

from homeroom.service import ServiceSpec
from services.consent.api import ROUTERS
from services.consent.application import start_expiry_checks, stop_expiry_checks
from services.consent.consumers import CONSUMERS
from services.consent.settings import ConsentSettings

SERVICE = ServiceSpec(
    name="consent",
    settings=ConsentSettings,
    routers=ROUTERS,
    migrations=Path(__file__).parent / "migrations",
    consumers=CONSUMERS,
    sends_notices=True,
    description="Data-sharing agreements, parents' choices and the disclosure decision point.",
    uses_cipher=True,
    on_start=start_expiry_checks,
    on_stop=stop_expiry_checks,
    openapi_tags=(
        {"name": "agreements", "description": "The registry of data-sharing agreements and the Ed Law 2-d import."},
        {"name": "public", "description": "Read without signing in: the active agreements and what they receive."},
        {"name": "decisions", "description": "The decision point every disclosure passes."},
        {"name": "parents' choices", "description": "Directory opt-outs and written consents."},
    ),
)
