"""Settings of the audit service (environment prefix HOMEROOM_AUDIT_)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from homeroom.config import ServiceSettings

WRITER_ROLE = "homeroom_audit_writer"  # created by migrations/001; SELECT and INSERT only


class AuditSettings(ServiceSettings):
    service_name: str = "audit"
    # The Ed25519 key that signs tree heads and entry receipts (PKCS#8 PEM, mode 0600).
    # Default: <secrets_dir>/audit-signing.key, created on first start outside production.
    signing_key_file: Path | None = None
    # Public keys (``<key id>.pem``) of retired signing keys: what they signed still verifies.
    # Default: <secrets_dir>/audit-retired-keys/. `homeroom audit rotate-key` adds to it.
    retired_keys_dir: Path | None = None
    head_interval_s: float = 10.0  # sign a head this often when the log has grown
    head_max_age_s: float = 3600.0  # and at least this often even when it has not
    verify_interval_s: float = 3600.0  # verify the whole stored log this often (0: only on request)
    # Every write runs `SET LOCAL ROLE` to this role (SELECT and INSERT only on the log's
    # tables); empty to write as the connecting role.
    writer_role: str = WRITER_ROLE
    # Checkpoints (c2sp.org/tlog-checkpoint) and the witness that cosigns them
    # (services/audit/application/witnessing.py). Empty witness_url: heads are signed but not witnessed.
    checkpoint_origin: str = "homeroom.local/audit-log"
    witness_url: str = ""
    witness_name: str = "witness.homeroom.local/w1"
    witness_public_key_file: Path | None = None  # the witness's Ed25519 public key (PEM), pinned
    page_size_max: int = 1000
    export_batch: int = 2000

    production_secret_files: ClassVar[Mapping[str, str]] = {"signing_key_file": "the log's signing key"}

    @property
    def signing_key_path(self) -> Path:
        return self.secret_path(self.signing_key_file, "audit-signing.key")

    @property
    def retired_keys_path(self) -> Path:
        return self.secret_path(self.retired_keys_dir, "audit-retired-keys")
