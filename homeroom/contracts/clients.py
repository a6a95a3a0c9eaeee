"""One typed client per service API that another service calls, used by every caller.

* `ConsentClient`: decisions (one, a batch, a screen) and an agreement's scope (records,
  transfer, incidents);
* `RecordsClient`: a transfer's package and delivery (transfer), the letter language of
  affected families (incidents), a district's own students named (consent, with the district
  staff member's own token);
* `AuditClient`: which disclosures the log holds (records' reconciliation), sign a head now and
  the disclosure selection (incidents);
* `IngestClient`, `TransferClient`, `IncidentsClient`, `ReportsClient`, and the person-facing
  methods of the three above: the routes the portal calls for a signed-in person.

The portal's calls carry the signed-in person's own token, passed per call (`token=`), never
the service's: whatever a page shows, the service that owns the data decided that person may
see it. A public route's method takes no token and sends none (the portal builds its clients
with no service token at all). Answers the caller reads are models of `homeroom/contracts/`
(the portal's in `answers.py`), or the JSON object as sent where only a page template reads it.

Each takes `transport: httpx.AsyncBaseTransport | None`, so a service's lifecycle builds it with
`transport=runtime.peer("consent")` (a test's in-process peer, else real HTTP to `base_url`).
Every call carries the calling service's own token (role `service`, from `token`) and sends
and reads the models of `homeroom/contracts/`. Any call that does not succeed raises
`PeerUnavailable`, naming the peer, the HTTP status when there was one, and whether trying
again later may help (`retryable`); callers decide what that means for them (records releases
nothing, transfer retries or fails the case, incidents answers 503).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import date
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from homeroom.contracts.agreement_scope import AgreementScope, UnreadableScope
from homeroom.contracts.answers import (
    Agreements,
    Amendments,
    BreachLetters,
    BreachNotices,
    DisclosureCounts,
    EntryPage,
    Guardianships,
    GuardianToken,
    Incident,
    Incidents,
    JsonObject,
    KeyRotation,
    LetterPage,
    Notices,
    OpenedIncident,
    ProblemPage,
    PublicAgreements,
    PublishedKeys,
    Redemption,
    StudentDisclosures,
    StudentList,
    StudentRecord,
    StudentRecords,
    Submissions,
    TransferCase,
    Transfers,
    TransparencyTexts,
)
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
from homeroom.contracts.linking_codes import IssuedCodes
from homeroom.contracts.notice_preferences import NoticePreferences, NoticePreferencesRequest
from homeroom.contracts.reports import DistrictNumbers, Snapshot, SnapshotList
from homeroom.contracts.student_directory import DistrictStudents
from homeroom.contracts.transfer_package import TransferDeliveryRequest, TransferPackageRequest
from homeroom.problems import FieldError, Problem, field_errors_from_pydantic, problem_type

__all__ = [
    "AuditClient",
    "ConsentClient",
    "IncidentsClient",
    "IngestClient",
    "PeerClient",
    "PeerUnavailable",
    "RecordsClient",
    "ReportsClient",
    "TransferClient",
    "checked",
    "problem_body",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
Body = BaseModel | Mapping[str, Any]
Params = Mapping[str, str | int | None] | None  # None values are left out

# Statuses worth trying again later: the peer's own trouble, or (404) a peer that has not yet
# caught up with the bus (records consumes the enrollment events a transfer is about, too).
_RETRYABLE = frozenset({404, 408, 425, 429})
ROSTERING = "/ims/oneroster/rostering/v1p2"  # records' OneRoster 1.2 rostering API


class PeerUnavailable(Exception):
    """A call to another service that did not succeed.

    `status`: the peer's HTTP status when it answered; `retryable`: worth trying again later
    (network trouble, 5xx, 404, 408, 425, 429, an answer that does not parse) rather than
    refused for good (other 4xx); `problem`: the peer's problem+json body, when it sent one;
    `cause`: the name of the network error when the peer could not be reached."""

    def __init__(
        self,
        peer: str,
        message: str,
        status: int | None = None,
        *,
        retryable: bool = True,
        problem: dict[str, Any] | None = None,
        cause: str = "",
    ) -> None:
        super().__init__(f"the {peer} service: {message}")
        self.peer = peer
        self.status = status
        self.retryable = retryable
        self.problem = problem or {}
        self.cause = cause

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


def _segment(value: str | int) -> str:
    """A value as one path segment (a `/` in it cannot reach another route)."""
    return quote(str(value), safe="")


def _query(params: Params) -> httpx.QueryParams | None:
    return httpx.QueryParams({k: v for k, v in params.items() if v is not None}) if params else None


class PeerClient:
    """The HTTP part every client shares: base URL, the service's token, one connection pool.

    `failure`: what a failed call raises instead of `PeerUnavailable` (the portal turns it into
    the page it shows); None raises `PeerUnavailable` itself."""

    peer = "peer"

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str] | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 10.0,
        failure: Callable[[PeerUnavailable], Exception] | None = None,
    ) -> None:
        if not base_url and transport is not None:
            base_url = f"http://{self.peer}.test"  # an in-process peer answers whatever the host
        self.base_url = base_url
        self._token = token
        self._failure = failure
        # No URL and no transport: the peer is not configured, and every call says so.
        self._client = (
            httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout_s) if base_url else None
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise self._failed(PeerUnavailable(self.peer, "no URL is configured for it"))
        return self._client

    def _failed(self, exc: PeerUnavailable) -> Exception:
        return self._failure(exc) if self._failure is not None else exc

    def _refused(self, method: str, path: str, response: httpx.Response) -> Exception:
        """A non-2xx answer as the failure the caller sees."""
        status = response.status_code
        problem = problem_body(response)
        detail = str(problem.get("detail") or "")
        return self._failed(
            PeerUnavailable(
                self.peer,
                f"{method} {path} answered {status} {detail}".strip(),
                status,
                retryable=status >= 500 or status in _RETRYABLE,
                problem=problem,
            )
        )

    def _unreachable(self, method: str, path: str, exc: Exception) -> Exception:
        name = type(exc).__name__
        return self._failed(PeerUnavailable(self.peer, f"{method} {path} failed: {name}", cause=name))

    def _headers(self, token: str | None = None) -> dict[str, str]:
        """The caller's bearer token: `token` (a person's, passed on) or the service's own."""
        bearer = token or (self._token() if self._token is not None else "")
        return {"Authorization": f"Bearer {bearer}"} if bearer else {}

    async def _call(
        self,
        method: str,
        path: str,
        body: Body | None = None,
        *,
        missing: bool = False,
        params: httpx.QueryParams | None = None,
        token: str | None = None,
    ) -> Any:
        """The JSON answer of a 2xx (None for an empty one, and for a 404 when `missing`);
        PeerUnavailable (or what `failure` makes of it) otherwise."""
        if body is None:
            content = None
        elif isinstance(body, BaseModel):
            content = body.model_dump_json()
        else:
            content = json.dumps(body)
        headers = self._headers(token) | ({"Content-Type": "application/json"} if content is not None else {})
        try:
            response = await self._http().request(method, path, content=content, params=params, headers=headers)
        except (httpx.HTTPError, OSError) as exc:
            raise self._unreachable(method, path, exc) from None
        if response.status_code == 404 and missing:
            return None
        if not 200 <= response.status_code < 300:
            raise self._refused(method, path, response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            failure = PeerUnavailable(self.peer, f"{method} {path} answered something that is not JSON")
            raise self._failed(failure) from None

    async def _get(self, model: type[ModelT], path: str, token: str | None, params: Params = None) -> ModelT:
        """`GET path` read as `model` (a person's read when `token`, a public one when None)."""
        raw = await self._call("GET", path, params=_query(params), token=token or None)
        return self._read(model, raw, f"GET {path}")

    async def _object(self, method: str, path: str, token: str | None, body: Body | None = None) -> JsonObject:
        """A JSON object answer, as sent (for a page that shows it)."""
        answer = await self._call(method, path, body, token=token)
        if not isinstance(answer, dict):
            what = "nothing" if answer is None else f"a JSON {type(answer).__name__}"
            raise self._failed(PeerUnavailable(self.peer, f"{method} {path} answered with {what}"))
        return answer

    async def _stream(self, path: str, token: str | None, params: Params = None) -> httpx.Response:
        """A streamed `GET path` that succeeded: the caller reads it and closes it."""
        client = self._http()
        request = client.build_request("GET", path, params=_query(params), headers=self._headers(token))
        try:
            response = await client.send(request, stream=True)
        except (httpx.HTTPError, OSError) as exc:
            raise self._unreachable("GET", path, exc) from None
        if response.status_code >= 300:
            await response.aread()
            await response.aclose()
            raise self._refused("GET", path, response)
        return response

    def _read(self, model: type[ModelT], raw: Any, what: str) -> ModelT:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            failure = PeerUnavailable(self.peer, f"{what} does not parse: {exc.error_count()} error(s)")
            raise self._failed(failure) from None


class SendsNotices(PeerClient):
    """A service that sends people notices (`homeroom/notices.py`)."""

    async def notices(self, *, token: str, limit: int = 200) -> Notices:
        """`GET /v1/notices`: the signed-in person's own notices, newest first."""
        return await self._get(Notices, "/v1/notices", token, {"limit": limit})


class ConsentClient(SendsNotices):
    """Consent's decision point (`homeroom/contracts/consent.py`) and agreement scopes; for a
    person (the portal): agreements, the family's choices, guardianship and the transparency texts."""

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

    # --- agreements (compliance staff, district staff) ---------------------------------------

    async def agreements(self, *, token: str, status: str, limit: int = 500) -> Agreements:
        """`GET /v1/agreements?status=`: agreements in that status."""
        return await self._get(Agreements, "/v1/agreements", token, {"status": status, "limit": limit})

    async def set_terms(self, agreement_id: str, terms: JsonObject, *, token: str) -> None:
        """`PUT /v1/agreements/{id}/terms`: a draft's terms replaced."""
        await self._call("PUT", f"/v1/agreements/{_segment(agreement_id)}/terms", {"terms": terms}, token=token)

    async def activate(self, agreement_id: str, *, token: str) -> None:
        """`POST /v1/agreements/{id}/activate`."""
        await self._call("POST", f"/v1/agreements/{_segment(agreement_id)}/activate", {}, token=token)

    async def suspend(self, agreement_id: str, reason: str, *, token: str) -> None:
        """`POST /v1/agreements/{id}/suspend` (containment after a breach)."""
        path = f"/v1/agreements/{_segment(agreement_id)}/suspend"
        await self._call("POST", path, {"reason": reason}, token=token)

    async def rotate_keys(self, agreement_id: str, *, token: str) -> KeyRotation:
        """`POST /v1/agreements/{id}/keys/rotate` (containment after a breach)."""
        raw = await self._call("POST", f"/v1/agreements/{_segment(agreement_id)}/keys/rotate", {}, token=token)
        return self._read(KeyRotation, raw, "a key rotation")

    async def denials(self, *, token: str) -> JsonObject:
        """`GET /v1/decisions/denials`: denials grouped by reason (a page shows them as sent)."""
        return await self._object("GET", "/v1/decisions/denials", token)

    async def public_agreements(self) -> PublicAgreements:
        """`GET /v1/public/agreements` (no sign-in): active agreements, and ended ones awaiting
        the recipient's certification."""
        return await self._get(PublicAgreements, "/v1/public/agreements", None)

    # --- a family's choices (parents) ---------------------------------------------------------

    async def choices(self, student_key: str, *, token: str) -> JsonObject:
        """`GET /v1/students/{key}/choices`: opt-outs and written consents, with their history."""
        return await self._object("GET", f"/v1/students/{_segment(student_key)}/choices", token)

    async def give_consent(
        self, student_key: str, *, district_id: str, recipient: str, elements: Sequence[str], method: str, token: str
    ) -> None:
        """`POST /v1/students/{key}/consents` (FERPA 99.30)."""
        body = {"district_id": district_id, "recipient": recipient, "elements": list(elements), "method": method}
        await self._call("POST", f"/v1/students/{_segment(student_key)}/consents", body, token=token)

    async def withdraw_consent(self, student_key: str, consent_id: str, *, method: str, token: str) -> None:
        """`POST /v1/students/{key}/consents/{id}/withdraw`."""
        path = f"/v1/students/{_segment(student_key)}/consents/{_segment(consent_id)}/withdraw"
        await self._call("POST", path, {"method": method}, token=token)

    async def directory_opt_out(
        self, student_key: str, *, district_id: str, method: str, token: str, rescind: bool = False
    ) -> None:
        """`POST /v1/students/{key}/directory-opt-out` (or `/rescind`)."""
        path = f"/v1/students/{_segment(student_key)}/directory-opt-out" + ("/rescind" if rescind else "")
        await self._call("POST", path, {"district_id": district_id, "method": method}, token=token)

    # --- guardianship (issue 24) --------------------------------------------------------------

    async def guardianships(self, district_id: str, *, token: str) -> Guardianships:
        """`GET /v1/districts/{d}/guardianships`: the district's links and codes."""
        return await self._get(Guardianships, f"/v1/districts/{_segment(district_id)}/guardianships", token)

    async def issue_linking_codes(
        self, district_id: str, students: Sequence[JsonObject], valid_days: int, *, token: str
    ) -> IssuedCodes:
        """`POST /v1/districts/{d}/linking-codes` (`homeroom/contracts/linking_codes.py`)."""
        body = {"students": list(students), "valid_days": valid_days}
        raw = await self._call("POST", f"/v1/districts/{_segment(district_id)}/linking-codes", body, token=token)
        return self._read(IssuedCodes, raw, "issued codes")

    async def guardianship_action(
        self,
        district_id: str,
        link_id: str,
        action: Literal["revoke", "accept", "decline"],
        *,
        reason: str | None,
        token: str,
    ) -> None:
        """`POST /v1/districts/{d}/guardianships/{link}/{revoke|accept|decline}`."""
        path = f"/v1/districts/{_segment(district_id)}/guardianships/{_segment(link_id)}/{action}"
        await self._call("POST", path, {} if reason is None else {"reason": reason}, token=token)

    async def redeem(self, code: str, client: str, *, token: str) -> Redemption:
        """`POST /v1/guardianship/redemptions`: a linking code redeemed by the signed-in person."""
        raw = await self._call("POST", "/v1/guardianship/redemptions", {"code": code, "client": client}, token=token)
        return self._read(Redemption, raw, "a redemption")

    async def guardian_links(self, *, token: str) -> Guardianships:
        """`GET /v1/guardianship/links`: the signed-in person's own links."""
        return await self._get(Guardianships, "/v1/guardianship/links", token)

    async def guardian_token(self, subject: str, *, service_token: str) -> str:
        """`POST /v1/internal/guardian-tokens` (role `service`): a parent token for a person
        signed in at the identity provider, from their current links."""
        raw = await self._call("POST", "/v1/internal/guardian-tokens", {"subject": subject}, token=service_token)
        return self._read(GuardianToken, raw, "a guardian token").token

    # --- the transparency page (issue 24) ----------------------------------------------------

    async def transparency_texts(self, district_id: str) -> TransparencyTexts:
        """`GET /v1/public/transparency/{d}` (no sign-in): the district's own answers."""
        return await self._get(TransparencyTexts, f"/v1/public/transparency/{_segment(district_id)}", None)

    async def save_transparency_text(self, district_id: str, question: int, text: str, *, token: str) -> None:
        """`PUT /v1/districts/{d}/transparency/{question}`."""
        path = f"/v1/districts/{_segment(district_id)}/transparency/{question}"
        await self._call("PUT", path, {"text": text}, token=token)


class RecordsClient(SendsNotices):
    """Records' internal endpoints (role `service`); for a person (the portal): a child's record,
    a district's students, correction requests, chronic absence and a vendor's roster."""

    peer = "records"

    async def transfer_package(self, request: TransferPackageRequest) -> dict[str, Any]:
        """The sending district's record, only the elements asked for (a transfer's package)."""
        return await self._object("POST", "/v1/internal/transfer-packages", None, request)

    async def transfer_delivery(self, request: TransferDeliveryRequest) -> dict[str, Any]:
        """Write a delivered package into the receiving district's record (idempotent on the case)."""
        return await self._object("POST", "/v1/internal/transfer-deliveries", None, request)

    async def district_students(
        self, district_id: str, student_keys: Sequence[str], *, token: str, on: date
    ) -> DistrictStudents:
        """`GET /v1/districts/{d}/student-names` with the person's own `token`, so records decides
        what that person may see: the district's own students among these keys (unknown keys
        left out), named, with their FERPA eligibility (99.5) on `on`. A caller who may see
        none of them (401, 403, 404) gets none."""
        none = DistrictStudents(district_id=district_id, names={})
        try:
            return await self.student_names(district_id, student_keys, token=token, on=on)
        except PeerUnavailable as exc:
            if exc.status in (401, 403, 404):
                return none
            raise

    async def student_names(
        self, district_id: str, student_keys: Sequence[str], *, token: str, on: date | None = None
    ) -> DistrictStudents:
        """`GET /v1/districts/{d}/student-names` with the person's own `token`: the district's own
        students among these keys, named (with their eligibility when asked `on` a day); a refusal
        is the caller's to handle."""
        if not student_keys:
            return DistrictStudents(district_id=district_id, names={})
        wanted: dict[str, Any] = {"student_key": list(student_keys)} | ({"on": on.isoformat()} if on else {})
        path = f"/v1/districts/{_segment(district_id)}/student-names"
        raw = await self._call("GET", path, params=httpx.QueryParams(wanted), token=token)
        return self._read(DistrictStudents, raw, f"{district_id}'s students")

    async def student(self, student_key: str, *, token: str) -> StudentRecords:
        """`GET /v1/students/{key}`: the child's record in every district (a parent, FERPA 99.10)."""
        return await self._get(StudentRecords, f"/v1/students/{_segment(student_key)}", token)

    async def district_student(self, district_id: str, student_key: str, *, token: str) -> StudentRecord:
        """`GET /v1/districts/{d}/students/{key}`: one of the district's own records (its staff)."""
        path = f"/v1/districts/{_segment(district_id)}/students/{_segment(student_key)}"
        return await self._get(StudentRecord, path, token)

    async def student_list(self, district_id: str, *, token: str, limit: int) -> StudentList:
        """`GET /v1/districts/{d}/students`: the district's students, first `limit`."""
        return await self._get(StudentList, f"/v1/districts/{_segment(district_id)}/students", token, {"limit": limit})

    async def chronic_absence(self, district_id: str, *, token: str) -> JsonObject:
        """`GET /v1/districts/{d}/chronic-absence`: the worklist (a page shows it as sent)."""
        return await self._object("GET", f"/v1/districts/{_segment(district_id)}/chronic-absence", token)

    async def amendments(self, district_id: str, *, token: str) -> Amendments:
        """`GET /v1/districts/{d}/amendments`: correction requests (FERPA 99.20), pending and decided."""
        return await self._get(Amendments, f"/v1/districts/{_segment(district_id)}/amendments", token)

    async def decide_amendment(self, amendment_id: str, *, outcome: str, reason: str, token: str) -> None:
        """`POST /v1/amendments/{id}/decision`."""
        body = {"outcome": outcome, "reason": reason}
        await self._call("POST", f"/v1/amendments/{_segment(amendment_id)}/decision", body, token=token)

    async def request_amendment(
        self,
        student_key: str,
        *,
        element: str,
        reason: str,
        requested_value: str | None,
        district_id: str | None,
        token: str,
    ) -> None:
        """`POST /v1/students/{key}/amendments` (a parent's correction request)."""
        body: dict[str, Any] = {"element": element, "reason": reason}
        body |= {"requested_value": requested_value} if requested_value else {}
        body |= {"district_id": district_id} if district_id else {}
        await self._call("POST", f"/v1/students/{_segment(student_key)}/amendments", body, token=token)

    async def file_statement(self, student_key: str, amendment_id: str, statement: str, *, token: str) -> None:
        """`POST /v1/students/{key}/amendments/{id}/statement` (FERPA 99.21)."""
        path = f"/v1/students/{_segment(student_key)}/amendments/{_segment(amendment_id)}/statement"
        await self._call("POST", path, {"statement": statement}, token=token)

    async def vendor_releases(self, *, token: str) -> JsonObject:
        """`GET {ROSTERING}/homeroom/releases`: what the vendor's agreement released, and when."""
        return await self._object("GET", f"{ROSTERING}/homeroom/releases", token)

    async def roster_zip(self, *, since: str | None, token: str) -> httpx.Response:
        """`GET {ROSTERING}/bulk.zip` streamed (a delta `since`): every student in it is a
        disclosure, recorded by records. The caller closes the answer."""
        return await self._stream(f"{ROSTERING}/bulk.zip", token, {"since": since})

    async def notice_preferences(self, request: NoticePreferencesRequest) -> NoticePreferences:
        raw = await self._call("POST", "/v1/internal/notice-preferences", request)
        return self._read(NoticePreferences, raw, "notice preferences")


class AuditClient(PeerClient):
    """The audit log's service endpoints; for a person (the portal): the log, its heads, keys,
    verification and export, a child's disclosures, and the public counts."""

    peer = "audit"

    async def present(self, disclosure_ids: Sequence[str]) -> set[str]:
        """Which of these disclosure ids the log holds (records' reconciliation)."""
        raw = await self._call(
            "POST", "/v1/internal/disclosures/present", DisclosuresPresent(disclosure_ids=list(disclosure_ids))
        )
        return set(self._read(PresentDisclosures, raw, "the disclosures present").present)

    async def sign_head(self) -> dict[str, Any]:
        """Sign a tree head now; the signed head."""
        return await self._object("POST", "/v1/tree-heads", None)

    async def latest_head(self, *, token: str) -> JsonObject | None:
        """`GET /v1/tree-heads/latest`; None before the first head."""
        found = await self._call("GET", "/v1/tree-heads/latest", missing=True, token=token)
        return found if isinstance(found, dict) else None

    async def checkpoint(self, *, token: str) -> JsonObject | None:
        """`GET /v1/checkpoint`: the latest head a witness cosigned; None before the first."""
        found = await self._call("GET", "/v1/checkpoint", missing=True, token=token)
        return found if isinstance(found, dict) else None

    async def verification(self, *, token: str) -> JsonObject:
        """`GET /v1/verification`: the whole stored log checked now (a page shows the report)."""
        return await self._object("GET", "/v1/verification", token)

    async def entries(self, filters: Mapping[str, str], *, after: int | None, limit: int, token: str) -> EntryPage:
        """`GET /v1/entries`: one page of the log, with the search's filters."""
        return await self._get(EntryPage, "/v1/entries", token, {**filters, "after": after, "limit": limit})

    async def entry(self, seq: int, *, token: str) -> JsonObject:
        """`GET /v1/entries/{seq}`: one entry with its inclusion proof (checked by the caller)."""
        return await self._object("GET", f"/v1/entries/{seq}", token)

    async def keys(self, *, token: str) -> PublishedKeys:
        """`GET /v1/keys`: the log's public keys by key id."""
        return await self._get(PublishedKeys, "/v1/keys", token)

    async def export(self, fmt: Literal["jsonl", "csv"], *, token: str) -> httpx.Response:
        """`GET /v1/export` streamed; the caller closes the answer."""
        return await self._stream("/v1/export", token, {"format": fmt})

    async def student_disclosures(self, student_key: str, *, token: str) -> StudentDisclosures:
        """`GET /v1/students/{key}/disclosures`: who received the child's data (FERPA 99.32)."""
        return await self._get(StudentDisclosures, f"/v1/students/{_segment(student_key)}/disclosures", token)

    async def disclosure_counts(self, district_id: str) -> DisclosureCounts:
        """`GET /v1/public/disclosure-counts/{d}` (no sign-in)."""
        return await self._get(DisclosureCounts, f"/v1/public/disclosure-counts/{_segment(district_id)}", None)

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


class IngestClient(PeerClient):
    """Ingest's submissions, for a district's staff (the portal)."""

    peer = "ingest"

    async def submissions(self, district_id: str, *, token: str, limit: int = 50) -> Submissions:
        """`GET /v1/districts/{d}/submissions`, newest first."""
        return await self._get(
            Submissions, f"/v1/districts/{_segment(district_id)}/submissions", token, {"limit": limit}
        )

    async def submission(self, submission_id: str, *, token: str) -> JsonObject:
        """`GET /v1/submissions/{id}`: the submission's report (a page shows it as sent)."""
        return await self._object("GET", f"/v1/submissions/{_segment(submission_id)}", token)

    async def problems(self, submission_id: str, *, after: int | None, limit: int, token: str) -> ProblemPage:
        """`GET /v1/submissions/{id}/problems`: one page of refused records."""
        path = f"/v1/submissions/{_segment(submission_id)}/problems"
        return await self._get(ProblemPage, path, token, {"limit": limit, "after": after})

    async def confirm(self, submission_id: str, *, token: str) -> None:
        """`POST /v1/submissions/{id}/confirm`: a held bulk upload released."""
        await self._call("POST", f"/v1/submissions/{_segment(submission_id)}/confirm", {}, token=token)


class TransferClient(SendsNotices):
    """Transfer cases, for a district's staff and a parent (the portal)."""

    peer = "transfer"

    async def transfers(self, *, token: str, direction: str | None = None, limit: int = 100) -> Transfers:
        """`GET /v1/transfers`: the cases the person may see (`direction`: inbound or outbound)."""
        return await self._get(Transfers, "/v1/transfers", token, {"direction": direction, "limit": limit})

    async def case(self, case_id: str, *, token: str) -> TransferCase:
        """`GET /v1/transfers/{case_id}`: the case with its history."""
        return await self._get(TransferCase, f"/v1/transfers/{_segment(case_id)}", token)

    async def acknowledge(self, case_id: str, *, note: str, token: str) -> None:
        """`POST /v1/transfers/{case_id}/acknowledge` (the receiving district)."""
        await self._call("POST", f"/v1/transfers/{_segment(case_id)}/acknowledge", {"note": note}, token=token)

    async def reject(self, case_id: str, *, reason_code: str, note: str, token: str) -> None:
        """`POST /v1/transfers/{case_id}/reject` (the receiving district)."""
        body = {"reason_code": reason_code, "note": note}
        await self._call("POST", f"/v1/transfers/{_segment(case_id)}/reject", body, token=token)


IncidentStep = Literal["scope", "cpo-report", "letters", "containment", "publication", "close"]


class IncidentsClient(SendsNotices):
    """Breach incidents (issue 21), for compliance and district staff and a parent (the portal)."""

    peer = "incidents"

    async def incidents(self, *, token: str) -> Incidents:
        """`GET /v1/incidents`."""
        return await self._get(Incidents, "/v1/incidents", token)

    async def incident(self, incident_id: str, *, token: str) -> Incident:
        """`GET /v1/incidents/{id}`: the incident with its clocks, scopes and steps."""
        return await self._get(Incident, f"/v1/incidents/{_segment(incident_id)}", token)

    async def open(self, report: JsonObject, *, token: str) -> OpenedIncident:
        """`POST /v1/incidents`: a breach recorded; its deadlines start."""
        raw = await self._call("POST", "/v1/incidents", report, token=token)
        return self._read(OpenedIncident, raw, "an opened incident")

    async def step(self, incident_id: str, step: IncidentStep, body: JsonObject | None, *, token: str) -> None:
        """`POST /v1/incidents/{id}/{scope|cpo-report|letters|containment|publication|close}`:
        one step of the response (None: no body)."""
        await self._call("POST", f"/v1/incidents/{_segment(incident_id)}/{step}", body or {}, token=token)

    async def letters(self, incident_id: str, *, after: str | None, limit: int, token: str) -> LetterPage:
        """`GET /v1/incidents/{id}/letters`: one page of the letters sent."""
        path = f"/v1/incidents/{_segment(incident_id)}/letters"
        return await self._get(LetterPage, path, token, {"limit": limit, "after": after or None})

    async def scope_bundle(self, incident_id: str, version: int, *, token: str) -> httpx.Response:
        """`GET /v1/incidents/{id}/scope/{version}/bundle` streamed; the caller closes it."""
        return await self._stream(f"/v1/incidents/{_segment(incident_id)}/scope/{version}/bundle", token)

    async def report(self, incident_id: str, report_id: str, fmt: Literal["text", "json"], *, token: str) -> bytes:
        """`GET /v1/incidents/{id}/reports/{report_id}?format=`: a report as sent, read whole."""
        path = f"/v1/incidents/{_segment(incident_id)}/reports/{_segment(report_id)}"
        response = await self._stream(path, token, {"format": fmt})
        try:
            return await response.aread()
        finally:
            await response.aclose()

    async def breach_letters(self, student_key: str, *, token: str) -> BreachLetters:
        """`GET /v1/students/{key}/breach-letters` (8 NYCRR 121.10(e)): a parent's letters."""
        return await self._get(BreachLetters, f"/v1/students/{_segment(student_key)}/breach-letters", token)

    async def public_breach_notices(self) -> BreachNotices:
        """`GET /v1/public/breach-notices` (no sign-in)."""
        return await self._get(BreachNotices, "/v1/public/breach-notices", None)


class ReportsClient(PeerClient):
    """Published statistics (no sign-in) and a district's own numbers (its staff), the models
    of `homeroom/contracts/reports.py`."""

    peer = "reports"

    async def snapshots(self, *, limit: int = 100) -> SnapshotList:
        """`GET /v1/public/snapshots`."""
        return await self._get(SnapshotList, "/v1/public/snapshots", None, {"limit": limit})

    async def snapshot(self, snapshot_id: str, part: Mapping[str, str | int]) -> Snapshot:
        """`GET /v1/public/snapshots/{id}` filtered to `part` (district, level, column, limit)."""
        return await self._get(Snapshot, f"/v1/public/snapshots/{_segment(snapshot_id)}", None, part)

    async def snapshot_csv(self, snapshot_id: str, *, district: str | None, column: str | None) -> httpx.Response:
        """`GET /v1/public/snapshots/{id}/csv`, read whole (its body and Content-Disposition)."""
        path = f"/v1/public/snapshots/{_segment(snapshot_id)}/csv"
        response = await self._stream(path, None, {"district": district, "column": column})
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def district_numbers(self, district_id: str, *, school_year: int | None, token: str) -> DistrictNumbers:
        """`GET /v1/districts/{d}/numbers`: the district's own, unsuppressed (its staff only)."""
        path = f"/v1/districts/{_segment(district_id)}/numbers"
        return await self._get(DistrictNumbers, path, token, {"school_year": school_year})

    async def district_preview(self, district_id: str, *, school_year: int | None, token: str) -> Snapshot:
        """`GET /v1/districts/{d}/preview`: what the public would see of the district."""
        path = f"/v1/districts/{_segment(district_id)}/preview"
        return await self._get(Snapshot, path, token, {"school_year": school_year})
