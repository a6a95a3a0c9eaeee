"""The audit service's HTTP API: compliance search and export, proofs, verification, parents.

Thin: each route checks who may call it and hands its parameters to a use case in
`services/audit/application/`.

Who may call what:
* compliance: everything below.
* parent: their own child's disclosures (plain language), tree heads and proofs (hashes only).
* operator: the latest tree head and the verification report (indices and sizes, no
  student data); never entries.
* everyone else (vendors, district and school staff, services except for signing a head): 403.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from homeroom.auth import Principal, Role, require_roles
from homeroom.contracts.disclosure_selection import DisclosureSelection
from homeroom.contracts.disclosures_present import DisclosuresPresent, PresentDisclosures
from homeroom.problems import Problem, problem_type
from homeroom.storage import BIGINT_MAX
from services.audit import store
from services.audit.application import export, proofs, search, tree_heads, witnessing
from services.audit.application import selection as selections
from services.audit.application import verification as verifying
from services.audit.state import AuditRuntime, RuntimeDep

# One router per group of the OpenAPI document (its tag), described in TAGS at the end.
compliance_routes = APIRouter(prefix="/v1", tags=["compliance"])
proof_routes = APIRouter(prefix="/v1", tags=["proofs"])
parent_routes = APIRouter(prefix="/v1", tags=["parents"])
internal_routes = APIRouter(prefix="/v1", tags=["internal"])
public_routes = APIRouter(prefix="/v1", tags=["public"])

Compliance = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE))]
ProofReader = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.PARENT, Role.OPERATOR))]
HeadSigner = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.SERVICE))]
Verifier = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.OPERATOR))]
ParentOrCompliance = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.PARENT))]
Service = Annotated[Principal, Depends(require_roles(Role.SERVICE))]
Scoper = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.SERVICE))]


async def _for_proof_reader(runtime: RuntimeDep, _: ProofReader) -> AuditRuntime:
    return runtime


# What every tree-head and proof route takes: the runtime, for a caller who may read proofs.
ProofRuntime = Annotated[AuditRuntime, Depends(_for_proof_reader)]


# --- compliance: search ---------------------------------------------------------------------


@compliance_routes.get("/entries", summary="Search the log (stable pages by sequence number)")
async def list_entries(
    runtime: RuntimeDep,
    _: Compliance,
    filters: Annotated[store.EntryFilter, Query()],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    return await search.search(runtime, filters, limit)


@compliance_routes.get("/entries/{seq}", summary="One entry with its inclusion proof")
async def get_entry(
    runtime: RuntimeDep, _: Compliance, seq: Annotated[int, Path(ge=0, le=BIGINT_MAX)]
) -> dict[str, Any]:
    return await proofs.entry_with_proof(runtime, seq)


# --- tree heads and proofs -------------------------------------------------------------------


@proof_routes.get("/tree-heads/latest", summary="The latest signed tree head and the log's public key")
async def latest_head(runtime: ProofRuntime) -> dict[str, Any]:
    return await proofs.latest_head(runtime)


@proof_routes.get("/keys", summary="The log's public keys: the signing key's and every retired one's")
async def public_keys(runtime: ProofRuntime) -> dict[str, Any]:
    """Heads and receipts name the key id that signed them; a verifier trusts these keys
    (pinned out of band, ideally) and checks each statement against the key it names."""
    return proofs.public_keys(runtime)


@proof_routes.post("/tree-heads", status_code=201, summary="Sign a tree head now")
async def sign_head(runtime: RuntimeDep, _: HeadSigner) -> dict[str, Any]:
    signed = await tree_heads.sign_now(runtime)
    return signed.to_dict()


@proof_routes.get("/proofs/inclusion", summary="Audit path of entry `index` in the tree of `tree_size`")
async def inclusion(
    runtime: ProofRuntime, index: Annotated[int, Query(ge=0)], tree_size: Annotated[int, Query(ge=1)]
) -> dict[str, Any]:
    return await proofs.inclusion(runtime, index, tree_size)


@proof_routes.get("/proofs/consistency", summary="Proof that tree `first` is a prefix of tree `second`")
async def consistency(
    runtime: ProofRuntime, first: Annotated[int, Query(ge=0)], second: Annotated[int, Query(ge=0)]
) -> dict[str, Any]:
    return await proofs.consistency(runtime, first, second)


# --- reconciliation (records' read log against this log) -------------------------------------


@internal_routes.post(
    "/internal/disclosures/present",
    summary="Which of these disclosure ids the log holds (records' reconciliation; ids only)",
)
async def disclosures_present(runtime: RuntimeDep, _: Service, body: DisclosuresPresent) -> PresentDisclosures:
    return PresentDisclosures.model_validate(await search.present(runtime, body.disclosure_ids))


# --- breach scoping: a recipient's disclosures with one multiproof --------------------------


@compliance_routes.post(
    "/selections/disclosures",
    summary="Every disclosure to a recipient in a period, with key destructions and one multiproof (JSON Lines)",
)
async def select_disclosures(runtime: RuntimeDep, _: Scoper, body: DisclosureSelection) -> StreamingResponse:
    """What a breach's scope is computed from (homeroom/contracts/disclosure_selection.py): pseudonymous
    keys and element names only, proven against a signed (and, where witnessed, cosigned) tree head."""
    prepared = await selections.prepare(runtime, body)
    return StreamingResponse(
        selections.stream(runtime, prepared, runtime.state.keyring, runtime.settings.checkpoint_origin),
        media_type="application/jsonl",
    )


# --- export and verification -----------------------------------------------------------------


@compliance_routes.get("/export", summary="The whole log, for offline verification (JSON Lines) or CSV")
async def export_log(
    runtime: RuntimeDep, _: Compliance, format: Literal["jsonl", "csv"] = "jsonl"
) -> StreamingResponse:
    if format == "csv":
        return StreamingResponse(
            export.csv_rows(runtime),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'},
        )
    return StreamingResponse(
        export.jsonl(runtime),
        media_type="application/jsonl",
        headers={"Content-Disposition": 'attachment; filename="audit-log.jsonl"'},
    )


@proof_routes.get(
    "/checkpoint",
    summary="The latest checkpoint a witness cosigned (c2sp.org/tlog-checkpoint signed note, with the cosignature)",
)
async def checkpoint(runtime: ProofRuntime) -> dict[str, Any]:
    recorded = await witnessing.latest(runtime)
    if recorded is None:
        raise Problem(
            404,
            "No witnessed checkpoint yet",
            "no witness has cosigned a checkpoint of this log yet",
            type=problem_type("not-found"),
        )
    return {**recorded.to_dict(), "origin": runtime.settings.checkpoint_origin}


@compliance_routes.get("/verification", summary="Verify the stored log now")
async def verification(runtime: RuntimeDep, _: Verifier) -> dict[str, Any]:
    return await verifying.report(runtime)


# --- parents ----------------------------------------------------------------------------------


@parent_routes.get(
    "/students/{student_key}/disclosures",
    summary="Every disclosure of a child's data: to whom, what, when, why, under which agreement",
)
async def student_disclosures(
    runtime: RuntimeDep,
    principal: ParentOrCompliance,
    student_key: str,
    after: Annotated[int | None, Query(ge=-1, le=BIGINT_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    return await search.student_disclosures(runtime, principal, student_key, after, limit)


@public_routes.get(
    "/public/disclosure-counts/{district}",
    summary="A year's recorded disclosures of a district's students, by recipient and purpose (no sign-in)",
)
async def disclosure_counts(
    district: Annotated[str, Path(max_length=100)],
    runtime: RuntimeDep,
    days: Annotated[int, Query(ge=1, le=366)] = 365,
) -> dict[str, Any]:
    """For the district's transparency page (issue 24): who received its students' data and for
    what, as counts; a count below 10 is shown as "fewer than 10", never exactly."""
    return await search.disclosure_counts(runtime, district, days)


ROUTERS = (compliance_routes, proof_routes, parent_routes, internal_routes, public_routes)
# The OpenAPI document's groups, in its order.
TAGS = {
    "compliance": "Search, export and verify the disclosure log",
    "proofs": "Signed tree heads, inclusion and consistency proofs",
    "parents": "What was disclosed about a child, in plain language",
}
