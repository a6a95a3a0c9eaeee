"""The portal's typed clients: a person's call carries that person's token and nothing else, a
public call carries none, and every failure becomes the page status the portal promises (401 to
sign-in, refusals passed through, the service's own failure or silence 503).

The peer is a small real ASGI app answering over HTTP in process; it re-implements no service's
rules: it echoes what it was sent, or refuses with the status it is asked for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from services.portal.clients import Services, UpstreamError
from services.portal.settings import PortalSettings

PERSON = "person-token-abc"
NAMES = ("records", "consent", "audit", "ingest", "transfer", "incidents", "reports")


def _echo() -> FastAPI:
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT"])
    async def echo(path: str, request: Request) -> Response:
        status = int(request.query_params.get("status", "200"))
        if status >= 400:
            problem = {
                "title": "Refused",
                "detail": f"refused with {status}",
                "errors": [{"field": "f", "message": "m"}],
            }
            return JSONResponse(problem, status_code=status, media_type="application/problem+json")
        seen: dict[str, Any] = {
            "path": request.scope["raw_path"].decode(),  # as sent, before the router decodes it
            "authorization": request.headers.get("authorization"),
            "query": sorted(request.query_params.multi_items()),
            "body": (await request.body()).decode() or None,
        }
        return JSONResponse({**seen, "incident_id": "inc-1"})

    return app


def _services(transport: httpx.AsyncBaseTransport | None, base: str = "http://{}.test") -> Services:
    settings = PortalSettings().model_copy(update={f"{name}_url": base.format(name) for name in NAMES})
    return Services(settings, transport=transport)


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    found = _services(httpx.ASGITransport(app=_echo()))
    yield found
    await found.aclose()


async def test_a_persons_call_carries_their_token_and_a_public_call_none(services: Services) -> None:
    seen = (await services.audit.entries({"student_key": "stu_a"}, after=None, limit=50, token=PERSON)).raw()
    assert seen["authorization"] == f"Bearer {PERSON}"
    assert (seen["path"], seen["query"]) == ("/v1/entries", [["limit", "50"], ["student_key", "stu_a"]])

    public = (await services.consent.public_agreements()).raw()
    assert public["authorization"] is None  # no token, and never a service token in its place
    assert public["path"] == "/v1/public/agreements"


async def test_bodies_and_path_values_are_sent_as_the_route_takes_them(services: Services) -> None:
    opened = await services.incidents.open({"description": "a lost laptop"}, token=PERSON)
    assert (opened.incident_id, opened.raw()["body"]) == ("inc-1", '{"description": "a lost laptop"}')
    disclosures = await services.audit.student_disclosures("stu_a/../x", token=PERSON)
    assert disclosures.raw()["path"] == "/v1/students/stu_a%2F..%2Fx/disclosures"  # one segment, never another route


@pytest.mark.parametrize(
    ("upstream", "shown"),
    [(401, 401), (403, 403), (404, 404), (409, 409), (410, 410), (422, 422), (400, 503), (500, 503), (502, 503)],
)
async def test_a_refusal_passes_through_and_a_failure_is_503(services: Services, upstream: int, shown: int) -> None:
    with pytest.raises(UpstreamError) as raised:
        await services.audit.entries({"status": str(upstream)}, after=None, limit=1, token=PERSON)
    assert (raised.value.service, raised.value.status) == ("audit", shown)
    assert raised.value.detail == f"refused with {upstream}"
    assert raised.value.field_errors == [{"field": "f", "message": "m"}]


async def test_an_answer_that_is_not_the_contracts_is_503(services: Services) -> None:
    with pytest.raises(UpstreamError) as raised:
        await services.transfer.case("c-1", token=PERSON)  # the echo has no student_key: not a case
    assert raised.value.status == 503
    assert "does not parse" in raised.value.detail


async def test_a_service_that_does_not_answer_is_503() -> None:
    silent = _services(None, base="http://127.0.0.1:9/{}")
    try:
        with pytest.raises(UpstreamError) as raised:
            await silent.incidents.incidents(token=PERSON)
    finally:
        await silent.aclose()
    assert (raised.value.service, raised.value.status) == ("incidents", 503)
    assert raised.value.detail == "the incidents service could not be reached (ConnectError)"
