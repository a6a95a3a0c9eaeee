"""Settings of the incidents service (environment prefix HOMEROOM_INCIDENTS_)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import AliasChoices, Field

from homeroom.config import ServiceSettings
from homeroom.peers import peer_url


class IncidentsSettings(ServiceSettings):
    service_name: str = "incidents"  # HOMEROOM_INCIDENTS_ and its conventional port (ServiceSettings)

    # Peers (the stack sets these; docs/contracts.md): audit proves the scope, consent says
    # which districts an agreement covers and whether it is suspended, records gives a
    # family's letter language.
    audit_url: str = peer_url("audit")
    consent_url: str = peer_url("consent")
    records_url: str = peer_url("records")
    peer_timeout_s: float = 15.0
    scope_timeout_s: float = 3600.0  # streaming a million disclosures takes a while

    # The key that signs frozen scopes (Ed25519 PKCS#8 PEM, mode 0600; a C2SP signed note by
    # `signer_name`). Default <secrets_dir>/incidents-signing.key, created outside production.
    signing_key_file: Path | None = None
    signer_name: str = "homeroom.local/incidents"
    # Pinned keys to check what audit sends against (its /v1/keys answer when unset) and the
    # witness's key (PEM); when the witness key is set, an unwitnessed head is refused.
    audit_keys_file: Path | None = None
    witness_name: str = Field(
        default="witness.homeroom.local/w1",
        validation_alias=AliasChoices("HOMEROOM_AUDIT_WITNESS_NAME", "witness_name"),
    )
    witness_public_key_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("HOMEROOM_AUDIT_WITNESS_PUBLIC_KEY_FILE", "witness_public_key_file"),
    )

    # Who families contact when an incident names nobody else, and the CPO's notice address
    # (`cpo:<id>` in the notice address book).
    default_contact: str = "the district's data privacy officer"
    cpo_recipient: str = "nysed-cpo"

    bundle_chunk_bytes: int = 4 * 1024 * 1024
    clock_refresh_s: float = 15.0  # how often the clocks' metrics are refreshed from the database

    production_secret_files: ClassVar[Mapping[str, str]] = {"signing_key_file": "the scope signing key"}

    @property
    def signing_key_path(self) -> Path:
        return self.secret_path(self.signing_key_file, "incidents-signing.key")
