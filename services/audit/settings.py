"""Settings of the audit service (environment prefix HOMEROOM_AUDIT_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from homeroom.config import ServiceSettings


class AuditSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEROOM_AUDIT_", extra="ignore")

    service_name: str = "audit"
    port: int = 8005
