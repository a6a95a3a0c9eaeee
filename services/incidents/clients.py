"""The incidents service's peers, one typed client each (`homeroom/contracts/clients.py`):

* audit: sign a head now, and the disclosure selection (streamed);
* consent: an agreement's scope (its organisation, covered districts and status);
* records: the letter language of each affected family.

Every call carries the service's own token (role `service`). A failure raises
`homeroom.contracts.clients.PeerUnavailable` naming the peer and what went wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from homeroom.contracts.clients import AuditClient, ConsentClient, RecordsClient


@dataclass
class Peers:
    audit: AuditClient
    consent: ConsentClient
    records: RecordsClient

    @classmethod
    def build(
        cls,
        urls: Mapping[str, str],
        token: Callable[[], str],
        *,
        timeout_s: float,
        transports: Mapping[str, httpx.AsyncBaseTransport | None] | None = None,
    ) -> Peers:
        """Clients to the peers at `urls`; `transports` by peer name (a test's in-process peers)."""
        transports = transports or {}
        return cls(
            audit=AuditClient(urls["audit"], token, transport=transports.get("audit"), timeout_s=timeout_s),
            consent=ConsentClient(urls["consent"], token, transport=transports.get("consent"), timeout_s=timeout_s),
            records=RecordsClient(urls["records"], token, transport=transports.get("records"), timeout_s=timeout_s),
        )

    async def aclose(self) -> None:
        for client in (self.audit, self.consent, self.records):
            await client.aclose()
