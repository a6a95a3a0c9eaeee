"""Use cases of a district's transparency answers (issue 24): its staff answer the 32
questions of seed 001 for their own district (`put_answer`); anyone reads them (`answers`).
The portal's transparency page puts them beside Homeroom's own (`homeroom/transparency.py`)."""

from __future__ import annotations

from datetime import date
from typing import Any

from homeroom.auth import Principal
from homeroom.problems import Problem, problem_type
from homeroom.transparency import QUESTIONS
from services.consent import transparency_store as store
from services.consent.state import ConsentRuntime


async def put_answer(
    runtime: ConsentRuntime, principal: Principal, district_id: str, question: str, text: str, reviewed_on: date | None
) -> dict[str, Any]:
    """The district's own answer to one question (1-32), reviewed today unless another date is given."""
    principal.require_district(district_id)  # before anything about the request is judged
    if not question.isdigit() or not 1 <= int(question) <= len(QUESTIONS):
        raise Problem(
            404,
            "No such question",
            f"questions are numbered 1 to {len(QUESTIONS)}",
            type=problem_type("not-found"),
        )
    reviewed = reviewed_on or runtime.clock().date()
    async with runtime.pool.acquire() as conn:
        await store.put_answer(conn, district_id, int(question), text.strip(), reviewed, principal.subject)
    return {"district_id": district_id, "question": int(question), "reviewed_on": reviewed.isoformat()}


async def answers(runtime: ConsentRuntime, district_id: str) -> dict[str, Any]:
    """The district's own answers, by question number, with their review dates."""
    async with runtime.pool.acquire() as conn:
        found = await store.answers(conn, district_id)
    return {"district_id": district_id, "answers": {str(k): v for k, v in found.items()}}
