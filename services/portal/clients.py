"""The services' APIs as the portal calls them on behalf of the signed-in person.

One typed client per service API (`homeroom/contracts/clients.py`), a named method per route;
every person's call carries the person's own bearer token, passed per call, and the clients
hold no service token: whatever a page shows, the service that owns the data decided the
person may see it. A call that fails raises `UpstreamError`, which the app renders as a page
saying what went wrong (401 sends the person back to sign in; refusals pass through; the
service's own failure, or no answer, is 503).
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx

from homeroom.contracts.clients import (
    AuditClient,
    ConsentClient,
    IncidentsClient,
    IngestClient,
    PeerClient,
    PeerUnavailable,
    RecordsClient,
    ReportsClient,
    TransferClient,
)
from services.portal.settings import PortalSettings

ClientT = TypeVar("ClientT", bound=PeerClient)

# What a service's refusal stays for the person; anything else is the service's own failure (503).
PASSED_THROUGH = frozenset({401, 403, 404, 409, 410, 422})


class UpstreamError(Exception):
    """A service refused or failed; `status` is what the portal answers (401, 403, 404, 409, 410, 422, 503)."""

    def __init__(self, service: str, status: int, detail: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(f"{service}: {status} {detail}")
        self.service = service
        self.status = status
        self.detail = detail
        self.problem = problem or {}

    @classmethod
    def of(cls, failure: PeerUnavailable) -> UpstreamError:
        """A typed client's failure as the page the portal shows."""
        if failure.status is None:  # no answer, or one that could not be read
            unreachable = f"the {failure.peer} service could not be reached ({failure.cause})"
            return cls(failure.peer, 503, unreachable if failure.cause else str(failure))
        problem = failure.problem
        detail = str(problem.get("detail") or problem.get("title") or httpx.codes.get_reason_phrase(failure.status))
        status = failure.status if failure.status in PASSED_THROUGH else 503
        return cls(failure.peer, status, detail, problem)

    @property
    def field_errors(self) -> list[dict[str, str]]:
        errors = self.problem.get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


class Services:
    """One typed client per service, shared by every request of the app."""

    def __init__(self, settings: PortalSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        def client(kind: type[ClientT], url: str) -> ClientT:
            # No service token (None): a person's page only ever carries the person's own.
            return kind(url, None, transport=transport, timeout_s=settings.peer_timeout_s, failure=UpstreamError.of)

        self.ingest = client(IngestClient, settings.ingest_url)
        self.records = client(RecordsClient, settings.records_url)
        self.consent = client(ConsentClient, settings.consent_url)
        self.transfer = client(TransferClient, settings.transfer_url)
        self.audit = client(AuditClient, settings.audit_url)
        self.incidents = client(IncidentsClient, settings.incidents_url)
        self.reports = client(ReportsClient, settings.reports_url)

    async def aclose(self) -> None:
        for each in (self.ingest, self.records, self.consent, self.transfer, self.audit, self.incidents, self.reports):
            await each.aclose()
