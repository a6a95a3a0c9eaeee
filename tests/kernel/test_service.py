"""The service runtime: every service starts as its own process with its own database,
migrations, health, metrics and JSON logs, configured only through the environment."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import ValidationError

from homeroom.config import ServiceSettings
from homeroom.registry import SERVICES, load_spec
from homeroom.service import running
from homeroom.storage import database_url
from homeroom_dev.infra import process
from homeroom_dev.infra.postgres import EmbeddedPostgres
from tests.harness import ServiceEnv

ROOT = Path(__file__).resolve().parents[2]


def test_every_service_has_the_same_shape() -> None:
    for name, (_, port) in SERVICES.items():
        spec = load_spec(name)
        assert spec.name == name
        settings = spec.settings()
        assert settings.service_name == name and settings.port == port
        if spec.app_factory is not None:  # no database of its own (the portal): no migrations
            assert spec.migrations is None and not spec.consumers, f"{name} keeps state without a database"
        else:
            assert spec.migrations is not None and spec.migrations.is_dir(), f"{name} has no migrations folder"
        package = ROOT / "services" / name
        for module in ("service.py", "settings.py"):
            assert (package / module).exists(), f"services/{name}/{module} is missing"


def test_an_unknown_service_is_refused_by_name() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "homeroom.cli", "serve", "gradebook"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 2
    assert "no service named 'gradebook'" in result.stderr


def test_settings_read_the_service_prefix_and_the_shared_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEROOM_DATABASE_URL", "postgresql://u@db.example:5432?sslmode=verify-full")
    monkeypatch.setenv("HOMEROOM_RECORDS_PORT", "9902")
    spec = load_spec("records")
    settings = spec.settings()
    assert settings.port == 9902
    # one database per service on the shared server, TLS options kept
    assert settings.database_url == "postgresql://u@db.example:5432/homeroom_records?sslmode=verify-full"
    assert load_spec("audit").settings().database_url.endswith("/homeroom_audit?sslmode=verify-full")
    monkeypatch.setenv("HOMEROOM_RECORDS_PORT", "not-a-port")
    with pytest.raises(ValidationError):
        spec.settings()


def test_production_refuses_to_start_on_generated_secrets() -> None:
    settings = ServiceSettings(environment="production")
    with pytest.raises(ValueError, match="HOMEROOM_PSEUDONYM_KEY_FILE"):
        settings.require_production_secrets()


async def test_a_service_without_a_bus_or_database_says_which_setting_is_missing(service_env: ServiceEnv) -> None:
    spec = load_spec("consent")
    settings = await service_env.settings_for(spec)
    from homeroom.config import KafkaSettings

    with pytest.raises(ValueError, match="KAFKA_BOOTSTRAP_SERVERS"):
        async with running(
            spec, settings, kafka=KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=""), auth=service_env.auth_settings
        ):
            pass
    no_db = spec.settings(secrets_dir=service_env.secrets_dir)
    with pytest.raises(ValueError, match="HOMEROOM_DATABASE_URL"):
        async with running(spec, no_db, kafka=service_env.kafka, auth=service_env.auth_settings):
            pass


async def test_serve_runs_a_service_as_its_own_process(
    postgres: EmbeddedPostgres, bootstrap: str, tmp_path: Path
) -> None:
    """`homeroom serve` on external servers named only by environment variables: it creates
    and migrates its own database, answers health, readiness and metrics, logs JSON, and
    stops cleanly on SIGTERM."""
    port = process.free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HOMEROOM_DATABASE_URL": postgres.server_url,
        "HOMEROOM_AUDIT_PORT": str(port),
        "HOMEROOM_SECRETS_DIR": str(tmp_path / "secrets"),
        "HOMEROOM_AUTH_DEV_KEY_FILE": str(tmp_path / "dev.pem"),
    }
    log = tmp_path / "audit.log"
    child = process.spawn(
        [sys.executable, "-m", "homeroom.cli", "serve", "audit"], log_path=log, env=env, death_signal=signal.SIGTERM
    )
    try:
        process.wait_for_port("127.0.0.1", port, 60, child)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok", "service": "audit"}
            deadline = time.monotonic() + 30
            while (ready := await client.get("/readyz")).status_code != 200 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            assert ready.json()["checks"] == {"database": "ok", "bus": "ok"}
            metrics = (await client.get("/metrics")).text
            assert 'homeroom_service_up{service="audit"} 1.0' in metrics
            assert 'homeroom_http_requests_total{method="GET",route="/healthz",service="audit",status="200"}' in metrics
            assert (await client.get("/openapi.json")).json()["info"]["title"] == "Homeroom audit"
        conn = await asyncpg.connect(database_url(postgres.server_url, "homeroom_audit"))
        try:
            tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
        finally:
            await conn.close()
        assert {"outbox", "processed_events", "schema_migrations"} <= tables
    finally:
        process.stop(child, signal.SIGTERM, timeout_s=20)
    # uvicorn re-raises SIGTERM after a graceful shutdown, so -15 is the clean exit here.
    assert child.returncode in (0, -signal.SIGTERM), log.read_text()[-2000:]
    assert "Application shutdown complete" in log.read_text(), "the lifespan did not finish its shutdown"
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, "the service logged nothing as JSON"
    assert all(line["service"] == "audit" and "level" in line and "time" in line for line in lines)


class _Kept:
    """An object with a `__dict__`, so the collector tracks it, and weak references to it."""

    def __init__(self) -> None:
        self.cycle: object = self


def test_objects_built_at_start_are_frozen_and_garbage_is_collected_first() -> None:
    """`freeze_startup_objects` (called by the app `homeroom serve` runs, once started) moves what
    lives as long as the process out of the collector's passes, and collects garbage first so
    that no dead cycle is frozen forever; objects made later are collected as before."""
    import gc
    import weakref

    from homeroom.service import create_app, freeze_startup_objects

    app = create_app(load_spec("reports"), load_spec("reports").settings())
    kept = _Kept()
    dead = weakref.ref(_Kept())  # an unreachable cycle: only a collection frees it
    assert dead() is not None
    try:
        freeze_startup_objects()
        assert dead() is None, "a dead cycle was frozen instead of collected"
        assert gc.get_freeze_count() > 0
        tracked = gc.get_objects()
        assert not any(o is kept for o in tracked), "an object built at start is still in the collector's passes"
        assert not any(o is app for o in tracked)

        later = weakref.ref(_Kept())
        gc.collect()
        assert later() is None, "a cycle made after the freeze was not collected"
    finally:
        gc.unfreeze()


async def test_a_request_never_reaches_fastapis_opentelemetry_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    # Homeroom's telemetry is Prometheus and JSON logs. FastAPI's OpenTelemetry layer would look
    # for a tracer provider named by this variable on each request, and fail to load this one.
    monkeypatch.setenv("OTEL_PYTHON_TRACER_PROVIDER", "no_such_provider")
    from homeroom.service import create_app

    spec = load_spec("reports")
    app = create_app(spec, spec.settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reports") as client:
        answer = await client.get("/openapi.json")
    assert answer.status_code == 200 and answer.json()["info"]["title"] == "Homeroom reports"
