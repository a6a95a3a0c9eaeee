"""The incidents service's calls to its peers: one typed client each, with the contracts'
request and answer models (`homeroom/contracts/`).

* audit: sign a head now, and the disclosure selection (streamed);
* consent: an agreement's scope (its organisation, covered districts and status);
* records: the letter language of each affected family.

Every call carries the service's own token (role `service`). A failure raises
`PeerUnavailable` naming the peer and what went wrong.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from homeroom.contracts.agreement_scope import AgreementScope, UnreadableScope
from homeroom.contracts.disclosure_selection import DisclosureSelection
from homeroom.contracts.notice_preferences import NoticePreferences, NoticePreferencesRequest


class PeerUnavailable(Exception):
    def __init__(self, peer: str, message: str, status: int | None = None) -> None:
        super().__init__(f"the {peer} service: {message}")
        self.peer = peer
        self.status = status


@dataclass
class _Peer:
    name: str
    client: httpx.AsyncClient
    token: Callable[[], str]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    async def call(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = await self.client.request(method, path, json=json, headers=self.headers())
        except httpx.HTTPError as exc:
            raise PeerUnavailable(self.name, f"{method} {path} failed: {type(exc).__name__}") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise PeerUnavailable(
                self.name,
                f"{method} {path} answered {response.status_code}: {response.text[:300]}",
                response.status_code,
            )
        try:
            return response.json()
        except ValueError:
            raise PeerUnavailable(self.name, f"{method} {path} answered something that is not JSON") from None


class AuditClient:
    def __init__(self, peer: _Peer) -> None:
        self._peer = peer

    async def sign_head(self) -> dict[str, Any]:
        answer = await self._peer.call("POST", "/v1/tree-heads")
        if not isinstance(answer, dict):
            raise PeerUnavailable("audit", "signing a head answered nothing")
        return answer

    async def selection(self, request: DisclosureSelection, timeout_s: float) -> AsyncIterator[bytes]:
        """The selection's lines as audit streams them (homeroom/contracts/disclosure_selection.py)."""
        client = self._peer.client
        built = client.build_request(
            "POST",
            "/v1/selections/disclosures",
            content=request.model_dump_json(exclude_none=True),
            headers={**self._peer.headers(), "Content-Type": "application/json"},
            timeout=timeout_s,
        )
        try:
            response = await client.send(built, stream=True)
        except httpx.HTTPError as exc:
            raise PeerUnavailable("audit", f"the selection failed: {type(exc).__name__}") from None
        try:
            if response.status_code != 200:
                await response.aread()
                raise PeerUnavailable(
                    "audit",
                    f"the selection answered {response.status_code}: {response.text[:300]}",
                    response.status_code,
                )
            async for raw in response.aiter_lines():
                if raw:
                    yield raw.encode()
        except httpx.HTTPError as exc:
            raise PeerUnavailable("audit", f"the selection broke off: {type(exc).__name__}") from None
        finally:
            await response.aclose()


class ConsentClient:
    def __init__(self, peer: _Peer) -> None:
        self._peer = peer

    async def scope(self, agreement_id: str) -> AgreementScope | None:
        raw = await self._peer.call("GET", f"/v1/agreements/{quote(agreement_id, safe='')}/scope")
        if raw is None:
            return None
        try:
            return AgreementScope.from_json(raw)
        except UnreadableScope as exc:
            raise PeerUnavailable("consent", str(exc)) from None


class RecordsClient:
    def __init__(self, peer: _Peer) -> None:
        self._peer = peer

    async def notice_preferences(self, request: NoticePreferencesRequest) -> NoticePreferences:
        raw = await self._peer.call("POST", "/v1/internal/notice-preferences", request.model_dump(mode="json"))
        try:
            return NoticePreferences.model_validate(raw)
        except ValueError as exc:
            raise PeerUnavailable("records", f"notice preferences unreadable: {exc}") from None


@dataclass
class Peers:
    audit: AuditClient
    consent: ConsentClient
    records: RecordsClient
    _clients: tuple[httpx.AsyncClient, ...] = ()

    @classmethod
    def build(
        cls,
        urls: dict[str, str],
        token: Callable[[], str],
        *,
        timeout_s: float,
        transports: dict[str, httpx.AsyncBaseTransport] | None = None,
    ) -> Peers:
        transports = transports or {}
        clients = {
            name: httpx.AsyncClient(base_url=url, timeout=timeout_s, transport=transports.get(name))
            for name, url in urls.items()
        }
        return cls(
            audit=AuditClient(_Peer("audit", clients["audit"], token)),
            consent=ConsentClient(_Peer("consent", clients["consent"], token)),
            records=RecordsClient(_Peer("records", clients["records"], token)),
            _clients=tuple(clients.values()),
        )

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
