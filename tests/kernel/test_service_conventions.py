"""What a service declares once: its name (the settings' `service_name`), from which the
kernel derives its environment prefix, its conventional port, its spec's name and its
migrations folder, unless the service declares them itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import SettingsConfigDict

from homeroom.config import ServiceSettings
from homeroom.peers import PORTS
from homeroom.service import ServiceSpec
from services.audit.settings import AuditSettings


class _Records(ServiceSettings):
    service_name: str = "records"


class _Unlisted(ServiceSettings):
    service_name: str = "gradebook"


class _Declared(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEROOM_ELSEWHERE_")
    service_name: str = "records"
    port: int = 9999


def test_the_service_name_gives_the_prefix_and_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _Records.model_config.get("env_prefix") == "HOMEROOM_RECORDS_"
    assert _Records.model_fields["port"].default == PORTS["records"] == _Records().port
    monkeypatch.setenv("HOMEROOM_RECORDS_PORT", "9902")
    monkeypatch.setenv("HOMEROOM_RECORDS_DB_POOL_SIZE", "3")
    assert (_Records().port, _Records().db_pool_size) == (9902, 3)
    assert _Records(port=0).port == 0  # given, even as 0, it is what was given
    assert _Unlisted.model_config.get("env_prefix") == "HOMEROOM_GRADEBOOK_" and _Unlisted().port == 0


def test_what_a_service_declares_itself_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEROOM_RECORDS_DB_POOL_SIZE", "3")
    monkeypatch.setenv("HOMEROOM_ELSEWHERE_DB_POOL_SIZE", "4")
    assert _Declared.model_config.get("env_prefix") == "HOMEROOM_ELSEWHERE_"
    assert (_Declared().port, _Declared().db_pool_size) == (9999, 4)
    assert ServiceSettings.model_config.get("env_prefix") == "HOMEROOM_SERVICE_" and ServiceSettings().port == 0


def test_a_spec_takes_its_name_from_the_settings_and_its_migrations_from_beside_them(tmp_path: Path) -> None:
    spec = ServiceSpec(settings=AuditSettings)
    assert spec.name == "audit"
    assert spec.migrations == Path(__file__).parents[2] / "services" / "audit" / "migrations"
    # a settings class with no migrations folder beside its module: no database of its own
    assert ServiceSpec(settings=_Records).migrations is None
    declared = ServiceSpec(settings=AuditSettings, name="audit-copy", migrations=tmp_path)
    assert (declared.name, declared.migrations) == ("audit-copy", tmp_path)
