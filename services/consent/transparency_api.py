"""HTTP routes of a district's own answers to the 32 questions of seed 001 (issue 24): entered
by its staff, read by anyone; thin adapters over `application/transparency.py`. See
docs/services/consent.md."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from homeroom.auth import Principal, Role, require_roles
from services.consent.application import transparency
from services.consent.state import RuntimeDep

router = APIRouter(tags=["transparency"])
TAGS = {"transparency": "A district's own answers to the 32 questions of seed 001."}
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
    return await transparency.put_answer(runtime, principal, district_id, question, body.text, body.reviewed_on)


@router.get("/v1/public/transparency/{district}")
async def answers(district: District, runtime: RuntimeDep) -> dict[str, Any]:
    """No sign-in: the district's own answers, by question number, with their review dates."""
    return await transparency.answers(runtime, district)
