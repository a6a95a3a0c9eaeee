"""Settings of the consent service (environment prefix HOMEROOM_CONSENT_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from homeroom.config import ServiceSettings
from homeroom.peers import peer_url


class ConsentSettings(ServiceSettings):
    service_name: str = "consent"
    # How often agreements past their end date are ended (and unfinished shredding finished).
    # The check also runs once at start.
    expiry_check_interval_s: float = Field(default=3600.0, gt=0)
    # Days after an agreement ends within which the recipient certifies destruction or return.
    certification_due_days: int = Field(default=30, ge=1, le=365)

    # Guardianship (issue 24). Records answers which keys are a district's own students.
    records_url: str = peer_url("records")
    records_timeout_s: float = Field(default=10.0, gt=0)
    # Linking-code redemptions per person and per client address ("" switches the limit off).
    linking_rate_limit: str = "10/hour"
    # The key parent tokens are signed with: empty in development (the development issuer,
    # which the services trust); in production an Ed25519 key whose public half the services
    # trust as the guardianship issuer (HOMEROOM_AUTH_GUARDIAN_JWKS_FILE).
    guardian_key_file: Path | None = None
    guardian_token_ttl_s: int = Field(default=300, ge=30, le=3600)
    guardian_issuer: str = "homeroom-guardianship"
    guardian_audience: str = "homeroom"
    # The secret linking codes are kept under (an HMAC, never the code): a file of 32 random bytes,
    # base64, mode 0600. Empty in development: generated in the secrets directory on first use;
    # required in production.
    linking_code_key_file: Path | None = None
    # Python's young-generation collection threshold while the service runs (0: Python's
    # default, 700). A batch of 1,000 decisions keeps ~20,000 objects alive until its log row
    # is written; at 700 they are promoted, and a full pass over the facts in memory (20-250
    # ms at 100,000 students) follows every batch or two. 10,000 removes those passes from
    # the batch route but makes young passes take up to 7-11 ms, which single decisions then
    # wait for: off by default, for an instance that mostly answers batches
    # (docs/benchmarks.md, consent, round 29).
    gc_young_threshold: int = Field(default=0, ge=0)

    @property
    def linking_code_key_path(self) -> Path:
        return self.linking_code_key_file or self.secrets_dir / "linking-code.key"

    def require_production_secrets(self) -> None:
        super().require_production_secrets()
        if self.environment == "production" and self.linking_code_key_file is None:
            raise ValueError("production start refused: set HOMEROOM_CONSENT_LINKING_CODE_KEY_FILE")
