"""A test peer for the consent service's decision point: a tiny real FastAPI app that
implements `POST /v1/decisions`, `POST /v1/decisions/batch`, `POST /v1/decisions/screen` and
`GET /v1/agreements/{agreement_id}/scope` exactly as docs/contracts.md specifies them,
for the cases the records tests need. It is NOT the consent service (services/consent
builds that); records talks to it over HTTP through its real `ConsentClient` and an
httpx ASGI transport, as it will talk to the real one.

Rules, in the contract's order: a parent of the student gets everything requested; staff
of the owning district get everything; `transfer` gets transferable elements; a vendor
gets the intersection of the request and its active agreement's elements for a covered
district and school, on dates inside the term, for a permitted purpose; directory
elements of an opted-out student are withheld from everyone but the parent and the
owning district. Everything else is denied.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from homeroom.auth import AuthenticationError, Role, TokenVerifier
from homeroom.catalogue import CATALOGUE, LegalBasis, Sensitivity

POLICY_VERSION = "consent-policy/1"


@dataclass
class PeerAgreement:
    agreement_id: str
    organization: str
    districts: list[str]
    elements: list[str]
    schools: list[str] = field(default_factory=list)
    purposes: list[str] = field(default_factory=lambda: ["instruction", "rostering"])
    start_date: str = "2026-01-01"
    end_date: str = "2027-06-30"
    status: str = "active"
    version: int = 1

    def active_on(self, day: date) -> bool:
        return self.status == "active" and date.fromisoformat(self.start_date) <= day <= date.fromisoformat(
            self.end_date
        )


@dataclass
class PeerState:
    agreements: dict[str, PeerAgreement] = field(default_factory=dict)
    opt_outs: set[tuple[str, str]] = field(default_factory=set)  # (district, student key)
    today: date = field(default_factory=date.today)
    decisions: list[dict[str, Any]] = field(default_factory=list)  # every answer given, for assertions
    up: bool = True


def _answer(
    request: dict[str, Any],
    allowed: list[str],
    legal_basis: str,
    reason: str,
    agreement: PeerAgreement | None = None,
    withheld: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "decision_id": str(uuid.uuid4()),
        "allow": bool(allowed),
        "legal_basis": legal_basis,
        "elements_allowed": allowed,
        "elements_withheld": withheld
        or [{"element": e, "reason": reason} for e in request.get("elements", []) if e not in allowed],
        "reason": reason,
        "agreement_id": agreement.agreement_id if agreement else None,
        "agreement_version": agreement.version if agreement else None,
        "purpose": request.get("purpose"),
        "redisclosure_parties": [],
        "policy_version": POLICY_VERSION,
    }


def decide(state: PeerState, request: dict[str, Any]) -> dict[str, Any]:
    requester = request.get("requester") or {}
    role = requester.get("role")
    key = request["student_key"]
    district = request["district_id"]
    wanted = [e for e in request.get("elements", []) if e in CATALOGUE]
    if role == "parent" and key in (requester.get("student_keys") or []):
        return _answer(request, wanted, LegalBasis.PARENT.value, "parent of the student (FERPA 99.10)")
    if role in ("district_staff", "school_staff") and requester.get("district_id") == district:
        return _answer(request, wanted, LegalBasis.SCHOOL_OFFICIAL.value, "staff of the owning district")
    directory_withheld = (district, key) in state.opt_outs
    if request.get("action") == "transfer":
        allowed = [e for e in wanted if CATALOGUE[e].transferable]
        return _answer(request, allowed, LegalBasis.TRANSFER.value, "transfer to the enrolling school")
    if role == "vendor":
        agreement = state.agreements.get(requester.get("agreement_id") or "")
        if agreement is None:
            return _answer(request, [], "", "no agreement")
        day = date.fromisoformat(request["data_date"]) if request.get("data_date") else state.today
        if not agreement.active_on(state.today) or not agreement.active_on(day):
            return _answer(request, [], "", f"agreement {agreement.agreement_id} is not active or has ended", agreement)
        if district not in agreement.districts:
            return _answer(request, [], "", f"district {district} is not covered", agreement)
        school = request.get("school_id")
        if agreement.schools and school not in agreement.schools:
            return _answer(request, [], "", f"school {school} is not covered", agreement)
        purpose = request.get("purpose")
        if purpose and purpose not in agreement.purposes:
            return _answer(request, [], "", f"purpose {purpose} is not permitted", agreement)
        allowed = [e for e in wanted if e in agreement.elements]
        if directory_withheld:
            allowed = [e for e in allowed if CATALOGUE[e].sensitivity is not Sensitivity.DIRECTORY]
        return _answer(
            request,
            allowed,
            LegalBasis.SCHOOL_OFFICIAL.value,
            f"agreement {agreement.agreement_id} v{agreement.version} is active and covers district {district}",
            agreement,
        )
    return _answer(request, [], "", "no rule permits this release")


def consent_peer(state: PeerState, verifier: TokenVerifier) -> FastAPI:
    app = FastAPI(title="consent test peer")

    def caller(request: Request) -> Any:
        header = request.headers.get("authorization", "")
        token = header.partition(" ")[2]
        try:
            return verifier.verify(token)
        except AuthenticationError:
            return None

    @app.post("/v1/decisions")
    async def decisions(request: Request) -> JSONResponse:
        if not state.up:
            return JSONResponse({"title": "down"}, status_code=503)
        principal = caller(request)
        if principal is None or principal.role is not Role.SERVICE:
            return JSONResponse({"title": "forbidden"}, status_code=403)
        answer = decide(state, await request.json())
        state.decisions.append(answer)
        return JSONResponse(answer)

    @app.post("/v1/decisions/batch")
    async def batch(request: Request) -> JSONResponse:
        if not state.up:
            return JSONResponse({"title": "down"}, status_code=503)
        principal = caller(request)
        if principal is None or principal.role is not Role.SERVICE:
            return JSONResponse({"title": "forbidden"}, status_code=403)
        body = await request.json()
        answers = [decide(state, r) for r in body["requests"]]
        state.decisions.extend(answers)
        return JSONResponse({"decisions": answers})

    @app.post("/v1/decisions/screen")
    async def screen(request: Request) -> JSONResponse:
        if not state.up:
            return JSONResponse({"title": "down"}, status_code=503)
        principal = caller(request)
        if principal is None or principal.role is not Role.SERVICE:
            return JSONResponse({"title": "forbidden"}, status_code=403)
        body = await request.json()
        withheld = []
        answers: dict[tuple[object, ...], bool] = {}  # the rules see a student by school and opt-out only
        for key, school, *_ in body["students"]:
            same = (school, (body["district_id"], key) in state.opt_outs)
            if same not in answers:
                one = {"action": "read", "requester": body["requester"], "student_key": key,
                       "district_id": body["district_id"], "school_id": school, "elements": body["elements"],
                       "purpose": body.get("purpose")}  # fmt: skip
                answer = decide(state, one)
                answers[same] = answer["allow"] and set(body.get("require") or ()) <= set(answer["elements_allowed"])
            if not answers[same]:
                withheld.append(key)
        return JSONResponse({"withheld": withheld})

    @app.get("/v1/agreements/{agreement_id}/scope")
    async def scope(agreement_id: str, request: Request) -> JSONResponse:
        if not state.up:
            return JSONResponse({"title": "down"}, status_code=503)
        principal = caller(request)
        if principal is None or not (
            principal.role is Role.SERVICE or (principal.role is Role.VENDOR and principal.agreement_id == agreement_id)
        ):
            return JSONResponse({"title": "forbidden"}, status_code=403)
        agreement = state.agreements.get(agreement_id)
        if agreement is None:
            return JSONResponse({"title": "not found"}, status_code=404)
        return JSONResponse(
            {
                "agreement_id": agreement.agreement_id,
                "version": agreement.version,
                "status": agreement.status,
                "active": agreement.active_on(state.today),
                "organization": agreement.organization,
                "districts": agreement.districts,
                "schools": agreement.schools,
                "elements": agreement.elements,
                "purposes": agreement.purposes,
                "start_date": agreement.start_date,
                "end_date": agreement.end_date,
            }
        )

    return app
