"""Settings of the records service (environment prefix HOMEROOM_RECORDS_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from homeroom.config import ServiceSettings


class RecordsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEROOM_RECORDS_", extra="ignore")

    service_name: str = "records"
    port: int = 8002
