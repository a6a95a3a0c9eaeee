"""The audit service as the kernel runs it: `homeroom serve audit`."""

from __future__ import annotations

from pathlib import Path

from homeroom.service import ServiceSpec
from services.audit.settings import AuditSettings

SERVICE = ServiceSpec(
    name="audit",
    settings=AuditSettings,
    migrations=Path(__file__).parent / "migrations",
    description="The append-only, verifiable log of every disclosure (RFC 9162 Merkle tree).",
    uses_cipher=False,
)
