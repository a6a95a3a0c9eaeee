"""docker-compose.yml against the Compose Specification and against the code it runs."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from homeroom.auth import DEV_ISSUER, AuthSettings
from homeroom.config import KafkaSettings
from homeroom.registry import SERVICES, load_spec
from tests.ops.files import COMPOSE, ROOT, compose, env_names, environment, homeroom_services, interpolate

SCHEMA = Path(__file__).with_name("compose-spec.json")
SCHEMA_SHA256 = "bc50c2d79102aed8df21b3a13e56c9396c7a06da6cff5ce37629f2ee7eb41735"


def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(document: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(document)]


def test_vendored_schema_is_the_published_file() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    assert _errors(compose()) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "records", "healthcheck", "interval"), 15),  # must be a duration string
        (("services", "records", "depends_on", "postgres", "condition"), "service_ready"),  # not an allowed value
        (("services", "records", "restart_policy"), "always"),  # not a service property
        (("services", "ingest", "ports"), "8001:8001"),  # must be a list
    ],
)
def test_schema_check_catches_a_broken_compose_file(path: tuple[str, ...], value: object) -> None:
    broken = copy.deepcopy(compose())
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert _errors(broken), f"setting {'.'.join(path)} = {value!r} should be invalid"


def test_every_homeroom_container_serves_a_known_service_under_its_own_name() -> None:
    data = compose()
    served = homeroom_services(data)
    assert set(served) == set(SERVICES), "compose must run exactly the `homeroom serve` targets"
    for name, service in served.items():
        assert service["command"] == ["serve", name]
        load_spec(name)  # importable: `homeroom serve <name>` would start it
    image = {svc["image"] for svc in served.values()}
    assert len(image) == 1, f"all five services run one image, found {image}"
    for name, service in data["services"].items():
        if service.get("image") in image:
            assert name in served or name in ONE_OFF, f"{name} runs the Homeroom image without `serve <name>`"


# Containers of the Homeroom image that are not services: (name, command).
ONE_OFF = {"migrate": ["migrate"], "witness": ["witness", "serve"]}


def test_services_log_in_as_their_own_role_and_only_the_migrate_job_holds_the_owner() -> None:
    data = compose()
    job = data["services"]["migrate"]
    assert job["command"] == ONE_OFF["migrate"]
    job_env = environment(job)
    assert urlsplit(job_env["HOMEROOM_MIGRATION_DATABASE_URL"]).username == "homeroom_owner"
    assert {s if isinstance(s, str) else s["source"] for s in job["secrets"]} == {"pgpass_owner"}
    superuser = environment(data["services"]["postgres"])["POSTGRES_USER"]
    for name, service in homeroom_services(data).items():
        env = environment(service)
        mounted = {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}
        assert "pgpass_owner" not in mounted, name
        assert "HOMEROOM_MIGRATION_DATABASE_URL" not in env, name
        if name == "portal":
            assert not any(m.startswith("pgpass") for m in mounted), "the portal has no database"
            continue
        user = urlsplit(env["HOMEROOM_DATABASE_URL"]).username
        assert user == f"homeroom_{name}" != superuser, name
        assert env["HOMEROOM_MIGRATE_ON_START"] == "false", name
        assert env["PGPASSFILE"] == f"/run/secrets/pgpass_{name}" and f"pgpass_{name}" in mounted, name
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def _reads(name: str) -> set[str]:
    """What the service `name` reads from its environment: its settings, the bus's and the issuer's."""
    return env_names(load_spec(name).settings) | env_names(KafkaSettings) | env_names(AuthSettings)


def test_env_names_follow_prefixes_and_aliases() -> None:
    records = env_names(load_spec("records").settings)
    assert "HOMEROOM_RECORDS_PORT" in records
    assert "HOMEROOM_DATABASE_URL" in records  # an alias, not HOMEROOM_RECORDS_SERVER_URL
    assert "HOMEROOM_RECORDS_SERVER_URL" not in records
    assert "HOMEROOM_INGEST_PORT" not in records
    assert "KAFKA_BOOTSTRAP_SERVERS" in env_names(KafkaSettings)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_homeroom_and_kafka_variable_is_read_by_the_service(name: str) -> None:
    env = environment(homeroom_services(compose())[name])
    ours = {k for k in env if k.startswith(("HOMEROOM_", "KAFKA_"))}
    unread = sorted(ours - _reads(name))
    assert unread == [], f"{name}: compose sets variables no settings class of the service reads: {unread}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_compose_environment_gives_valid_production_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment(homeroom_services(compose())[name])
    for key in [k for k in os.environ if k.startswith(("HOMEROOM_", "KAFKA_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = load_spec(name)
    settings = spec.settings()
    assert settings.environment == "production"
    settings.require_production_secrets()  # raises when a production secret is missing
    assert settings.host == "0.0.0.0"
    if name != "portal":  # the portal has no database of its own
        assert settings.database_url and settings.keys_database_url
    kafka = KafkaSettings()
    assert kafka.bootstrap_servers
    auth = AuthSettings()
    assert auth.environment == "production"
    assert auth.issuer != DEV_ISSUER
    assert auth.jwks_file is not None or (auth.jwks_url or "").startswith("https://")


def test_the_production_check_is_real(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings check above would fail on an environment without the secret files."""
    monkeypatch.setenv("HOMEROOM_ENVIRONMENT", "production")
    monkeypatch.delenv("HOMEROOM_PSEUDONYM_KEY_FILE", raising=False)
    with pytest.raises(ValueError, match="HOMEROOM_PSEUDONYM_KEY_FILE"):
        load_spec("records").settings().require_production_secrets()


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).split("/")[0].rsplit(":", 1)[-1]))
    return ports


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_ports_match_the_settings_defaults(name: str) -> None:
    service = homeroom_services(compose())[name]
    default = load_spec(name).settings.model_fields["port"].default
    assert default == SERVICES[name][1], f"{name}: settings default {default} != stack port {SERVICES[name][1]}"
    env = environment(service)
    assert int(env.get(f"HOMEROOM_{name.upper()}_PORT", default)) == default
    assert _container_ports(service) == {default}
    test = " ".join(service["healthcheck"]["test"])
    # /readyz: healthy means serving with its database and bus reachable, and each probe
    # refreshes homeroom_service_ready, which the HomeroomServiceNotReady alert reads.
    assert re.search(rf"http://127\.0\.0\.1:{default}/readyz", test), f"{name}: health check is not /readyz:{default}"


def test_service_urls_point_at_the_right_container_and_port() -> None:
    served = homeroom_services(compose())
    seen = 0
    for name, service in served.items():
        for key, value in environment(service).items():
            match = re.fullmatch(r"HOMEROOM_(\w+)_URL", key)
            if match is None or key in ("HOMEROOM_DATABASE_URL", "HOMEROOM_KEYS_DATABASE_URL"):
                continue
            if key == "HOMEROOM_AUDIT_WITNESS_URL":  # the witness: not a service (homeroom/witness.py)
                assert urlsplit(value).hostname == "witness"
                continue
            target = match.group(1).lower()
            assert target in SERVICES, f"{name}: {key} names no service"
            url = urlsplit(value)
            assert (url.hostname, url.port) == (target, SERVICES[target][1]), f"{name}: {key}={value}"
            seen += 1
    assert seen >= 3  # records→consent, transfer→consent and records


def test_secrets_come_from_files_and_every_file_setting_has_its_secret() -> None:
    data = compose()
    defined = data["secrets"]
    for secret in defined.values():
        assert set(secret) == {"file"} and secret["file"].startswith("./deploy/secrets/")
    for name, service in data["services"].items():
        mounted = {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}
        assert mounted <= set(defined), f"{name} mounts an undefined secret"
        for key, value in environment(service).items():
            if value.startswith("/run/secrets/"):
                assert value.removeprefix("/run/secrets/") in mounted, f"{name}: {key} points at an unmounted secret"
            if re.search(r"PASSWORD|SECRET|TOKEN|PRIVATE", key) and not key.endswith(("_FILE", "FILE")):
                pytest.fail(f"{name}: {key} holds a secret in the environment; use a *_FILE secret")


def test_audit_signing_key_is_a_secret_of_audit_only() -> None:
    served = homeroom_services(compose())
    for name, service in served.items():
        mounted = {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}
        assert ("audit_signing_key" in mounted) == (name == "audit")


def test_infrastructure_images_are_pinned_and_of_the_right_kind() -> None:
    services = compose()["services"]
    for name, service in services.items():
        image = interpolate(service["image"])
        _repo, _, tag = image.partition(":")
        assert tag and tag != "latest", f"{name}: image {image} is not pinned to a version"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    kafka_env = environment(services["kafka"])
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"], "Kafka runs in KRaft mode (no ZooKeeper)"
    assert not any("zookeeper" in s.get("image", "") for s in services.values())
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    major = int(re.match(r"postgres:(\d+)", services["postgres"]["image"]).group(1))  # type: ignore[union-attr]
    assert major >= 16


def test_topic_job_runs_before_the_services_and_mounts_the_script() -> None:
    data = compose()
    job = data["services"]["kafka-topics"]
    assert any(str(v).startswith("./deploy/kafka/create-topics.sh:") for v in job["volumes"])
    assert "create-topics.sh" in " ".join(job["entrypoint"])
    for name, service in homeroom_services(data).items():
        assert service["depends_on"]["kafka-topics"]["condition"] == "service_completed_successfully", name
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name


def test_bind_mounts_exist_in_the_repository() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"


def test_every_homeroom_service_has_a_health_check_and_runs_as_non_root() -> None:
    for name, service in homeroom_services(compose()).items():
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        assert service.get("user", "10001") not in ("root", "0"), name


def test_compose_file_names_its_checks() -> None:
    assert "tests/ops" in COMPOSE.read_text()
