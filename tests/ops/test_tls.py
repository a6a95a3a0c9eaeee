"""deploy/tls/compose.tls.yml: every connection encrypted, with settings the code reads."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest

from homeroom.config import KafkaSettings
from homeroom.registry import SERVICES, load_spec
from tests.ops.files import (
    ROOT,
    TLS_OVERLAY,
    compose,
    env_names,
    environment,
    homeroom_services,
    interpolate,
    tls_overlay,
)

TLS = ROOT / "deploy" / "tls"
PUBLIC_HOST = "homeroom.localhost"


def _merged_environment(name: str) -> dict[str, str]:
    """The service's environment with the overlay applied, as compose merges mappings."""
    base = environment(homeroom_services(compose())[name])
    return {**base, **environment(tls_overlay()["services"][name])}


def test_overlay_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((Path(__file__).with_name("compose-spec.json")).read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(tls_overlay())]
    assert errors == []


def test_overlay_covers_every_homeroom_service_and_unpublishes_its_plain_port() -> None:
    services = tls_overlay()["services"]
    for name in SERVICES:
        assert services[name]["ports"] == [], f"{name} still publishes plain HTTP"
    assert "!reset []" in TLS_OVERLAY.read_text()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_overlay_variables_are_read_by_the_service(name: str) -> None:
    env = environment(tls_overlay()["services"][name])
    reads = env_names(load_spec(name).settings) | env_names(KafkaSettings)
    unread = sorted(k for k in env if k.startswith(("HOMEROOM_", "KAFKA_")) and k not in reads)
    assert unread == []


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_services_connect_to_kafka_and_postgres_over_verified_tls(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith(("HOMEROOM_", "KAFKA_"))]:
        monkeypatch.delenv(key)
    for key, value in _merged_environment(name).items():
        monkeypatch.setenv(key, value)
    kafka = KafkaSettings()
    assert kafka.security_protocol in ("SSL", "SASL_SSL")
    assert kafka.ssl_cafile and kafka.ssl_certfile and kafka.ssl_keyfile
    settings = load_spec(name).settings()
    if name == "portal":  # no database of its own
        assert not settings.database_url
        return
    assert urlsplit(settings.database_url).username == f"homeroom_{name}"  # its own login, under TLS too
    for url in (settings.database_url, settings.keys_database_url):
        query = parse_qs(urlsplit(url).query)
        assert query["sslmode"] == ["verify-full"], url
        assert query["sslrootcert"] == ["/run/secrets/tls_ca"], url


def _caddy_routes() -> dict[int, tuple[str, int]]:
    text = (TLS / "Caddyfile").read_text()
    routes: dict[int, tuple[str, int]] = {}
    for port, body in re.findall(r"^:(\d+) \{(.*?)^\}", text, flags=re.S | re.M):
        assert "import homeroom_tls" in body, f"port {port} serves without TLS"
        host, target = re.search(r"reverse_proxy (\w+):(\d+)", body).groups()  # type: ignore[union-attr]
        routes[int(port)] = (host, int(target))
    return routes


def test_gateway_routes_each_https_port_to_one_service() -> None:
    routes = _caddy_routes()
    assert sorted(routes.values()) == sorted((name, port) for name, (_, port) in SERVICES.items())
    gateway = tls_overlay()["services"]["gateway"]
    published = {int(str(p).split(":")[-1]) for p in gateway["ports"]}
    assert published == set(routes)


def test_service_urls_go_through_the_gateway_over_https() -> None:
    routes = _caddy_routes()
    gateway = tls_overlay()["services"]["gateway"]
    aliases = {interpolate(a) for a in gateway["networks"]["homeroom"]["aliases"]}
    seen = 0
    for name in SERVICES:
        for key, value in _merged_environment(name).items():
            match = re.fullmatch(r"HOMEROOM_(\w+)_URL", key)
            if match is None or "DATABASE" in key or "WITNESS" in key:  # the witness is no service
                continue
            url = urlsplit(value)
            assert url.scheme == "https", f"{name}: {key}={value}"
            assert url.hostname in aliases
            assert routes[url.port] == (match.group(1).lower(), SERVICES[match.group(1).lower()][1])  # type: ignore[index]
            seen += 1
    assert seen >= 3


def test_kafka_has_no_plaintext_client_listener_and_requires_client_certificates() -> None:
    kafka = environment(tls_overlay()["services"]["kafka"])
    assert all(listener.startswith("SSL://") for listener in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert "PLAINTEXT://" not in kafka["KAFKA_LISTENERS"]
    assert kafka["KAFKA_SSL_CLIENT_AUTH"] == "required"
    assert kafka["KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM"] == "https"


def test_postgres_accepts_only_tls_connections() -> None:
    postgres = tls_overlay()["services"]["postgres"]
    assert "ssl=on" in postgres["command"]
    lines = [
        line.split()
        for line in (TLS / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {fields[0] for fields in lines} <= {"local", "hostssl"}
    assert any(fields[0] == "hostssl" for fields in lines)


def _mounted(service: dict[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}


def test_every_secret_path_is_mounted_and_made_by_the_script() -> None:
    overlay = tls_overlay()
    script = (TLS / "make-certs.sh").read_text()
    for secret in overlay["secrets"].values():
        path = secret["file"]
        assert path.startswith("./deploy/tls/")
        stem = Path(path).stem
        assert stem in script, f"make-certs.sh does not make {path}"
    base = compose()["services"]
    for name, service in overlay["services"].items():
        mounted = _mounted(service) | _mounted(base.get(name, {}))
        values = [*environment(service).values(), *(service.get("command") or [])]
        for value in values:
            for secret in re.findall(r"/run/secrets/(\w+)", str(value)):
                assert secret in mounted, f"{name} refers to /run/secrets/{secret} without mounting it"
                assert secret in overlay["secrets"] or secret in compose()["secrets"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_certificate_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(TLS / "make-certs.sh")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
