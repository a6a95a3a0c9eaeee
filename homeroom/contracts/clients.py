"""One typed client per service API that another service calls, used by every caller.

* `ConsentClient`: decisions (one, a batch, a screen) and an agreement's scope (records,
  transfer, incidents);
* `RecordsClient`: a transfer's package and delivery (transfer), the letter language of
  affected families (incidents), a district's own students named (consent, with the district
  staff member's own token);
* `AuditClient`: which disclosures the log holds (records' reconciliation), sign a head now and
  the disclosure selection (incidents).

Each takes `transport: httpx.AsyncBaseTransport | None`, so a service's lifecycle builds it with
`transport=runtime.peer("consent")` (a test's in-process peer, else real HTTP to `base_url`).
Every call carries the calling service's own token (role `service`, from `token`) and sends
and reads the models of `homeroom/contracts/`. Any call that does not succeed raises
`PeerUnavailable`, naming the peer, the HTTP status when there was one, and whether trying
again later may help (`retryable`); callers decide what that means for them (records releases
nothing, transfer retries or fails the case, incidents answers 503).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from homeroom.contracts.agreement_scope import AgreementScope, UnreadableScope
from homeroom.contracts.consent import (
    MAX_BATCH,
    MAX_SCREEN,
    Decision,
    DecisionBatch,
    DecisionBatchAnswer,
    DecisionRequest,
    Requester,
    ScreenAnswer,
    ScreenRequest,
)
from homeroom.contracts.disclosure_selection import DisclosureSelection
from homeroom.contracts.disclosures_present import DisclosuresPresent, PresentDisclosures
from homeroom.contracts.notice_preferences import NoticePreferences, NoticePreferencesRequest
from homeroom.contracts.student_directory import DistrictStudents
from homeroom.contracts.transfer_package import TransferDeliveryRequest, TransferPackageRequest
from homeroom.problems import FieldError, Problem, field_errors_from_pydantic, problem_type

__all__ = [
    "AuditClient",
    "ConsentClient",
    "PeerClient",
    "PeerUnavailable",
    "RecordsClient",
    "checked",
    "problem_body",
]

ModelT = TypeVar("ModelT", bound=BaseModel)

# Statuses worth trying again later: the peer's own trouble, or (404) a peer that has not yet
# caught up with the bus (records consumes the enrollment events a transfer is about, too).
_RETRYABLE = frozenset({404, 408, 425, 429})


class PeerUnavailable(Exception):
    """A call to another service that did not succeed.

    `status`: the peer's HTTP status when it answered; `retryable`: worth trying again later
    (network trouble, 5xx, 404, 408, 425, 429, an answer that does not parse) rather than
    refused for good (other 4xx); `problem`: the peer's problem+json body, when it sent one."""

    def __init__(
        self,
        peer: str,
        message: str,
        status: int | None = None,
        *,
        retryable: bool = True,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"the {peer} service: {message}")
        self.peer = peer
        self.status = status
        self.retryable = retryable
        self.problem = problem or {}

    def as_problem(
        self, title: str, detail: str, *, kind: str = "peer-unavailable", retry_after_s: int = 5, peer: bool = False
    ) -> Problem:
        """This failure as the caller's own 503 (RFC 9457) with Retry-After; `peer` names the peer
        in the problem (`"peer": "audit"`)."""
        return Problem(
            503,
            title,
            detail,
            type=problem_type(kind),
            headers={"Retry-After": str(retry_after_s)},
            extensions={"peer": self.peer} if peer else None,
        )

    def refused_request(self) -> Problem | None:
        """The peer's 400/422 for the caller's own request, as the caller's 422 with the peer's
        field errors (the caller's error, never "unavailable"); None for any other failure."""
        if self.status not in (400, 422):
            return None
        errors = [
            FieldError(str(e.get("field", "")), str(e.get("rule", "")), str(e.get("message", "")))
            for e in self.problem.get("errors") or ()
            if isinstance(e, dict)
        ]
        if not errors:
            refused = f"the {self.peer} service refused the request as invalid"
            errors = [FieldError("query", f"{self.peer}.request_refused", refused)]
        return Problem.validation(errors)


def checked(model: type[ModelT], **fields: Any) -> ModelT:
    """A contract's request built from the caller's values, or the 422 naming every field that
    breaks the contract: the answer the peer would give, without the round trip."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise Problem.validation(field_errors_from_pydantic(exc.errors())) from None


def problem_body(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object (a problem+json body), or {} when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class PeerClient:
    """The HTTP part every client shares: base URL, the service's token, one connection pool."""

    peer = "peer"

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str] | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not base_url and transport is not None:
            base_url = f"http://{self.peer}.test"  # an in-process peer answers whatever the host
        self.base_url = base_url
        self._token = token
        # No URL and no transport: the peer is not configured, and every call says so.
        self._client = (
            httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout_s) if base_url else None
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise PeerUnavailable(self.peer, "no URL is configured for it")
        return self._client

    def _headers(self, token: str | None = None) -> dict[str, str]:
        """The caller's bearer token: `token` (a person's, passed on) or the service's own."""
        bearer = token or (self._token() if self._token is not None else "")
        return {"Authorization": f"Bearer {bearer}"} if bearer else {}

    async def _call(
        self,
        method: str,
        path: str,
        body: BaseModel | None = None,
        *,
        missing: bool = False,
        params: httpx.QueryParams | None = None,
        token: str | None = None,
    ) -> Any:
        """The JSON answer of a 2xx (None for a 404 when `missing`); PeerUnavailable otherwise."""
        content = body.model_dump_json() if body is not None else None
        headers = self._headers(token) | ({"Content-Type": "application/json"} if content is not None else {})
        try:
            response = await self._http().request(method, path, content=content, params=params, headers=headers)
        except (httpx.HTTPError, OSError) as exc:
            raise PeerUnavailable(self.peer, f"{method} {path} failed: {type(exc).__name__}") from None
        if response.status_code == 404 and missing:
            return None
        if not 200 <= response.status_code < 300:
            status = response.status_code
            problem = problem_body(response)
            detail = str(problem.get("detail") or "")
            raise PeerUnavailable(
                self.peer,
                f"{method} {path} answered {status} {detail}".strip(),
                status,
                retryable=status >= 500 or status in _RETRYABLE,
                problem=problem,
            )
        try:
            return response.json()
        except ValueError:
            raise PeerUnavailable(self.peer, f"{method} {path} answered something that is not JSON") from None

    def _read(self, model: type[ModelT], raw: Any, what: str) -> ModelT:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise PeerUnavailable(self.peer, f"{what} does not parse: {exc.error_count()} error(s)") from None


class ConsentClient(PeerClient):
    """Consent's decision point (`homeroom/contracts/consent.py`) and agreement scopes."""

    peer = "consent"

    async def decide(self, request: DecisionRequest) -> Decision:
        raw = await self._call("POST", "/v1/decisions", request)
        return self._read(Decision, raw, "a decision").releasing()

    async def decide_many(self, requests: Sequence[DecisionRequest]) -> list[Decision]:
        """Decisions in the order asked, `MAX_BATCH` to a call."""
        out: list[Decision] = []
        for start in range(0, len(requests), MAX_BATCH):
            chunk = list(requests[start : start + MAX_BATCH])
            raw = await self._call("POST", "/v1/decisions/batch", DecisionBatch(requests=chunk))
            answer = self._read(DecisionBatchAnswer, raw, "a batch of decisions")
            if len(answer.decisions) != len(chunk):
                raise PeerUnavailable(self.peer, "a batch was answered with the wrong number of decisions")
            out.extend(d.releasing() for d in answer.decisions)
        return out

    async def screen(
        self,
        requester: Requester,
        district_id: str,
        students: Sequence[tuple[str, str | None, Sequence[str] | None]],
        elements: Sequence[str],
        require: Sequence[str] = (),
        purpose: str | None = None,
    ) -> set[str]:
        """The students (key, school, classes) a read of `elements` would release nothing to, or
        not every element of `require` (consent's rules; nothing released, nothing logged): for counts."""
        out: set[str] = set()
        for start in range(0, len(students), MAX_SCREEN):
            request = checked(
                ScreenRequest,
                requester=requester,
                district_id=district_id,
                elements=list(elements),
                require=list(require),
                purpose=purpose,
                students=[
                    (key, school, list(classes) if classes is not None else None)
                    for key, school, classes in students[start : start + MAX_SCREEN]
                ],
            )
            raw = await self._call("POST", "/v1/decisions/screen", request)
            out.update(self._read(ScreenAnswer, raw, "a screen").withheld)
        return out

    async def scope(self, agreement_id: str) -> AgreementScope | None:
        """The agreement's scope, or None when the consent service does not know it."""
        raw = await self._call("GET", f"/v1/agreements/{quote(agreement_id, safe='')}/scope", missing=True)
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise PeerUnavailable(self.peer, "a scope was answered with a non-object")
        try:
            return AgreementScope.from_json(raw)
        except UnreadableScope as exc:
            raise PeerUnavailable(self.peer, str(exc)) from None


class RecordsClient(PeerClient):
    """Records' internal endpoints (role `service`)."""

    peer = "records"

    async def transfer_package(self, request: TransferPackageRequest) -> dict[str, Any]:
        """The sending district's record, only the elements asked for (a transfer's package)."""
        return await self._object("/v1/internal/transfer-packages", request)

    async def transfer_delivery(self, request: TransferDeliveryRequest) -> dict[str, Any]:
        """Write a delivered package into the receiving district's record (idempotent on the case)."""
        return await self._object("/v1/internal/transfer-deliveries", request)

    async def district_students(
        self, district_id: str, student_keys: Sequence[str], *, token: str, on: date
    ) -> DistrictStudents:
        """`GET /v1/districts/{d}/student-names` with the person's own `token`, so records decides
        what that person may see: the district's own students among these keys (unknown keys
        left out), named, with their FERPA eligibility (99.5) on `on`. A caller who may see
        none of them (401, 403, 404) gets none."""
        none = DistrictStudents(district_id=district_id, names={})
        if not student_keys:
            return none
        params = httpx.QueryParams({"student_key": list(student_keys), "on": on.isoformat()})
        try:
            raw = await self._call("GET", f"/v1/districts/{district_id}/student-names", params=params, token=token)
        except PeerUnavailable as exc:
            if exc.status in (401, 403, 404):
                return none
            raise
        return self._read(DistrictStudents, raw, f"{district_id}'s students")

    async def notice_preferences(self, request: NoticePreferencesRequest) -> NoticePreferences:
        raw = await self._call("POST", "/v1/internal/notice-preferences", request)
        return self._read(NoticePreferences, raw, "notice preferences")

    async def _object(self, path: str, request: BaseModel) -> dict[str, Any]:
        answer = await self._call("POST", path, request)
        if not isinstance(answer, dict):
            raise PeerUnavailable(self.peer, f"POST {path} answered with a JSON {type(answer).__name__}")
        return answer


class AuditClient(PeerClient):
    """The audit log's service endpoints."""

    peer = "audit"

    async def present(self, disclosure_ids: Sequence[str]) -> set[str]:
        """Which of these disclosure ids the log holds (records' reconciliation)."""
        raw = await self._call(
            "POST", "/v1/internal/disclosures/present", DisclosuresPresent(disclosure_ids=list(disclosure_ids))
        )
        return set(self._read(PresentDisclosures, raw, "the disclosures present").present)

    async def sign_head(self) -> dict[str, Any]:
        """Sign a tree head now; the signed head."""
        answer = await self._call("POST", "/v1/tree-heads")
        if not isinstance(answer, dict):
            raise PeerUnavailable(self.peer, "signing a head answered nothing")
        return answer

    async def selection(self, request: DisclosureSelection, timeout_s: float) -> AsyncIterator[bytes]:
        """The selection's lines as audit streams them (homeroom/contracts/disclosure_selection.py)."""
        client = self._http()
        built = client.build_request(
            "POST",
            "/v1/selections/disclosures",
            content=request.model_dump_json(exclude_none=True),
            headers={**self._headers(), "Content-Type": "application/json"},
            timeout=timeout_s,
        )
        try:
            response = await client.send(built, stream=True)
        except httpx.HTTPError as exc:
            raise PeerUnavailable(self.peer, f"the selection failed: {type(exc).__name__}") from None
        try:
            if response.status_code != 200:
                await response.aread()
                raise PeerUnavailable(
                    self.peer,
                    f"the selection answered {response.status_code}: {response.text[:300]}",
                    response.status_code,
                )
            async for raw in response.aiter_lines():
                if raw:
                    yield raw.encode()
        except httpx.HTTPError as exc:
            raise PeerUnavailable(self.peer, f"the selection broke off: {type(exc).__name__}") from None
        finally:
            await response.aclose()
