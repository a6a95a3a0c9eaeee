"""HTTP clients for the two peers a case needs (docs/contracts.md): the consent decision
point and records' internal transfer endpoints.

They live in `runtime.extras` (keys below), built in the service's start hook from the
settings unless something is already there, so a test or the demo can put its own in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import httpx

CONSENT_EXTRA = "transfer.consent"
RECORDS_EXTRA = "transfer.records"


class PeerError(Exception):
    """A peer call that did not succeed. `retryable`: worth trying again later (network
    trouble, 5xx, 404, 408, 425, 429, a malformed answer); otherwise the peer refused for
    good (other 4xx)."""

    def __init__(self, peer: str, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(f"{peer}: {message}")
        self.peer = peer
        self.retryable = retryable
        self.status = status


class ConsentPort(Protocol):
    async def decide(self, request: dict[str, Any]) -> dict[str, Any]: ...


class RecordsPort(Protocol):
    async def package(self, request: dict[str, Any]) -> dict[str, Any]: ...

    async def deliver(self, request: dict[str, Any]) -> dict[str, Any]: ...


class _Peer:
    def __init__(
        self,
        name: str,
        base_url: str,
        token: Callable[[], str],
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self._token = token
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(path, json=body, headers={"Authorization": f"Bearer {self._token()}"})
        except httpx.HTTPError as exc:
            raise PeerError(self.name, f"POST {path} failed: {type(exc).__name__}: {exc}", retryable=True) from None
        # 404: the peer may not have caught up with the bus yet (records consumes events too)
        if response.status_code >= 500 or response.status_code in (404, 408, 425, 429):
            raise PeerError(
                self.name, f"POST {path} answered {response.status_code}", retryable=True, status=response.status_code
            )
        if response.status_code >= 400:
            detail = _problem_detail(response)
            raise PeerError(
                self.name,
                f"POST {path} answered {response.status_code} {detail}".strip(),
                retryable=False,
                status=response.status_code,
            )
        try:
            answer = response.json()
        except ValueError:
            raise PeerError(self.name, f"POST {path} answered with non-JSON", retryable=True) from None
        if not isinstance(answer, dict):
            raise PeerError(self.name, f"POST {path} answered with a JSON {type(answer).__name__}", retryable=True)
        return answer

    async def aclose(self) -> None:
        await self._client.aclose()


def _problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("detail", "")) if isinstance(body, dict) else ""


class ConsentClient(_Peer):
    def __init__(self, base_url: str, token: Callable[[], str], **kwargs: Any) -> None:
        super().__init__("consent", base_url, token, **kwargs)

    async def decide(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._post("/v1/decisions", request)


class RecordsClient(_Peer):
    def __init__(self, base_url: str, token: Callable[[], str], **kwargs: Any) -> None:
        super().__init__("records", base_url, token, **kwargs)

    async def package(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._post("/v1/internal/transfer-packages", request)

    async def deliver(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._post("/v1/internal/transfer-deliveries", request)
