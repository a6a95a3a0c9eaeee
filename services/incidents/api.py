"""HTTP API of the incidents service: thin adapters over `application/` (docs/services/incidents.md).

Who may call what:
* compliance: everything;
* district staff: incidents concerning their district, acting for their district only (and
  for the whole incident when it concerns their district alone);
* a vendor: reports a breach of its own agreement, sends its notice, sees its own incident
  and obligation, never the scope;
* a parent: the breach letters about their own child;
* anyone: breach notices a district chose to publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from homeroom.auth import Principal, Role, require_roles
from services.incidents.application import containment, notifying, publishing, reading, reporting, scoping
from services.incidents.incidents import Discoverer, Kind
from services.incidents.state import IncidentsState, RuntimeDep, StateDep

ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"
IncidentId = Annotated[str, Path(pattern=r"^inc-[0-9a-f]{12}$")]

Manager = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.DISTRICT_STAFF))]
Reader = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.DISTRICT_STAFF, Role.VENDOR))]
ParentOrCompliance = Annotated[Principal, Depends(require_roles(Role.PARENT, Role.COMPLIANCE))]
KeyReader = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.DISTRICT_STAFF, Role.OPERATOR))]


@dataclass(frozen=True, slots=True)
class Case:
    """The incident a route acts on (its path's `incident_id`), who acts, and what the use cases
    take: the parameters every `/v1/incidents/{incident_id}/...` route has, declared once."""

    incident_id: str
    principal: Principal
    state: IncidentsState
    pool: asyncpg.Pool

    async def view(self) -> dict[str, Any]:
        """The incident as the acting principal may see it: what a change answers with."""
        return await reporting.view(self.state, self.pool, self.principal, self.incident_id)


async def _managed(incident_id: IncidentId, principal: Manager, runtime: RuntimeDep, state: StateDep) -> Case:
    return Case(incident_id, principal, state, runtime.pool)


async def _read(incident_id: IncidentId, principal: Reader, runtime: RuntimeDep, state: StateDep) -> Case:
    return Case(incident_id, principal, state, runtime.pool)


ManagedCase = Annotated[Case, Depends(_managed)]  # compliance or district staff act on it
ReadCase = Annotated[Case, Depends(_read)]  # ... or the vendor that reported it


Id = Annotated[str, Field(pattern=ID)]
Text = Annotated[str, Field(min_length=1, max_length=200)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenIncident(_Body):
    discovered_at: AwareDatetime
    description: str = Field(min_length=1, max_length=5000, description="what happened, as the reporter knows it")
    discovered_by: Discoverer | None = None
    agreement_ids: list[Id] = Field(default_factory=list, max_length=20)
    recipient_organization: str = Field(default="", max_length=200)
    system: str = Field(default="", max_length=200, description="the system breached, when it is not a recipient")
    districts: list[Id] = Field(default_factory=list, max_length=100)
    exposure_start: AwareDatetime | None = None
    exposure_end: AwareDatetime | None = None
    contractor_notified_at: AwareDatetime | None = Field(
        default=None, description="when the agency received the contractor's notice (recorded by the agency)"
    )
    contractor_notice_method: Literal["email", "phone", "letter", "in_person"] = "email"
    contact: str = Field(default="", max_length=500, description="whom families contact")
    investigation: str = Field(default="", max_length=2000)


class Details(_Body):
    exposure_start: AwareDatetime | None = None
    exposure_end: AwareDatetime | None = None
    description: str | None = Field(default=None, min_length=1, max_length=5000)
    investigation: str | None = Field(default=None, max_length=2000)
    contact: str | None = Field(default=None, min_length=1, max_length=500)


class ContractorNotice(_Body):
    district_id: Id | None = None
    received_at: AwareDatetime | None = None
    method: Literal["email", "phone", "letter", "in_person"] = "email"


class Rescope(_Body):
    exposure_start: AwareDatetime | None = None
    exposure_end: AwareDatetime | None = None
    disclosed_since: AwareDatetime | None = None
    agreement_ids: list[Id] = Field(
        default_factory=list, max_length=20, description="agreements to add (another recipient)"
    )


class ForDistrict(_Body):
    district_id: Id | None = Field(default=None, description="one district (default: all yours)")


class Delay(_Body):
    reason: Literal["law_enforcement", "unfixed_vulnerability"]


class DelayEnded(_Body):
    ended_at: AwareDatetime | None = None


class Containment(_Body):
    action: Literal["agreement_suspended", "keys_rotated"]
    agreement_id: Id
    rotation_id: str | None = Field(default=None, max_length=100)


class Publication(_Body):
    district_id: Id | None = None
    text: str = Field(min_length=1, max_length=4000)


class Deadlines(_Body):
    contractor_to_agency_hours: int | None = Field(default=None, ge=1)
    agency_to_cpo_hours: int | None = Field(default=None, ge=1)
    agency_to_parents_hours: int | None = Field(default=None, ge=1)


incidents = APIRouter(prefix="/v1/incidents", tags=["incidents"])
public = APIRouter(prefix="/v1/public", tags=["public"])
districts = APIRouter(prefix="/v1/districts", tags=["incidents"])
students = APIRouter(prefix="/v1/students", tags=["notices"])
keys = APIRouter(prefix="/v1", tags=["scope"])


@incidents.post("", status_code=201, summary="Open an incident (a recipient reports its own breach)")
async def open_incident(body: OpenIncident, principal: Reader, runtime: RuntimeDep, state: StateDep) -> dict[str, Any]:
    opening = reporting.Opening(**body.model_dump())
    incident_id = await reporting.open_incident(state, runtime.pool, principal, opening)
    return await reporting.view(state, runtime.pool, principal, incident_id)


@incidents.get("", summary="Incidents you may see, with their next deadline")
async def list_incidents(principal: Reader, runtime: RuntimeDep, state: StateDep) -> dict[str, Any]:
    return {"incidents": await reporting.listing(state, runtime.pool, principal)}


@incidents.get(
    "/{incident_id}", summary="An incident: its record, clocks, scope versions, containment, notices, history"
)
async def get_incident(case: ReadCase) -> dict[str, Any]:
    return await case.view()


@incidents.post("/{incident_id}/details", summary="Change the exposure period, description, investigation or contact")
async def change_details(case: ManagedCase, body: Details) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    await reporting.change_details(case.state, case.pool, case.principal, case.incident_id, changes)
    return await case.view()


@incidents.post("/{incident_id}/contractor-notice", summary="The contractor's notice to the agencies (121.10(a))")
async def contractor_notice(case: ReadCase, body: ContractorNotice) -> dict[str, Any]:
    # The body's fields are the use case's arguments, by name.
    await reporting.contractor_notice(case.state, case.pool, case.principal, case.incident_id, **body.model_dump())
    return await case.view()


@incidents.post("/{incident_id}/scope", status_code=201, tags=["scope"], summary="Freeze a scope version from the log")
async def freeze_scope(case: ManagedCase, body: Rescope) -> dict[str, Any]:
    change = scoping.Rescope(
        exposure_start=body.exposure_start,
        exposure_end=body.exposure_end,
        disclosed_since=body.disclosed_since,
        add_agreement_ids=tuple(body.agreement_ids),
    )
    return await scoping.freeze(case.state, case.pool, case.principal, case.incident_id, change)


@incidents.get(
    "/{incident_id}/scope/{version}", tags=["scope"], summary="One frozen scope version: counts and evidence"
)
async def scope_version(
    incident_id: IncidentId, version: Annotated[int, Path(ge=1, le=100_000)], principal: Reader, runtime: RuntimeDep
) -> dict[str, Any]:
    return await reading.scope_version(runtime.pool, principal, incident_id, version)


@incidents.get("/{incident_id}/scope/{version}/students", tags=["scope"], summary="The affected students, page by page")
async def scope_students(
    incident_id: IncidentId,
    version: Annotated[int, Path(ge=1, le=100_000)],
    principal: Reader,
    runtime: RuntimeDep,
    district_id: Annotated[str | None, Query(pattern=ID)] = None,
    after: Annotated[str | None, Query(max_length=300, description="next_after of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    return await reading.scope_students(runtime.pool, principal, incident_id, version, district_id, after, limit)


@incidents.get(
    "/{incident_id}/scope/{version}/bundle",
    tags=["scope"],
    summary="The frozen scope as a signed bundle (gzip JSON Lines) to check offline: homeroom incidents verify-scope",
    response_class=StreamingResponse,
)
async def scope_bundle(
    incident_id: IncidentId, version: Annotated[int, Path(ge=1, le=100_000)], principal: Manager, runtime: RuntimeDep
) -> StreamingResponse:
    chunks = await reading.scope_bundle(runtime.pool, principal, incident_id, version)
    return StreamingResponse(
        chunks,
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{incident_id}-scope-v{version}.jsonl.gz"'},
    )


@incidents.post(
    "/{incident_id}/cpo-report", tags=["notices"], summary="Report to the Chief Privacy Officer (121.10(b), (d))"
)
async def cpo_report(case: ManagedCase, body: ForDistrict) -> dict[str, Any]:
    reports = await notifying.report_to_cpo(case.state, case.pool, case.principal, case.incident_id, body.district_id)
    return {"reports": reports}


@incidents.get(
    "/{incident_id}/reports/{report_id}",
    tags=["notices"],
    summary="A report: the document (format=text) or the machine-readable file (format=json)",
)
async def get_report(
    incident_id: IncidentId,
    report_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")],
    principal: Manager,
    runtime: RuntimeDep,
    format: Literal["json", "text"] = "json",
) -> Response:
    found = await reading.report(runtime.pool, principal, incident_id, report_id)
    if format == "text":
        return PlainTextResponse(found["document"])
    return Response(
        found["machine"] if isinstance(found["machine"], str) else "{}",
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{incident_id}-{found["kind"]}-{found["district_id"]}.json"'
        },
    )


@incidents.post(
    "/{incident_id}/letters", tags=["notices"], summary="Letters to every affected family, and the district summary"
)
async def send_letters(case: ManagedCase, body: ForDistrict) -> dict[str, Any]:
    sent = await notifying.notify_families(case.state, case.pool, case.principal, case.incident_id, body.district_id)
    return {"districts": sent}


@incidents.get("/{incident_id}/letters", tags=["notices"], summary="The letters sent (printable), with their delivery")
async def list_letters(
    case: ManagedCase,
    district_id: Annotated[str | None, Query(pattern=ID)] = None,
    after: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    return await notifying.letters(case.pool, case.principal, case.incident_id, district_id, after, limit)


@incidents.post(
    "/{incident_id}/parents-delay",
    summary="Delay the families' notice (121.10(e): law enforcement, unfixed vulnerability)",
)
async def delay(case: ManagedCase, body: Delay) -> dict[str, Any]:
    return await _delay_parents_notice(case, reason=body.reason, ended_at=None)


@incidents.post("/{incident_id}/parents-delay/end", summary="The delay ended: families are due within seven days")
async def delay_ended(case: ManagedCase, body: DelayEnded) -> dict[str, Any]:
    return await _delay_parents_notice(case, reason=None, ended_at=body.ended_at)


async def _delay_parents_notice(case: Case, *, reason: str | None, ended_at: datetime | None) -> dict[str, Any]:
    await reporting.delay_parents_notice(
        case.state, case.pool, case.principal, case.incident_id, reason=reason, ended_at=ended_at
    )
    return await case.view()


@incidents.post(
    "/{incident_id}/containment", summary="Record a containment step consent has taken (checked with consent)"
)
async def record_containment(case: ManagedCase, body: Containment) -> dict[str, Any]:
    # The body's fields are the step's arguments, by name.
    return await containment.record_step(case.state, case.pool, case.principal, case.incident_id, **body.model_dump())


@incidents.post("/{incident_id}/publication", tags=["public"], summary="Publish a breach notice on the public page")
async def publish_notice(case: ManagedCase, body: Publication) -> dict[str, Any]:
    return await publishing.publish(
        case.state, case.pool, case.principal, case.incident_id, body.district_id, body.text
    )


@incidents.post("/{incident_id}/close", summary="Close the incident (every obligation met or settled)")
async def close_incident(case: ManagedCase) -> dict[str, Any]:
    await reporting.close_incident(case.state, case.pool, case.principal, case.incident_id)
    return await case.view()


@public.get("/breach-notices", summary="Breach notices districts chose to publish (no sign-in)")
async def public_notices(runtime: RuntimeDep) -> dict[str, Any]:
    return {"notices": await publishing.public_notices(runtime.pool)}


@districts.get("/{district_id}/breach-deadlines", summary="A district's own deadlines, shorter than the law's")
async def get_deadlines(
    district_id: Annotated[str, Path(pattern=ID)], principal: Manager, runtime: RuntimeDep
) -> dict[str, Any]:
    return await reading.district_deadlines(runtime.pool, principal, district_id)


@districts.put(
    "/{district_id}/breach-deadlines", summary="Set a district's own deadlines (each shorter than the law's)"
)
async def set_deadlines(
    district_id: Annotated[str, Path(pattern=ID)],
    body: Deadlines,
    principal: Manager,
    runtime: RuntimeDep,
    state: StateDep,
) -> dict[str, Any]:
    hours = {Kind(name.removesuffix("_hours")): v for name, v in body.model_dump().items() if v is not None}
    await reporting.set_deadlines(state, runtime.pool, principal, district_id, hours)
    return reading.deadlines_view(district_id, hours)


@students.get(
    "/{student_key}/breach-letters", summary="Breach letters about a child (the parent, beside the disclosure report)"
)
async def student_letters(
    student_key: Annotated[str, Path(pattern=r"^stu_[a-z0-9]{1,64}$")],
    principal: ParentOrCompliance,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    return await reading.letters_about(runtime.pool, principal, student_key)


@keys.get("/keys", tags=["scope"], summary="The key that signs frozen scopes (pin it to verify bundles)")
async def signing_key(principal: KeyReader, state: StateDep) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization

    pem = state.signer.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {"name": state.signer.name, "public_key": pem.decode()}


ROUTERS = (incidents, public, districts, students, keys)
# The OpenAPI document's groups, in its order.
TAGS = {
    "incidents": "Breaches and unauthorized releases (8 NYCRR 121.10)",
    "scope": "Who and what was affected, proven from the disclosure log",
    "notices": "Reports to the CPO, letters to families, district summaries",
    "public": "Breach notices districts choose to publish",
}
