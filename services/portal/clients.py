"""Calls to the services' APIs on behalf of the signed-in person.

Every call carries the person's own bearer token, never a service token: whatever a page
shows, the service that owns the data decided the person may see it. An answer the page
cannot use becomes an `UpstreamError` that the app renders as a page saying what went
wrong (and 401 sends the person back to sign in).
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

from homeroom.contracts.clients import problem_body
from services.portal.settings import PortalSettings

ServiceName = Literal["ingest", "records", "consent", "transfer", "audit", "incidents", "reports"]
Params = dict[str, str | int] | list[tuple[str, str | int | float | bool | None]] | None  # a list repeats names


class UpstreamError(Exception):
    """A service refused or failed; `status` is what the portal answers (401, 403, 404, 409, 422, 503)."""

    def __init__(self, service: str, status: int, detail: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(f"{service}: {status} {detail}")
        self.service = service
        self.status = status
        self.detail = detail
        self.problem = problem or {}

    @property
    def field_errors(self) -> list[dict[str, str]]:
        errors = self.problem.get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _unreachable(service: str, exc: Exception) -> UpstreamError:
    return UpstreamError(service, 503, f"the {service} service could not be reached ({type(exc).__name__})")


def _refusal(service: str, response: httpx.Response) -> UpstreamError:
    problem = problem_body(response)
    detail = str(problem.get("detail") or problem.get("title") or response.reason_phrase)
    # A service's own failure is "unavailable" to the person; its refusals pass through as they are.
    status = response.status_code if response.status_code in (401, 403, 404, 409, 410, 422) else 503
    return UpstreamError(service, status, detail, problem)


class Services:
    """One HTTP client per service, shared by every request of the app."""

    def __init__(self, settings: PortalSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        urls: dict[str, str] = {
            "ingest": settings.ingest_url,
            "records": settings.records_url,
            "consent": settings.consent_url,
            "transfer": settings.transfer_url,
            "audit": settings.audit_url,
            "incidents": settings.incidents_url,
            "reports": settings.reports_url,
        }
        self._clients = {
            name: httpx.AsyncClient(base_url=url, timeout=settings.peer_timeout_s, transport=transport)
            for name, url in urls.items()
        }

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def call(
        self,
        service: ServiceName,
        method: str,
        path: str,
        token: str | None,
        *,
        params: Params = None,
        json: Any = None,
    ) -> Any:
        """The JSON answer of a 2xx; UpstreamError otherwise. `token=None` for public routes."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = await self._clients[service].request(method, path, params=params, json=json, headers=headers)
        except httpx.HTTPError as exc:
            raise _unreachable(service, exc) from None
        if response.status_code >= 400:
            raise _refusal(service, response)
        return response.json() if response.content else None

    async def get(self, service: ServiceName, path: str, token: str | None, params: Params = None) -> Any:
        return await self.call(service, "GET", path, token, params=params)

    async def post(self, service: ServiceName, path: str, token: str, json: Any = None) -> Any:
        return await self.call(service, "POST", path, token, json=json if json is not None else {})

    async def download(self, service: ServiceName, path: str, params: Params = None) -> httpx.Response:
        """A public file (a published CSV), read whole: no token, for anyone."""
        try:
            response = await self._clients[service].get(path, params=params)
        except httpx.HTTPError as exc:
            raise _unreachable(service, exc) from None
        if response.status_code >= 400:
            raise _refusal(service, response)
        return response

    async def open_stream(self, service: ServiceName, path: str, token: str, params: Params = None) -> httpx.Response:
        """A streamed GET (exports), checked for success; the caller closes it."""
        client = self._clients[service]
        request = client.build_request("GET", path, params=params, headers={"Authorization": f"Bearer {token}"})
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _unreachable(service, exc) from None
        if response.status_code >= 400:
            await response.aread()
            await response.aclose()
            raise _refusal(service, response)
        return response
