"""Secret files a service declares: production refuses to start without them, development defaults them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.audit.settings import AuditSettings
from services.incidents.settings import IncidentsSettings


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (AuditSettings, "set HOMEROOM_AUDIT_SIGNING_KEY_FILE (the log's signing key)"),
        (IncidentsSettings, "set HOMEROOM_INCIDENTS_SIGNING_KEY_FILE (the scope signing key)"),
    ],
)
def test_production_refuses_a_service_without_its_signing_key(
    cls: type[AuditSettings] | type[IncidentsSettings], message: str, tmp_path: Path
) -> None:
    kernel: dict[str, Any] = {"pseudonym_key_file": tmp_path / "p.key", "keyring_file": tmp_path / "k.json"}
    with pytest.raises(ValueError, match="HOMEROOM_PSEUDONYM_KEY_FILE, HOMEROOM_KEYRING_FILE"):
        cls(environment="production").require_production_secrets()
    with pytest.raises(ValueError) as refused:
        cls(environment="production", **kernel).require_production_secrets()
    assert str(refused.value) == f"production start refused: {message}"
    cls(environment="production", signing_key_file=tmp_path / "s.key", **kernel).require_production_secrets()
    cls(environment="development").require_production_secrets()


def test_secret_files_default_to_the_secrets_directory(tmp_path: Path) -> None:
    audit = AuditSettings(secrets_dir=tmp_path)
    assert (audit.signing_key_path, audit.retired_keys_path, audit.pseudonym_key_path) == (
        tmp_path / "audit-signing.key",
        tmp_path / "audit-retired-keys",
        tmp_path / "pseudonym.key",
    )
    assert IncidentsSettings(secrets_dir=tmp_path, signing_key_file=tmp_path / "own.key").signing_key_path == (
        tmp_path / "own.key"
    )
