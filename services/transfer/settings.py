"""Settings of the transfer service (environment prefix HOMEROOM_TRANSFER_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from homeroom.config import ServiceSettings


class TransferSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEROOM_TRANSFER_", extra="ignore")

    service_name: str = "transfer"
    port: int = 8004
