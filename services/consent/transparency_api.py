"""A district's own answers to the 32 questions of seed 001 (issue 24): entered by its staff,
read by anyone. The portal's transparency page puts them beside Homeroom's own answers
(`homeroom/transparency.py`). See docs/services/consent.md."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from homeroom.auth import Principal, Role, require_roles
from homeroom.problems import Problem, problem_type
from homeroom.service import RuntimeDep
from homeroom.transparency import QUESTIONS
from services.consent import transparency_store as store
from services.consent.application import clock

router = APIRouter(tags=["transparency"])
DistrictStaff = Annotated[Principal, Depends(require_roles(Role.DISTRICT_STAFF))]
District = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]


class DistrictAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=8000)
    reviewed_on: date | None = Field(default=None, description="default: today")


@router.put("/v1/districts/{district_id}/transparency/{question}")
async def put_answer(
    district_id: District, question: str, body: DistrictAnswer, principal: DistrictStaff, runtime: RuntimeDep
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
    reviewed = body.reviewed_on or clock(runtime).date()
    async with runtime.pool.acquire() as conn:
        await store.put_answer(conn, district_id, int(question), body.text.strip(), reviewed, principal.subject)
    return {"district_id": district_id, "question": int(question), "reviewed_on": reviewed.isoformat()}


@router.get("/v1/public/transparency/{district}")
async def answers(district: District, runtime: RuntimeDep) -> dict[str, Any]:
    """No sign-in: the district's own answers, by question number, with their review dates."""
    async with runtime.pool.acquire() as conn:
        found = await store.answers(conn, district)
    return {"district_id": district, "answers": {str(k): v for k, v in found.items()}}
