"""HTTP API of the ingest service: uploads in four formats, submission reports, the organisation
registry. Every route is for district staff of the district concerned; another district's
submission is answered 404 (its existence is not revealed).

Uploads are streamed to a file under ``settings.upload_dir`` (never held in memory), refused
with 413 above ``settings.max_upload_bytes``, then processed in the background; the answer is
``202`` with the submission's report and its URL."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, Field

from homeroom.auth import Forbidden, Principal, Role, require_roles
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.service import Runtime, RuntimeDep
from homeroom.storage import BIGINT_MAX
from services.ingest import metrics, store
from services.ingest.pipeline import EDFI_RESOURCES, Ingestor, Job
from services.ingest.settings import IngestSettings

router = APIRouter(prefix="/v1", tags=["ingest"])

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
FileName = Annotated[str | None, Query(alias="file", max_length=200, description="File name shown in the report")]

_DEFAULT_NAMES = {
    "batch": "batch.json",
    "edfi-json": "edfi.json",
    "edfi-xml": "interchange.xml",
    "oneroster": "oneroster.zip",
}


def ingestor(runtime: Runtime) -> Ingestor:
    ing: Ingestor = runtime.extras["ingestor"]
    return ing


def ingest_settings(runtime: Runtime) -> IngestSettings:
    settings = runtime.settings
    if not isinstance(settings, IngestSettings):
        raise TypeError("the ingest service runs with IngestSettings")
    return settings


# --- reports ---------------------------------------------------------------------------------------


def report(row: asyncpg.Record, by_rule: dict[str, int] | None = None) -> dict[str, Any]:
    sid = str(row["id"])
    held = row["held_schools"]
    body: dict[str, Any] = {
        "id": sid,
        "district_id": row["district_id"],
        "format": row["format"],
        "resource": row["resource"],
        "file": row["file_name"],
        "status": row["status"],
        "bytes": row["bytes"],
        "progress": round(float(row["progress"]), 4),
        "counts": {
            "records_read": row["records_read"],
            "accepted": row["accepted"],
            "rejected": row["rejected"],
            "warned": row["warned"],
            "unchanged": row["unchanged"],
            "skipped": row["skipped"],
            "events": row["events"],
        },
        "not_collected": _not_collected(row["not_collected"]),
        "problems_not_stored": row["problems_dropped"],
        "held": None,
        "error": row["error"],
        "submitted_by": row["submitted_by"],
        "received_at": row["created_at"].isoformat(),
        "started_at": row["started_at"].isoformat() if row["started_at"] else None,
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "links": {"self": f"/v1/submissions/{sid}", "problems": f"/v1/submissions/{sid}/problems"},
    }
    if held is not None:
        schools = json.loads(held) if isinstance(held, str) else held
        body["held"] = {
            "schools": schools,
            "reason": "The upload would withdraw more than the allowed share of these schools' students. Nothing was "
            "applied. Check the export; if it is right, confirm the submission to apply it.",
            "confirm": f"/v1/submissions/{sid}/confirm" if row["status"] == "held" else None,
            "confirmed_by": row["confirmed_by"],
            "confirmed_at": row["confirmed_at"].isoformat() if row["confirmed_at"] else None,
        }
    if by_rule is not None:
        body["problems_by_rule"] = by_rule
    return body


def _not_collected(value: object) -> list[dict[str, Any]]:
    """What the upload carried that Homeroom did not collect: element and record names with counts."""
    if value is None:
        return []
    items: list[dict[str, Any]] = json.loads(value) if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    return [
        {
            **item,
            "message": f"{item['name']}: "
            + (
                f"dropped {item['count']} times (not collected by Homeroom)"
                if item["kind"] == "element"
                else f"{item['count']} records skipped (not collected by Homeroom)"
            ),
        }
        for item in items
    ]


def _may_upload(principal: Principal, district_id: str) -> None:
    if principal.can_act_for_district(district_id):
        return
    if principal.role is Role.SCHOOL_STAFF and principal.district_id == district_id:
        return
    raise Forbidden(f"only staff of district {district_id!r} may publish its data")


def _can_see(principal: Principal, row: asyncpg.Record) -> bool:
    if principal.can_act_for_district(row["district_id"]):
        return True
    return (
        principal.role is Role.SCHOOL_STAFF
        and principal.district_id == row["district_id"]
        and row["submitted_by"] == principal.subject
    )


async def _visible_submission(runtime: Runtime, principal: Principal, submission_id: uuid.UUID) -> asyncpg.Record:
    row = await store.get_submission(runtime.pool, submission_id)
    if row is None or not _can_see(principal, row):
        raise Problem(404, "Not found", "No such submission for your district.", type=problem_type("not-found"))
    return row


# --- uploads ---------------------------------------------------------------------------------------


async def _store_upload(request: Request, settings: IngestSettings, ext: str) -> tuple[Path, int, str]:
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    too_large = Problem(
        413,
        "Upload too large",
        f"The upload is larger than the limit of {limit} bytes; split it into several submissions.",
        type=problem_type("upload-too-large"),
        extensions={"max_bytes": limit},
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    path = settings.upload_dir / f"{uuid.uuid4().hex}.{ext}"
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("xb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                digest.update(chunk)
                f.write(chunk)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    if size == 0:
        path.unlink()
        raise Problem.validation(
            [FieldError("body", "upload.empty", "The upload is empty: send the file as the request body.")]
        )
    return path, size, digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Upload:
    """What every upload route receives: the district, the caller, the raw body and the
    client's idempotency key and file name. Each route only names its format."""

    district_id: str
    request: Request
    response: Response
    runtime: Runtime
    principal: Principal
    idempotency_key: str | None
    file_name: str | None
    dry_run: bool = False

    async def submit(
        self, fmt: str, ext: str, *, resource: str | None = None, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return await _submit(self, fmt=fmt, ext=ext, resource=resource, options=options)


async def _upload(
    district_id: str,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
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
) -> Upload:
    _may_upload(principal, district_id)
    return Upload(district_id, request, response, runtime, principal, idempotency_key, file, dry_run)


UploadDep = Annotated[Upload, Depends(_upload)]


async def _submit(
    upload: Upload,
    *,
    fmt: str,
    ext: str,
    resource: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    request, runtime, principal, response = upload.request, upload.runtime, upload.principal, upload.response
    district_id, idempotency_key = upload.district_id, upload.idempotency_key
    file_name = upload.file_name or (f"{resource}.json" if resource else None)
    if principal.role is Role.SCHOOL_STAFF:  # records at other schools of the district are refused
        options = {**(options or {}), "schools": sorted(principal.school_ids)}
    if upload.dry_run:
        return await _dry_run(upload, fmt, ext, file_name, resource, options)
    settings = ingest_settings(runtime)
    path, size, sha = await _store_upload(request, settings, ext)
    if idempotency_key:
        existing = await store.submission_by_key(runtime.pool, district_id, principal.subject, idempotency_key)
        if existing is not None:
            path.unlink(missing_ok=True)
            return _repeat(existing, response, sha, fmt, resource)
    new = store.NewSubmission(
        id=uuid.uuid4(),
        district_id=district_id,
        format=fmt,
        file_name=(file_name or _DEFAULT_NAMES[fmt]).strip() or _DEFAULT_NAMES[fmt],
        submitted_by=principal.subject,
        bytes=size,
        sha256=sha,
        upload_path=str(path),
        resource=resource,
        idempotency_key=idempotency_key or None,
        options=options,
    )
    async with runtime.pool.acquire() as conn:
        row = await store.insert_submission(conn, new)
    if row is None:  # a concurrent request with the same idempotency key won
        path.unlink(missing_ok=True)
        existing = await store.submission_by_key(runtime.pool, district_id, principal.subject, idempotency_key or "")
        assert existing is not None
        return _repeat(existing, response, sha, fmt, resource)
    metrics.SUBMISSIONS.labels(fmt, "received").inc()
    metrics.UPLOAD_BYTES.labels(fmt).inc(size)
    ingestor(runtime).submit(Job.from_row(row))
    response.status_code = 202
    response.headers["Location"] = f"/v1/submissions/{row['id']}"
    return report(row)


async def _dry_run(
    upload: Upload, fmt: str, ext: str, file_name: str | None, resource: str | None, options: dict[str, Any] | None
) -> dict[str, Any]:
    """Check an export without taking it: the same parse, validation and counts, in this
    request, with nothing stored or published; the upload is deleted when the answer is ready."""
    settings = ingest_settings(upload.runtime)
    path, size, _sha = await _store_upload(upload.request, settings, ext)
    name = (file_name or _DEFAULT_NAMES[fmt]).strip() or _DEFAULT_NAMES[fmt]
    job = Job(uuid.uuid4(), upload.district_id, fmt, name, path, resource, dict(options or {}))
    try:
        result = await ingestor(upload.runtime).dry_run(job)
    finally:
        path.unlink(missing_ok=True)
    upload.response.status_code = 200
    c = result.counts
    by_rule: dict[str, int] = {}
    for p in result.problems:
        by_rule[p.rule] = by_rule.get(p.rule, 0) + 1
    held = result.held_schools
    return {
        "id": None,
        "dry_run": True,
        "district_id": upload.district_id,
        "format": fmt,
        "resource": resource,
        "file": name,
        "status": "dry_run",
        "bytes": size,
        "progress": 1.0,
        "counts": {
            "records_read": c.records_read,
            "accepted": c.accepted,
            "rejected": c.rejected,
            "warned": c.warned,
            "unchanged": c.unchanged,
            "skipped": result.skipped,
            "events": c.events,
        },
        "not_collected": _not_collected(result.not_collected),
        "problems_not_stored": c.problems_dropped,
        "problems_by_rule": by_rule,
        "problems": [{"seq": i + 1, **p.as_dict()} for i, p in enumerate(result.problems)],
        "held": {"schools": held, "reason": "A real upload would be held for confirmation."} if held else None,
        "error": None,
    }


def _repeat(existing: Any, response: Response, sha: str, fmt: str, resource: str | None) -> dict[str, Any]:
    """The same request again: its report (200). The same key with another body or format is
    a client error (422), never silently the first submission."""
    if (existing["sha256"], existing["format"], existing["resource"]) != (sha, fmt, resource):
        raise Problem.validation(
            [
                FieldError(
                    "header.Idempotency-Key",
                    "idempotency_key.reused",
                    "this Idempotency-Key was already used for a different upload; use a new key for new data",
                )
            ]
        )
    response.status_code = 200
    response.headers["Location"] = f"/v1/submissions/{existing['id']}"
    return report(existing)


_UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Stored; processing in the background. The body is the submission's report."},
    # 200 also answers ?dry_run=true: the report the upload would get; nothing stored or published
    200: {"description": "You already sent this upload with this Idempotency-Key: its report."},
    422: {"description": "Invalid upload, or this Idempotency-Key was already used for a different upload"},
    403: {"description": "Not staff of this district"},
    413: {"description": "Upload larger than the configured limit"},
}


def _raw_body(media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Declares the raw upload body in the OpenAPI document (the route reads the stream
    itself, so FastAPI cannot infer it), for clients and schema-driven fuzzing."""
    return {"requestBody": {"required": True, "content": {media_type: {"schema": schema}}}}


_JSON_RECORDS = {"type": "object", "properties": {"records": {"type": "array", "items": {"type": "object"}}}}
_EDFI_RESOURCES = {"anyOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]}
_BINARY = {"type": "string", "format": "binary"}


@router.post(
    "/districts/{district_id}/submissions/batch",
    status_code=202,
    responses=_UPLOAD_RESPONSES,
    openapi_extra=_raw_body("application/json", _JSON_RECORDS),
)
async def submit_batch(upload: UploadDep) -> dict[str, Any]:
    """A Homeroom JSON batch (`{"records": [...]}`, see docs/services/ingest.md) as the request body."""
    return await upload.submit("batch", "json")


@router.post(
    "/districts/{district_id}/submissions/edfi/{resource}",
    status_code=202,
    responses=_UPLOAD_RESPONSES,
    openapi_extra=_raw_body("application/json", _EDFI_RESOURCES),
)
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


@router.post(
    "/districts/{district_id}/submissions/edfi-xml",
    status_code=202,
    responses=_UPLOAD_RESPONSES,
    openapi_extra=_raw_body("application/xml", _BINARY),
)
async def submit_edfi_xml(upload: UploadDep) -> dict[str, Any]:
    """One Ed-Fi XML interchange file, Data Standard 2.0 to 5.x (EducationOrganization,
    EducationOrgCalendar, MasterSchedule, Student, StudentEnrollment, StudentProgram,
    StudentAttendance, StudentDiscipline; any other interchange is counted and skipped)."""
    return await upload.submit("edfi-xml", "xml")


@router.post(
    "/districts/{district_id}/submissions/oneroster",
    status_code=202,
    responses=_UPLOAD_RESPONSES,
    openapi_extra=_raw_body("application/zip", _BINARY),
)
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
async def get_report(submission_id: uuid.UUID, runtime: RuntimeDep, principal: Uploader) -> dict[str, Any]:
    """The submission's report: status, progress, counts, problems by rule, held schools."""
    row = await _visible_submission(runtime, principal, submission_id)
    return report(row, await store.problem_counts_by_rule(runtime.pool, submission_id))


@router.get("/submissions/{submission_id}/problems")
async def get_problems(
    submission_id: uuid.UUID,
    runtime: RuntimeDep,
    principal: Uploader,
    after: Annotated[int, Query(ge=0, le=BIGINT_MAX, description="Return problems after this seq (paging cursor)")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    severity: Annotated[Literal["error", "warning"] | None, Query()] = None,
    rule: Annotated[str | None, Query(max_length=80)] = None,
) -> dict[str, Any]:
    """Refused records and warnings, in input order: file, line (or array index), field, value class
    (never the value), rule and a plain-language message. Page with `next_after`."""
    await _visible_submission(runtime, principal, submission_id)
    rows = await store.list_problems(
        runtime.pool, submission_id, limit=limit, after=after, severity=severity, rule=rule
    )
    items = [dict(r) for r in rows]
    return {
        "submission_id": str(submission_id),
        "problems": items,
        "next_after": items[-1]["seq"] if len(items) == limit else None,
    }


@router.post("/submissions/{submission_id}/confirm")
async def confirm(submission_id: uuid.UUID, runtime: RuntimeDep, principal: Staff) -> dict[str, Any]:
    """Apply a submission the bulk-withdrawal safety rail held."""
    row = await _visible_submission(runtime, principal, submission_id)
    async with runtime.pool.acquire() as conn:
        confirmed = await store.confirm_held(conn, submission_id, principal.subject)
    if not confirmed:
        raise Problem(
            409,
            "Not held",
            f"The submission is {row['status']}, not held, so there is nothing to confirm.",
            type=problem_type("conflict"),
        )
    fresh = await store.get_submission(runtime.pool, submission_id)
    assert fresh is not None
    ingestor(runtime).submit(Job.from_row(fresh), confirmed=True)
    return report(fresh)


@router.get("/districts/{district_id}/submissions")
async def list_district_submissions(
    district_id: str,
    runtime: RuntimeDep,
    principal: Staff,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
    status: Annotated[Literal["received", "processing", "completed", "failed", "held"] | None, Query()] = None,
) -> dict[str, Any]:
    """The district's submissions, newest first."""
    principal.require_district(district_id)
    rows = await store.list_submissions(runtime.pool, district_id, limit=limit, offset=offset, status=status)
    return {"district_id": district_id, "submissions": [report(r) for r in rows]}


# --- organisation registry ------------------------------------------------------------------------


class OrganizationIn(BaseModel):
    org_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:\-]+$")
    org_type: Literal["school", "district"] = "school"
    name: str | None = Field(default=None, max_length=200)


@router.post("/districts/{district_id}/organizations", status_code=201)
async def register_organization(
    district_id: str, body: OrganizationIn, runtime: RuntimeDep, principal: Staff
) -> dict[str, Any]:
    """Register a school (or another id under which the district appears in uploads) to the district.
    A school another district already owns is refused (409)."""
    principal.require_district(district_id)
    async with runtime.pool.acquire() as conn:
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
async def list_organizations(district_id: str, runtime: RuntimeDep, principal: Staff) -> dict[str, Any]:
    principal.require_district(district_id)
    rows = await store.district_orgs(runtime.pool, district_id)
    return {
        "district_id": district_id,
        "organizations": [{"org_id": r["org_id"], "org_type": r["org_type"], "name": r["name"]} for r in rows],
    }
