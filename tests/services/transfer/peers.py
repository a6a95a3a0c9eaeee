"""Tiny but real peers for the transfer service's tests: FastAPI apps served by uvicorn on
a local port, implementing the consent decision API and records' internal transfer
endpoints exactly as docs/contracts.md describes them. They stand in until the real
consent and records services exist; the transfer service reaches them over real HTTP
with real service tokens, through the same clients it uses in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, HTTPException

from homeroom.auth import Role, TokenVerifier
from homeroom.catalogue import ELEMENTS, LegalBasis


def _require_service(verifier: TokenVerifier, authorization: str | None) -> None:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "missing token")
    principal = verifier.verify(authorization.removeprefix("Bearer "))
    if principal.role is not Role.SERVICE:
        raise HTTPException(403, "service role required")


@dataclass
class ConsentPeer:
    verifier: TokenVerifier
    not_transferable: dict[str, set[str]] = field(default_factory=dict)  # district → elements it marked
    deny_to: set[str] = field(default_factory=set)  # receiving districts to deny (to test refusal)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/decisions")
        async def decide(body: dict[str, Any], authorization: str | None = Header(default=None)) -> dict[str, Any]:
            _require_service(self.verifier, authorization)
            self.requests.append(body)
            if body.get("action") != "transfer" or not body.get("to_district_id"):
                raise HTTPException(422, "this peer only decides transfers")
            asked = list(body.get("elements") or [])
            if body["to_district_id"] in self.deny_to:
                return self._answer(False, [], [{"element": e, "reason": "denied"} for e in asked], "no release")
            marked = self.not_transferable.get(body.get("district_id", ""), set())
            catalogue = {e.id: e for e in ELEMENTS}
            allowed, withheld = [], []
            for e in asked:
                if e not in catalogue or not catalogue[e].transferable:
                    withheld.append({"element": e, "reason": "not transferable under FERPA 99.31(a)(2) policy"})
                elif e in marked:
                    withheld.append({"element": e, "reason": f"marked not transferable by {body['district_id']}"})
                else:
                    allowed.append(e)
            return self._answer(True, allowed, withheld, "release to the enrolling school")

        return app

    @staticmethod
    def _answer(allow: bool, allowed: list[str], withheld: list[dict[str, str]], reason: str) -> dict[str, Any]:
        return {
            "decision_id": str(uuid.uuid4()),
            "allow": allow,
            "legal_basis": LegalBasis.TRANSFER.value if allow else "",
            "elements_allowed": allowed,
            "elements_withheld": withheld,
            "reason": reason,
            "agreement_id": None,
            "agreement_version": None,
            "purpose": "records_transfer",
            "redisclosure_parties": [],
            "policy_version": "consent-policy/1",
        }


@dataclass
class RecordsPeer:
    verifier: TokenVerifier
    students: dict[str, dict[str, Any]] = field(default_factory=dict)  # student key → full record
    deliveries: dict[str, dict[str, Any]] = field(default_factory=dict)  # case id → delivered body
    delivery_calls: list[str] = field(default_factory=list)
    package_calls: list[dict[str, Any]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # student keys whose package is refused (422)
    fail_deliveries: int = 0  # answer 503 to this many delivery calls
    deliver_delay_s: float = 0.0
    delivery_started: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/internal/transfer-packages")
        async def package(body: dict[str, Any], authorization: str | None = Header(default=None)) -> dict[str, Any]:
            _require_service(self.verifier, authorization)
            self.package_calls.append(body)
            if body["student_key"] in self.refuse:
                raise HTTPException(422, "the sending district has put this record on legal hold")
            record = self.students.get(body["student_key"])
            if record is None:
                raise HTTPException(404, "no such student in the sending district")
            asked = set(body["elements"])
            return {
                "case_id": body["case_id"],
                "student_key": body["student_key"],
                "from_district_id": body["from_district_id"],
                "elements": {k: v for k, v in record["elements"].items() if k in asked},
                "enrollments": record["enrollments"] if "enrollment.school_id" in asked else [],
                "attendance": {
                    "days": record["attendance"]["days"] if "attendance.daily" in asked else [],
                    "summary": record["attendance"]["summary"] if "attendance.summary" in asked else {},
                },
                "suspension_dates": record["suspension_dates"] if "discipline.suspension_dates" in asked else [],
                "program_flags": [f for f in record["program_flags"] if f"program.{f}" in asked],
                "parent_statements": record["parent_statements"] if "record.parent_statement" in asked else [],
                "elements_included": sorted(k for k in record["elements"] if k in asked),
            }

        @app.post("/v1/internal/transfer-deliveries")
        async def deliver(body: dict[str, Any], authorization: str | None = Header(default=None)) -> dict[str, Any]:
            _require_service(self.verifier, authorization)
            self.delivery_calls.append(body["case_id"])
            if self.fail_deliveries > 0:
                self.fail_deliveries -= 1
                raise HTTPException(503, "records is down")
            self.deliveries.setdefault(body["case_id"], body)  # idempotent on case_id
            self.delivery_started.set()
            if self.deliver_delay_s:
                await asyncio.sleep(self.deliver_delay_s)
            return {"case_id": body["case_id"], "delivered": True}

        return app


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` on a free local port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for this)
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()


def sample_record(first_name: str = "Ana") -> dict[str, Any]:
    return {
        "elements": {
            "student.first_name": first_name,
            "student.last_name": "Lopez",
            "student.birth_date": "2014-03-02",
            "health.immunizations": "MMR 2019",  # district A marks this not transferable in the tests
            "program.iep": "true",
            "enrollment.grade_level": "5",
        },
        "enrollments": [{"school_id": "a-1", "entry_date": "2025-08-20", "exit_date": "2026-10-30"}],
        "attendance": {
            "days": [{"date": "2026-10-01", "category": "absent", "excused": True}],
            "summary": {"days_enrolled": 40, "days_absent": 1},
        },
        "suspension_dates": ["2026-09-15"],
        "program_flags": ["iep", "section_504"],
        "parent_statements": [{"date": "2026-10-02", "text": "We dispute the September grade."}],
    }
