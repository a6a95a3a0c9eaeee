"""A district's transparency page (issue 24): the 32 questions of seed 001 answered from
Homeroom's own data and the district's text, with review dates and the missing answers counted
(`homeroom/transparency.py`); public at /districts/{d}/transparency, and for the district's staff
at /district/transparency with a form for each answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Path, Request
from starlette.responses import RedirectResponse, Response

from homeroom.contracts.answers import raw_all
from homeroom.transparency import Answer, Facts, answers
from services.portal.clients import UpstreamError
from services.portal.web import DistrictStaff, OptionalSession, Portal, PortalDep, show

router = APIRouter(include_in_schema=False)
District = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]


async def district_answers(portal: Portal, district: str, portal_url: str) -> list[Answer]:
    public = await portal.services.consent.public_agreements()
    agreements = raw_all(public.covering([district]))
    try:
        counts = (await portal.services.audit.disclosure_counts(district)).counts
    except UpstreamError:
        counts = []  # the page stands without them; question 9 then says what it knows
    own = await portal.services.consent.transparency_texts(district)
    texts: dict[int, dict[str, Any]] = {int(k): v for k, v in own.answers.items()}
    facts = Facts(district, agreements, counts, portal_url, portal.clock().date())
    return answers(facts, texts)


@dataclass(frozen=True, slots=True)
class Transparency:
    """The page, public or (`editable`) with a form for each answer the district gives."""

    template: ClassVar[str] = "transparency.html"
    district: str
    answers: list[Answer]
    editable: bool
    missing: list[int]  # the questions with no answer yet
    awaiting: list[int]  # the questions still waiting for the district's own answer

    @classmethod
    async def of(cls, portal: Portal, request: Request, district: str, *, editable: bool) -> Transparency:
        found = await district_answers(portal, district, str(request.base_url).rstrip("/"))
        missing = [a.number for a in found if a.missing]
        awaiting = [a.number for a in found if a.needs_district and not a.district]
        return cls(district, found, editable, missing, awaiting)


@router.get("/districts/{district_id}/transparency")
async def public_page(request: Request, portal: PortalDep, session: OptionalSession, district_id: District) -> Response:
    return show(request, session, await Transparency.of(portal, request, district_id, editable=False))


@router.get("/district/transparency")
async def staff_page(staff: DistrictStaff) -> Response:
    return staff.show(await Transparency.of(staff.portal, staff.request, staff.district, editable=True))


@router.post("/district/transparency/{question}")
async def save(staff: DistrictStaff, question: Annotated[int, Path(ge=1, le=32)]) -> Response:
    form = await staff.form()
    text = form.get("text", "")[:8000]
    await staff.services.consent.save_transparency_text(staff.district, question, text, token=staff.token)
    return RedirectResponse(f"/district/transparency?saved={question}#q{question}", status_code=303)
