"""Issue 19, the kernel's HTTP path: what every service does per request (the HTTP metrics'
series looked up once, the security headers added in one pass) and what `homeroom serve`
keeps out of the garbage collector's passes."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Response
from pydantic_settings import SettingsConfigDict

from homeroom.config import ServiceSettings
from homeroom.http_headers import CONTENT_SECURITY_POLICY, SecurityHeaders, security_headers
from homeroom.service import Runtime, ServiceSpec, create_app
from homeroom.telemetry import HTTP_REQUESTS, HTTP_SECONDS, instrument_http
from tests.harness import ServiceEnv


def test_security_headers_are_added_once_after_what_the_route_set() -> None:
    json_answer = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    assert security_headers(json_answer) == [
        *json_answer,
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]
    # A route's own choice stands, and nothing is repeated.
    own = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"public, max-age=60")]
    added = security_headers([*own, (b"referrer-policy", b"same-origin")])
    assert [name for name, _ in added].count(b"cache-control") == 1
    assert (b"cache-control", b"public, max-age=60") in added and (b"referrer-policy", b"same-origin") in added
    assert added[-1] == (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())
    already = [(b"content-type", b"text/html"), (b"content-security-policy", b"default-src 'self'")]
    assert [name for name, _ in security_headers(already)].count(b"content-security-policy") == 1
    # The first Content-Type is the one read (as Starlette's Headers.get reads it).
    assert (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()) not in security_headers(
        [(b"content-type", b"application/json"), (b"content-type", b"text/html")]
    )


async def test_every_answer_gets_the_headers_and_each_request_is_counted_by_route_and_status() -> None:
    app = FastAPI()

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> Response:
        if thing_id == "gone":
            return Response(status_code=404)
        return Response("<p>ok</p>", media_type="text/html", headers={"Cache-Control": "private"})

    app.add_middleware(SecurityHeaders)
    instrument_http(app, "httppath")
    route = "/v1/things/{thing_id}"

    def counted(status: str) -> float:
        value: float = HTTP_REQUESTS.labels("httppath", "GET", route, status)._value.get()
        return value

    observed = HTTP_SECONDS.labels("httppath", "GET", route)._sum
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as client:
        ok = [await client.get(f"/v1/things/t-{i}") for i in range(3)]
        gone = await client.get("/v1/things/gone")
    for answer in ok:
        assert answer.headers["cache-control"] == "private"
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert gone.headers["cache-control"] == "no-store" and "content-security-policy" not in gone.headers
    # The series are looked up once and kept, and every request still counts in its own.
    assert counted("200") == 3 and counted("404") == 1
    assert HTTP_SECONDS.labels("httppath", "GET", route)._sum is observed and observed.get() > 0


class _FreezeTestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEROOM_FREEZETEST_", extra="ignore")
    service_name: str = "freezetest"


class _Kept:
    """An object with a `__dict__`, so the collector tracks it."""

    def __init__(self) -> None:
        self.cycle: object = self


async def test_a_served_service_freezes_what_its_lifecycle_loaded_and_a_test_process_never_freezes(
    service_env: ServiceEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`homeroom serve` froze the startup objects before the lifespan ran, so what a lifecycle
    loads to keep for the process's life (consent's decision facts) stayed in every full
    collection. The app `homeroom serve` builds (`freeze_once_started`) freezes after the
    lifecycle has started; without it (every test process) nothing is frozen."""
    loaded: list[_Kept] = []

    @contextlib.asynccontextmanager
    async def lifecycle(runtime: Runtime[Any, Any]) -> AsyncIterator[None]:
        loaded.append(_Kept())  # the facts a lifecycle loads and keeps
        yield None

    spec: ServiceSpec[Any, None] = ServiceSpec(name="freezetest", settings=_FreezeTestSettings, lifecycle=lifecycle)
    settings = await service_env.settings_for(spec)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", service_env.bootstrap)
    monkeypatch.setenv("HOMEROOM_AUTH_DEV_KEY_FILE", str(service_env.secrets_dir / "dev-issuer.pem"))
    frozen_before = gc.get_freeze_count()
    try:
        app = create_app(spec, settings)
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() == frozen_before, "a process that does not serve froze its objects"
            assert any(o is loaded[-1] for o in gc.get_objects())

        app = create_app(spec, settings, freeze_once_started=True)  # as `homeroom serve` builds it
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > frozen_before
            assert not any(o is loaded[-1] for o in gc.get_objects()), "what the lifecycle loaded is still collected"
    finally:
        gc.unfreeze()
