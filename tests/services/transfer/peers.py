"""A records peer for the transfer service's tests: a FastAPI app served by uvicorn on a
local port, implementing records' internal transfer endpoints as docs/contracts.md describes
them, which a test can make refuse a package, fail deliveries or answer slowly. The transfer
service reaches it over real HTTP with real service tokens, through the client it uses in
production. (Consent is the real service: tests/services/transfer/conftest.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, HTTPException

from homeroom.auth import Role, TokenVerifier


def _require_service(verifier: TokenVerifier, authorization: str | None) -> None:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "missing token")
    principal = verifier.verify(authorization.removeprefix("Bearer "))
    if principal.role is not Role.SERVICE:
        raise HTTPException(403, "service role required")


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
