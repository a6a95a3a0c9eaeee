"""Client of the consent service's decision point (docs/contracts.md, "Consent").

Records asks before releasing anything outside the owning district's own staff. Any
failure to get an answer (no URL configured, connection refused, timeout, a non-200
answer, an answer that does not parse) raises `ConsentUnavailable`, and callers then
release nothing: records fails closed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from homeroom.contracts.agreement_scope import AgreementScope, UnreadableScope
from homeroom.problems import FieldError, Problem

__all__ = ["AgreementScope", "ConsentClient", "ConsentUnavailable", "Decision", "DecisionRequest"]


class ConsentUnavailable(Exception):
    """No usable answer from the consent service; nothing may be released."""


def _refused_request(response: httpx.Response) -> Problem:
    """Consent's 400/422 as the caller's 422, with consent's field errors (nothing released)."""
    errors: list[FieldError] = []
    try:
        body = response.json()
        for error in body.get("errors") or []:
            errors.append(
                FieldError(str(error.get("field", "")), str(error.get("rule", "")), str(error.get("message", "")))
            )
    except (ValueError, AttributeError, TypeError):
        pass
    if not errors:
        errors = [FieldError("query", "consent.request_refused", "the consent service refused the request as invalid")]
    return Problem.validation(errors)


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    action: str
    requester: dict[str, Any]
    student_key: str
    district_id: str
    elements: Sequence[str]
    school_id: str | None = None
    class_ids: Sequence[str] | None = None
    purpose: str | None = None
    data_date: str | None = None
    to_district_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "requester": self.requester,
            "student_key": self.student_key,
            "district_id": self.district_id,
            "school_id": self.school_id,
            "class_ids": list(self.class_ids) if self.class_ids is not None else None,
            "elements": list(self.elements),
            "purpose": self.purpose,
            "data_date": self.data_date,
            "to_district_id": self.to_district_id,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    decision_id: str
    allow: bool
    legal_basis: str
    elements_allowed: tuple[str, ...]
    elements_withheld: tuple[dict[str, str], ...]
    reason: str
    agreement_id: str | None
    agreement_version: int | None
    purpose: str | None
    redisclosure_parties: tuple[str, ...] = ()
    policy_version: str = ""

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Decision:
        try:
            allow = bool(raw["allow"])
            allowed = tuple(str(e) for e in raw.get("elements_allowed") or ()) if allow else ()
            return cls(
                decision_id=str(raw["decision_id"]),
                allow=allow and bool(allowed),
                legal_basis=str(raw.get("legal_basis") or ""),
                elements_allowed=allowed,
                elements_withheld=tuple(dict(w) for w in raw.get("elements_withheld") or ()),
                reason=str(raw.get("reason") or ""),
                agreement_id=raw.get("agreement_id"),
                agreement_version=raw.get("agreement_version"),
                purpose=raw.get("purpose"),
                redisclosure_parties=tuple(str(p) for p in raw.get("redisclosure_parties") or ()),
                policy_version=str(raw.get("policy_version") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConsentUnavailable(f"the consent service answered with an unreadable decision: {exc!r}") from None


class ConsentClient:
    """`ConsentClient(base_url, token_fn, transport=None)`; `token_fn` returns a bearer
    token of role `service` (the runtime's `service_token`). Tests pass an ASGI transport."""

    def __init__(
        self,
        base_url: str,
        token_fn: Callable[[], str],
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.base_url = base_url
        self._token_fn = token_fn
        self._client = (
            httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout_s) if base_url else None
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _call(self, method: str, path: str, json: dict[str, Any] | None = None) -> Any:
        if self._client is None:
            raise ConsentUnavailable("no consent service is configured (HOMEROOM_CONSENT_URL)")
        try:
            response = await self._client.request(
                method, path, json=json, headers={"Authorization": f"Bearer {self._token_fn()}"}
            )
        except (httpx.HTTPError, OSError) as exc:
            raise ConsentUnavailable(f"the consent service is unreachable: {type(exc).__name__}") from None
        if response.status_code == 404 and path.startswith("/v1/agreements/"):
            return None
        if response.status_code in (400, 422):
            # The caller's own request broke a rule (an over-long purpose): their error, named
            # as consent named it, never "consent unavailable" with a Retry-After.
            raise _refused_request(response)
        if response.status_code != 200:
            raise ConsentUnavailable(f"the consent service answered {response.status_code} to {method} {path}")
        try:
            return response.json()
        except ValueError:
            raise ConsentUnavailable("the consent service answered with something that is not JSON") from None

    async def decide(self, request: DecisionRequest) -> Decision:
        raw = await self._call("POST", "/v1/decisions", request.to_json())
        if not isinstance(raw, dict):
            raise ConsentUnavailable("the consent service answered a decision with a non-object")
        return Decision.from_json(raw)

    async def decide_many(self, requests: Sequence[DecisionRequest]) -> list[Decision]:
        out: list[Decision] = []
        for start in range(0, len(requests), 1000):
            chunk = requests[start : start + 1000]
            raw = await self._call("POST", "/v1/decisions/batch", {"requests": [r.to_json() for r in chunk]})
            decisions = raw.get("decisions") if isinstance(raw, dict) else None
            if not isinstance(decisions, list) or len(decisions) != len(chunk):
                raise ConsentUnavailable("the consent service answered a batch with the wrong number of decisions")
            out.extend(Decision.from_json(d) for d in decisions)
        return out

    async def screen(
        self,
        requester: dict[str, Any],
        district_id: str,
        students: Sequence[tuple[str, str | None, Sequence[str] | None]],
        elements: Sequence[str],
        require: Sequence[str] = (),
        purpose: str | None = None,
    ) -> set[str]:
        """The students (key, school) a read of `elements` would release nothing to, or not every
        element of `require` (consent's rules; nothing released, nothing logged): for counts."""
        out: set[str] = set()
        for start in range(0, len(students), 200_000):
            raw = await self._call(
                "POST",
                "/v1/decisions/screen",
                {
                    "requester": requester,
                    "district_id": district_id,
                    "elements": list(elements),
                    "require": list(require),
                    "purpose": purpose,
                    "students": [list(s) for s in students[start : start + 200_000]],
                },
            )
            withheld = raw.get("withheld") if isinstance(raw, dict) else None
            if not isinstance(withheld, list):
                raise ConsentUnavailable("the consent service answered a screen without a list of students")
            out.update(str(k) for k in withheld)
        return out

    async def scope(self, agreement_id: str) -> AgreementScope | None:
        """The agreement's scope, or None when the consent service does not know it."""
        raw = await self._call("GET", f"/v1/agreements/{quote(agreement_id, safe='')}/scope")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise ConsentUnavailable("the consent service answered a scope with a non-object")
        try:
            return AgreementScope.from_json(raw)
        except UnreadableScope as exc:
            raise ConsentUnavailable(f"the consent service answered with {exc}") from None
