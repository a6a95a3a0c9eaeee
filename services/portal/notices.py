"""The notification list: every notice Homeroom sent the signed-in person (a parent: about
their children; district staff: their district; compliance: escalations), from every
service that sends notices, newest first, with whether and when it was e-mailed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from starlette.responses import Response

from homeroom.auth import Role
from homeroom.contracts.clients import SendsNotices
from services.portal.clients import UpstreamError
from services.portal.web import Page, page_for

router = APIRouter(include_in_schema=False)

# Each person's own notices: a parent's, a district office's, compliance's escalations.
Addressee = Annotated[Page, page_for(Role.PARENT, Role.DISTRICT_STAFF, Role.COMPLIANCE)]


@router.get("/notices")
async def notices(person: Addressee) -> Response:
    found: list[dict[str, Any]] = []
    unavailable: list[str] = []
    # The services that send notices (homeroom.notices: GET /v1/notices answers each person's own).
    senders: tuple[SendsNotices, ...] = (
        person.services.transfer,
        person.services.records,
        person.services.consent,
        person.services.incidents,
    )
    for sender in senders:
        try:
            answer = await sender.notices(token=person.token)
        except UpstreamError as exc:
            if exc.status in (401, 403):
                raise
            unavailable.append(sender.peer)  # the others' notices are still shown
            continue
        found.extend(dict(n, service=sender.peer) for n in answer.notices)
    found.sort(key=lambda n: str(n.get("created_at")), reverse=True)
    return person.render("notices.html", notices=found, unavailable=unavailable)
