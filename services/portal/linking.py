"""District data office pages for guardianship (issue 24): issue linking codes for the
district's students (printable letters, one per page, or a CSV for the district's own mail
merge), see every link and code, revoke a link (custody change), and accept or decline the
links a transfer carried in. Consent decides and records all of it; the portal only asks."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from starlette.responses import RedirectResponse, Response

from homeroom.contracts.answers import raw_all
from homeroom.contracts.linking_codes import CSV_COLUMNS, csv_row, letter_text
from services.portal.clients import UpstreamError
from services.portal.district import names_of
from services.portal.web import DistrictStaff, check_form

router = APIRouter(prefix="/district/linking", include_in_schema=False)

LinkId = Annotated[str, Path(pattern=r"^gl-[0-9a-f]{16}$")]
STUDENTS_LISTED = 200


def portal_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("")
async def overview(staff: DistrictStaff) -> Response:
    district = staff.district
    found = await staff.services.consent.guardianships(district, token=staff.token)
    students = await staff.services.records.student_list(district, token=staff.token, limit=STUDENTS_LISTED)
    keys = [s.student_key for s in students.students]
    linked = [each.student_key for each in (*found.links, *found.codes)]
    names = await names_of(staff, keys + linked)
    return staff.render(
        "district/linking.html",
        district=district,
        links=raw_all(found.links),
        codes=raw_all(found.codes),
        students=[{"key": k, "name": names.get(k, k)} for k in keys],
        names=names,
        error=None,
    )


@router.post("/codes")
async def issue(staff: DistrictStaff) -> Response:
    """Issue codes and answer with the letters (or the CSV): the only time the codes are shown."""
    district = staff.district
    form = await staff.request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    check_form(staff.request, staff.session, fields)
    keys = [str(v) for v in form.getlist("student_key")] + fields.get("student_keys", "").split()
    relationship = "eligible_student" if fields.get("relationship") == "eligible_student" else "parent"
    students = [{"student_key": k, "relationship": relationship} for k in dict.fromkeys(keys)]
    valid_days = int(fields["valid_days"]) if fields.get("valid_days", "").isdigit() else 60
    try:
        answer = await staff.services.consent.issue_linking_codes(district, students, valid_days, token=staff.token)
    except UpstreamError as exc:
        if exc.status == 401:
            raise
        errors = "; ".join(e.get("message", "") for e in exc.field_errors) or exc.detail
        return staff.render("error.html", status=422, title="No codes issued", message=errors)
    url = portal_url(staff.request)
    if fields.get("format") == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for issued in answer.codes:
            writer.writerow(csv_row(district, issued, url))
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="linking-codes-{district}.csv"'},
        )
    letters = [{"code": c, "text": letter_text(district, c, url)} for c in answer.codes]
    return staff.render("district/letters.html", district=district, letters=letters)


@router.post("/{link_id}/{action}")
async def link_action(
    staff: DistrictStaff, link_id: LinkId, action: Literal["revoke", "accept", "decline"]
) -> Response:
    """Revoke a link (custody change), or accept or decline one a transfer carried in."""
    district = staff.district
    form = await staff.form()
    reason = None if action == "accept" else (form.get("reason") or "custody_change")[:200]
    await staff.services.consent.guardianship_action(district, link_id, action, reason=reason, token=staff.token)
    return RedirectResponse("/district/linking?saved=1", status_code=303)
