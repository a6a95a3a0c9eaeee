"""Submissions as district staff see them: accepting an upload, its report, confirmation.

Use cases held here:

- **accept an upload** (`accept`): stream the body to a file under ``settings.upload_dir``
  (never held in memory; 413 above ``settings.max_upload_bytes``, 422 when empty), answer a
  repeated ``Idempotency-Key`` with its first submission, record the submission and hand it to
  the jobs (`jobs.Ingestor`); the answer is 202 with the report;
- **check an upload without taking it** (`accept` with ``dry_run``): the same parse,
  validation and counts in the request, nothing stored or published, the report inline;
- **read a submission** (`visible_submission`, `report`): another district's submission (or,
  for school staff, someone else's) is not found, never forbidden;
- **confirm a held submission** (`confirm`): the bulk-withdrawal rail's hold, lifted by staff.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from homeroom.auth import Forbidden, Principal, Role
from homeroom.problems import FieldError, Problem, problem_type
from services.ingest import metrics, store
from services.ingest.application.jobs import Job
from services.ingest.settings import IngestSettings
from services.ingest.state import IngestState

_DEFAULT_NAMES = {
    "batch": "batch.json",
    "edfi-json": "edfi.json",
    "edfi-xml": "interchange.xml",
    "oneroster": "oneroster.zip",
}
_COUNTS = ("records_read", "accepted", "rejected", "warned", "unchanged", "skipped", "events")


@dataclass(frozen=True, slots=True)
class Upload:
    """Who sends an upload to which district, with the client's idempotency key and file name."""

    district_id: str
    principal: Principal
    idempotency_key: str | None = None
    file_name: str | None = None
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class FileKind:
    """What the route says the body is: its format (and Ed-Fi resource), the extension it is
    stored under, and the parser's options."""

    format: str
    ext: str
    resource: str | None = None
    options: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """A report and how to answer with it (status, and the submission's URL when there is one)."""

    status: int
    body: dict[str, Any]

    @property
    def location(self) -> str | None:
        sid = self.body.get("id")
        return f"/v1/submissions/{sid}" if sid else None


# --- who may do what -------------------------------------------------------------------------------


def may_upload(principal: Principal, district_id: str) -> None:
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


async def visible_submission(pool: asyncpg.Pool, principal: Principal, submission_id: uuid.UUID) -> asyncpg.Record:
    row = await store.get_submission(pool, submission_id)
    if row is None or not _can_see(principal, row):
        raise Problem(404, "Not found", "No such submission for your district.", type=problem_type("not-found"))
    return row


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
        "counts": {name: row[name] for name in _COUNTS},
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


# --- accepting an upload ------------------------------------------------------------------------------


async def _store_upload(
    body: AsyncIterator[bytes], declared_length: str | None, settings: IngestSettings, ext: str
) -> tuple[Path, int, str]:
    limit = settings.max_upload_bytes
    too_large = Problem(
        413,
        "Upload too large",
        f"The upload is larger than the limit of {limit} bytes; split it into several submissions.",
        type=problem_type("upload-too-large"),
        extensions={"max_bytes": limit},
    )
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise too_large
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    path = settings.upload_dir / f"{uuid.uuid4().hex}.{ext}"
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("xb") as f:
            async for chunk in body:
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


async def accept(
    state: IngestState, upload: Upload, kind: FileKind, body: AsyncIterator[bytes], declared_length: str | None
) -> Answer:
    """Take an upload (202, processed in the background), answer a repeat (200), or check it (dry run, 200)."""
    principal = upload.principal
    options = dict(kind.options or {})
    if principal.role is Role.SCHOOL_STAFF:  # records at other schools of the district are refused
        options["schools"] = sorted(principal.school_ids)
    default_name = f"{kind.resource}.json" if kind.resource else _DEFAULT_NAMES[kind.format]
    name = (upload.file_name or default_name).strip() or _DEFAULT_NAMES[kind.format]
    path, size, sha = await _store_upload(body, declared_length, state.settings, kind.ext)
    if upload.dry_run:
        return await _dry_run(state, upload, kind, path, size, name, options)
    key = upload.idempotency_key
    if key:
        existing = await store.submission_by_key(state.pool, upload.district_id, principal.subject, key)
        if existing is not None:
            path.unlink(missing_ok=True)
            return _repeat(existing, sha, kind)
    new = store.NewSubmission(
        id=uuid.uuid4(),
        district_id=upload.district_id,
        format=kind.format,
        file_name=name,
        submitted_by=principal.subject,
        bytes=size,
        sha256=sha,
        upload_path=str(path),
        resource=kind.resource,
        idempotency_key=key or None,
        options=options or None,
    )
    async with state.pool.acquire() as conn:
        row = await store.insert_submission(conn, new)
    if row is None:  # a concurrent request with the same idempotency key won
        path.unlink(missing_ok=True)
        existing = await store.submission_by_key(state.pool, upload.district_id, principal.subject, key or "")
        assert existing is not None
        return _repeat(existing, sha, kind)
    metrics.SUBMISSIONS.labels(kind.format, "received").inc()
    metrics.UPLOAD_BYTES.labels(kind.format).inc(size)
    state.ingestor.submit(Job.from_row(row))
    return Answer(202, report(row))


async def _dry_run(
    state: IngestState, upload: Upload, kind: FileKind, path: Path, size: int, name: str, options: dict[str, Any]
) -> Answer:
    """Check an export without taking it: the same parse, validation and counts, in this
    request, with nothing stored or published; the upload is deleted when the answer is ready."""
    job = Job(uuid.uuid4(), upload.district_id, kind.format, name, path, kind.resource, options)
    try:
        result = await state.ingestor.dry_run(job)
    finally:
        path.unlink(missing_ok=True)
    by_rule: dict[str, int] = {}
    for p in result.problems:
        by_rule[p.rule] = by_rule.get(p.rule, 0) + 1
    held = result.held_schools
    counts = {name: result.skipped if name == "skipped" else getattr(result.counts, name) for name in _COUNTS}
    return Answer(
        200,
        {
            "id": None,
            "dry_run": True,
            "district_id": upload.district_id,
            "format": kind.format,
            "resource": kind.resource,
            "file": name,
            "status": "dry_run",
            "bytes": size,
            "progress": 1.0,
            "counts": counts,
            "not_collected": _not_collected(result.not_collected),
            "problems_not_stored": result.counts.problems_dropped,
            "problems_by_rule": by_rule,
            "problems": [{"seq": i + 1, **p.as_dict()} for i, p in enumerate(result.problems)],
            "held": {"schools": held, "reason": "A real upload would be held for confirmation."} if held else None,
            "error": None,
        },
    )


def _repeat(existing: asyncpg.Record, sha: str, kind: FileKind) -> Answer:
    """The same request again: its report (200). The same key with another body or format is
    a client error (422), never silently the first submission."""
    if (existing["sha256"], existing["format"], existing["resource"]) != (sha, kind.format, kind.resource):
        raise Problem.validation(
            [
                FieldError(
                    "header.Idempotency-Key",
                    "idempotency_key.reused",
                    "this Idempotency-Key was already used for a different upload; use a new key for new data",
                )
            ]
        )
    return Answer(200, report(existing))


# --- confirming a held submission -----------------------------------------------------------------


async def confirm(state: IngestState, principal: Principal, submission_id: uuid.UUID) -> dict[str, Any]:
    """Apply a submission the bulk-withdrawal safety rail held (409 when it is not held)."""
    row = await visible_submission(state.pool, principal, submission_id)
    async with state.pool.acquire() as conn:
        confirmed = await store.confirm_held(conn, submission_id, principal.subject)
    if not confirmed:
        raise Problem(
            409,
            "Not held",
            f"The submission is {row['status']}, not held, so there is nothing to confirm.",
            type=problem_type("conflict"),
        )
    fresh = await store.get_submission(state.pool, submission_id)
    assert fresh is not None
    state.ingestor.submit(Job.from_row(fresh), confirmed=True)
    return report(fresh)
