"""HTTP API of the ingest service (routes only): uploads in four formats, submission reports, the
organisation registry. Every route is for district staff of the district concerned; another
district's submission is answered 404 (its existence is not revealed).

The use cases are in `application/`: accepting an upload, its report and confirmation in
`application/submissions.py`, running it in `application/jobs.py` and `application/pipeline.py`."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, Field

from homeroom.auth import Principal, Role, require_roles
from homeroom.problems import Problem, problem_type
from homeroom.storage import BIGINT_MAX
from services.ingest import store
from services.ingest.application import submissions
from services.ingest.application.pipeline import EDFI_RESOURCES
from services.ingest.state import IngestState, StateDep

router = APIRouter(prefix="/v1", tags=["ingest"])
TAGS = {"ingest": "Uploads, submission reports and the organisation registry"}

Staff = Annotated[Principal, Depends(require_roles(Role.DISTRICT_STAFF))]
# School staff may upload for their own schools and read the reports of their own uploads.
Uploader = Annotated[Principal, Depends(require_roles(Role.DISTRICT_STAFF, Role.SCHOOL_STAFF))]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="The same key from the same district returns the first submission instead of a new one.",
    ),
]
_Route = Callable[..., Awaitable[dict[str, Any]]]
FileName = Annotated[str | None, Query(alias="file", max_length=200, description="File name shown in the report")]


@dataclass(frozen=True, slots=True)
class UploadRoute:
    """What every upload route receives: the sender, the raw body, the service's state. Each
    route only names its format."""

    upload: submissions.Upload
    request: Request
    response: Response
    state: IngestState

    async def submit(
        self, fmt: str, ext: str, *, resource: str | None = None, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        kind = submissions.FileKind(fmt, ext, resource, options)
        length = self.request.headers.get("content-length")
        answer = await submissions.accept(self.state, self.upload, kind, self.request.stream(), length)
        self.response.status_code = answer.status
        if answer.location is not None:
            self.response.headers["Location"] = answer.location
        return answer.body


async def _upload(
    district_id: str,
    request: Request,
    response: Response,
    state: StateDep,
    principal: Uploader,
    idempotency_key: IdempotencyKey = None,
    file: FileName = None,
    dry_run: Annotated[
        bool,
        Query(
            description="Parse and validate only: nothing is stored or published; the answer (200) is the report "
            "the upload would get, with every problem."
        ),
    ] = False,
) -> UploadRoute:
    submissions.may_upload(principal, district_id)
    upload = submissions.Upload(district_id, principal, idempotency_key, file, dry_run)
    return UploadRoute(upload, request, response, state)


UploadDep = Annotated[UploadRoute, Depends(_upload)]


_UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Stored; processing in the background. The body is the submission's report."},
    # 200 also answers ?dry_run=true: the report the upload would get; nothing stored or published
    200: {"description": "You already sent this upload with this Idempotency-Key: its report."},
    422: {"description": "Invalid upload, or this Idempotency-Key was already used for a different upload"},
    403: {"description": "Not staff of this district"},
    413: {"description": "Upload larger than the configured limit"},
}


def _upload_route(path: str, media_type: str, schema: dict[str, Any]) -> Callable[[_Route], _Route]:
    """An upload route (202, processed in the background). The raw body is declared in the
    OpenAPI document (the route reads the stream itself, so FastAPI cannot infer it), for
    clients and schema-driven fuzzing."""
    return router.post(
        f"/districts/{{district_id}}/submissions/{path}",
        status_code=202,
        responses=_UPLOAD_RESPONSES,
        openapi_extra={"requestBody": {"required": True, "content": {media_type: {"schema": schema}}}},
    )


_JSON_RECORDS = {"type": "object", "properties": {"records": {"type": "array", "items": {"type": "object"}}}}
_EDFI_RESOURCES = {"anyOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]}
_BINARY = {"type": "string", "format": "binary"}


@_upload_route("batch", "application/json", _JSON_RECORDS)
async def submit_batch(upload: UploadDep) -> dict[str, Any]:
    """A Homeroom JSON batch (`{"records": [...]}`, see docs/services/ingest.md) as the request body."""
    return await upload.submit("batch", "json")


@_upload_route("edfi/{resource}", "application/json", _EDFI_RESOURCES)
async def submit_edfi_json(resource: str, upload: UploadDep) -> dict[str, Any]:
    """Ed-Fi resource JSON (an array of resources, or one) for `students`,
    `studentEducationOrganizationAssociations`, `studentSchoolAssociations`,
    `studentSchoolAttendanceEvents`, `studentSectionAttendanceEvents`, `disciplineActions`,
    `sessions`, `calendars` or `calendarDates`."""
    if resource not in EDFI_RESOURCES:
        raise Problem(
            404,
            "Unknown Ed-Fi resource",
            f"Homeroom takes the Ed-Fi resources {', '.join(EDFI_RESOURCES)}.",
            type=problem_type("not-found"),
        )
    return await upload.submit("edfi-json", "json", resource=resource)


@_upload_route("edfi-xml", "application/xml", _BINARY)
async def submit_edfi_xml(upload: UploadDep) -> dict[str, Any]:
    """One Ed-Fi XML interchange file, Data Standard 2.0 to 5.x (EducationOrganization,
    EducationOrgCalendar, MasterSchedule, Student, StudentEnrollment, StudentProgram,
    StudentAttendance, StudentDiscipline; any other interchange is counted and skipped)."""
    return await upload.submit("edfi-xml", "xml")


@_upload_route("oneroster", "application/zip", _BINARY)
async def submit_oneroster(
    upload: UploadDep,
    school_id_from: Annotated[
        Literal["sourcedId", "identifier"],
        Query(description="Which orgs.csv column is the school id Homeroom knows"),
    ] = "sourcedId",
) -> dict[str, Any]:
    """A OneRoster 1.1 or 1.2 CSV zip (bulk or delta, per its manifest.csv) as the request body."""
    return await upload.submit("oneroster", "zip", options={"school_id_from": school_id_from})


# --- reports, problems, confirmation ------------------------------------------------------------


@router.get("/submissions/{submission_id}")
async def get_report(submission_id: uuid.UUID, state: StateDep, principal: Uploader) -> dict[str, Any]:
    """The submission's report: status, progress, counts, problems by rule, held schools."""
    row = await submissions.visible_submission(state.pool, principal, submission_id)
    return submissions.report(row, await store.problem_counts_by_rule(state.pool, submission_id))


@router.get("/submissions/{submission_id}/problems")
async def get_problems(
    submission_id: uuid.UUID,
    state: StateDep,
    principal: Uploader,
    after: Annotated[int, Query(ge=0, le=BIGINT_MAX, description="Return problems after this seq (paging cursor)")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    severity: Annotated[Literal["error", "warning"] | None, Query()] = None,
    rule: Annotated[str | None, Query(max_length=80)] = None,
) -> dict[str, Any]:
    """Refused records and warnings, in input order: file, line (or array index), field, value class
    (never the value), rule and a plain-language message. Page with `next_after`."""
    await submissions.visible_submission(state.pool, principal, submission_id)
    rows = await store.list_problems(state.pool, submission_id, limit=limit, after=after, severity=severity, rule=rule)
    items = [dict(r) for r in rows]
    return {
        "submission_id": str(submission_id),
        "problems": items,
        "next_after": items[-1]["seq"] if len(items) == limit else None,
    }


@router.post("/submissions/{submission_id}/confirm")
async def confirm(submission_id: uuid.UUID, state: StateDep, principal: Staff) -> dict[str, Any]:
    """Apply a submission the bulk-withdrawal safety rail held."""
    return await submissions.confirm(state, principal, submission_id)


@router.get("/districts/{district_id}/submissions")
async def list_district_submissions(
    district_id: str,
    state: StateDep,
    principal: Staff,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
    status: Annotated[Literal["received", "processing", "completed", "failed", "held"] | None, Query()] = None,
) -> dict[str, Any]:
    """The district's submissions, newest first."""
    principal.require_district(district_id)
    rows = await store.list_submissions(state.pool, district_id, limit=limit, offset=offset, status=status)
    return {"district_id": district_id, "submissions": [submissions.report(r) for r in rows]}


# --- organisation registry ------------------------------------------------------------------------


class OrganizationIn(BaseModel):
    org_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:\-]+$")
    org_type: Literal["school", "district"] = "school"
    name: str | None = Field(default=None, max_length=200)


@router.post("/districts/{district_id}/organizations", status_code=201)
async def register_organization(
    district_id: str, body: OrganizationIn, state: StateDep, principal: Staff
) -> dict[str, Any]:
    """Register a school (or another id under which the district appears in uploads) to the district.
    A school another district already owns is refused (409)."""
    principal.require_district(district_id)
    async with state.pool.acquire() as conn:
        owner, org_type = await store.register_org(
            conn, body.org_id, district_id, body.org_type, body.name, principal.subject
        )
    if owner != district_id:
        raise Problem(
            409,
            "Owned by another district",
            "That organisation id is registered to another district; ask the state to correct the registry.",
            type=problem_type("conflict"),
        )
    return {"org_id": body.org_id, "district_id": district_id, "org_type": org_type, "name": body.name}


@router.get("/districts/{district_id}/organizations")
async def list_organizations(district_id: str, state: StateDep, principal: Staff) -> dict[str, Any]:
    principal.require_district(district_id)
    rows = await store.district_orgs(state.pool, district_id)
    return {
        "district_id": district_id,
        "organizations": [{"org_id": r["org_id"], "org_type": r["org_type"], "name": r["name"]} for r in rows],
    }
