"""Settings of the ingest service (environment prefix HOMEROOM_INGEST_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from homeroom.config import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEROOM_INGEST_", extra="ignore")

    service_name: str = "ingest"
    port: int = 8001
