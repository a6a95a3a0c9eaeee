"""Settings of the consent service (environment prefix HOMEROOM_CONSENT_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from homeroom.config import ServiceSettings


class ConsentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEROOM_CONSENT_", extra="ignore")

    service_name: str = "consent"
    port: int = 8003
    # How often agreements past their end date are ended (and unfinished shredding finished).
    # The check also runs once at start.
    expiry_check_interval_s: float = Field(default=3600.0, gt=0)
    # Days after an agreement ends within which the recipient certifies destruction or return.
    certification_due_days: int = Field(default=30, ge=1, le=365)
