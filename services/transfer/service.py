"""The transfer service as the kernel runs it: `homeroom serve transfer`."""

from __future__ import annotations

from pathlib import Path

from homeroom.service import ServiceSpec
from services.transfer.settings import TransferSettings

SERVICE = ServiceSpec(
    name="transfer",
    settings=TransferSettings,
    migrations=Path(__file__).parent / "migrations",
    description="A student's record follows them to a new district: a persisted case per transfer.",
    uses_cipher=True,
)
