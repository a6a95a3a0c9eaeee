"""Rate limits per principal (homeroom/ratelimit.py, the `limits` library): a caller past
the limit gets a 429 problem with Retry-After and is counted; another caller, and services,
are not affected; the portal's sign-in is limited per client address."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client import REGISTRY

from homeroom.auth import AuthSettings
from services.audit.service import SERVICE as AUDIT
from services.portal.app import create_portal_app
from services.portal.settings import PortalSettings
from tests.harness import ServiceEnv, service_under_test


def _limited(service: str, scope: str) -> float:
    return REGISTRY.get_sample_value("homeroom_rate_limited_total", {"service": service, "scope": scope}) or 0.0


async def test_a_caller_past_the_limit_gets_429_and_others_do_not(service_env: ServiceEnv) -> None:
    async with service_under_test(AUDIT, service_env, start_consumers=False, rate_limit="3/minute") as audit:
        before = _limited("audit", "principal")
        busy = service_env.auth("compliance", subject="busy")
        answers = [(await audit.client.get("/v1/keys", headers=busy)).status_code for _ in range(5)]
        assert answers == [200, 200, 200, 429, 429]
        refused = await audit.client.get("/v1/keys", headers=busy)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"].endswith("rate-limited") and int(refused.headers["retry-after"]) >= 1
        assert _limited("audit", "principal") == before + 3
        other = service_env.auth("compliance", subject="someone-else")
        assert (await audit.client.get("/v1/keys", headers=other)).status_code == 200
        service = service_env.auth("service", subject="homeroom-records")
        signed = [(await audit.client.post("/v1/tree-heads", headers=service)).status_code for _ in range(5)]
        assert signed == [201] * 5
        # A forged token spends nobody's allowance: it is refused before the limit is counted.
        assert (await audit.client.get("/v1/keys", headers={"Authorization": "Bearer x.y.z"})).status_code == 401


async def test_portal_sign_in_attempts_are_limited_per_address(tmp_path: Path) -> None:
    settings = PortalSettings(sign_in_rate_limit="2/minute")
    app = create_portal_app(settings, AuthSettings(dev_key_file=tmp_path / "dev.pem"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal.test") as client,
    ):
        form = {"role": "compliance", "subject": "c-1"}
        answers = [(await client.post("/sign-in/dev", data=form)).status_code for _ in range(3)]
        assert answers == [303, 303, 429]
