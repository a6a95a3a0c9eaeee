"""Settings of the consent service (environment prefix HOMEROOM_CONSENT_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from homeroom.config import ServiceSettings


class ConsentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEROOM_CONSENT_", extra="ignore")

    service_name: str = "consent"
    port: int = 8003
