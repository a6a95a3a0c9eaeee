"""The audit service's HTTP API: compliance search and export, proofs, verification, parents.

Who may call what:
* compliance: everything below.
* parent: their own child's disclosures (plain language), tree heads and proofs (hashes only).
* operator: the latest tree head and the verification report (indices and sizes, no
  student data); never entries.
* everyone else (vendors, district and school staff, services except for signing a head): 403.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from homeroom.auth import Forbidden, Principal, Role, require_roles
from homeroom.catalogue import CATALOGUE, PURPOSES
from homeroom.contracts.disclosure_selection import DisclosureSelection
from homeroom.contracts.disclosures_present import DisclosuresPresent, PresentDisclosures
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.service import Runtime, RuntimeDep
from homeroom.storage import BIGINT_MAX
from services.audit import export, metrics, store, witnessing
from services.audit.application import selection as selections
from services.audit.entries import EXEMPT_BASES, STUDENT_KEY, describe_disclosure, entry_object
from services.audit.heads import check_stored_tree, sign_now, verify_stored
from services.audit.settings import AuditSettings
from services.audit.signing import Keyring, LogSigner, SignedTreeHead

router = APIRouter(prefix="/v1")

Compliance = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE))]
ProofReader = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.PARENT, Role.OPERATOR))]
HeadSigner = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.SERVICE))]
Verifier = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.OPERATOR))]
ParentOrCompliance = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.PARENT))]


def _settings(runtime: Runtime) -> AuditSettings:
    settings = runtime.settings
    assert isinstance(settings, AuditSettings)
    return settings


def _signer(runtime: Runtime) -> LogSigner:
    signer: LogSigner = runtime.extras["signer"]
    return signer


def _invalid(field: str, rule: str, message: str) -> Problem:
    return Problem.validation([FieldError(field, rule, message)])


def entry_json(entry: store.StoredEntry) -> dict[str, Any]:
    body = entry_object(entry.seq, entry.recorded_at_ms, entry.draft)
    body["leaf_hash"] = entry.leaf_hash.hex()
    # A receipt signed per entry exists only for entries appended before issue 19; the
    # receipt of every entry is the signed head and inclusion proof served beside it.
    body["receipt"] = None if entry.receipt is None else entry.receipt.to_dict()
    return body


def _head_json(head: SignedTreeHead | None) -> dict[str, Any] | None:
    return None if head is None else head.to_dict()


# --- compliance: search ---------------------------------------------------------------------


@router.get("/entries", tags=["compliance"], summary="Search the log (stable pages by sequence number)")
async def list_entries(
    runtime: RuntimeDep,
    _: Compliance,
    student_key: str | None = None,
    district_id: str | None = None,
    recipient: Annotated[str | None, Query(description="recipient organisation")] = None,
    agreement_id: str | None = None,
    legal_basis: str | None = None,
    purpose: str | None = None,
    element: str | None = None,
    kind: str | None = None,
    since: Annotated[datetime | None, Query(alias="from", description="occurred at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="occurred before (ISO 8601)")] = None,
    after: Annotated[int | None, Query(ge=-1, le=BIGINT_MAX, description="the next_after of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    for name, moment in (("query.from", since), ("query.to", until)):
        if moment is not None and moment.tzinfo is None:
            raise _invalid(name, "time.timezone_missing", "give a time zone (e.g. 2026-11-02T00:00:00Z)")
    if since is not None and until is not None and until <= since:
        raise _invalid("query.to", "time.range_empty", "'to' must be after 'from'")
    if element is not None and element not in CATALOGUE:
        raise _invalid("query.element", "element.unknown", f"{element!r} is not a catalogue element")
    filters = store.EntryFilter(
        student_key=student_key,
        district_id=district_id,
        recipient=recipient,
        agreement_id=agreement_id,
        legal_basis=legal_basis,
        purpose=purpose,
        element=element,
        kind=kind,
        since=since,
        until=until,
        after=after,
    )
    found = await store.search(runtime.pool, filters, limit + 1)
    page = found[:limit]
    return {
        "entries": [entry_json(e) for e in page],
        "next_after": page[-1].seq if len(found) > limit else None,
    }


@router.get("/entries/{seq}", tags=["compliance"], summary="One entry with its inclusion proof")
async def get_entry(
    runtime: RuntimeDep, _: Compliance, seq: Annotated[int, Path(ge=0, le=BIGINT_MAX)]
) -> dict[str, Any]:
    entry = await store.get_entry(runtime.pool, seq)
    if entry is None:
        raise Problem(404, "No such entry", f"the log has no entry {seq}", type=problem_type("not-found"))
    head = await store.latest_head(runtime.pool)
    proof: list[str] | None = None
    if head is not None and seq < head.head.size:
        proof = [h.hex() for h in await store.inclusion_proof(runtime.pool, seq, head.head.size)]
    return {
        "entry": entry_json(entry),
        "tree_head": _head_json(head),
        "inclusion_proof": proof,
        "included": proof is not None,
        "note": None if proof is not None else "not yet covered by a signed tree head; ask again after the next one",
    }


# --- tree heads and proofs -------------------------------------------------------------------


@router.get("/tree-heads/latest", tags=["proofs"], summary="The latest signed tree head and the log's public key")
async def latest_head(runtime: RuntimeDep, _: ProofReader) -> dict[str, Any]:
    head = await store.latest_head(runtime.pool)
    if head is None:
        raise Problem(404, "No tree head yet", "the log has not signed a tree head yet", type=problem_type("not-found"))
    signer = _signer(runtime)
    return {**head.to_dict(), "public_key": signer.public_key_pem().decode()}


@router.get("/keys", tags=["proofs"], summary="The log's public keys: the signing key's and every retired one's")
async def public_keys(runtime: RuntimeDep, _: ProofReader) -> dict[str, Any]:
    """Heads and receipts name the key id that signed them; a verifier trusts these keys
    (pinned out of band, ideally) and checks each statement against the key it names."""
    keys: Keyring = runtime.extras["keyring"]
    return {"signing_key_id": _signer(runtime).key_id, "keys": keys.pems()}


@router.post("/tree-heads", tags=["proofs"], status_code=201, summary="Sign a tree head now")
async def sign_head(runtime: RuntimeDep, _: HeadSigner) -> dict[str, Any]:
    signed = await sign_now(runtime)
    return signed.to_dict()


async def _check_size(runtime: Runtime, field: str, size: int) -> None:
    current = await store.tree_size(runtime.pool)
    if size > current:
        raise _invalid(field, "proof.tree_size_too_large", f"the log holds {current} entries; {size} is more")


@router.get("/proofs/inclusion", tags=["proofs"], summary="Audit path of entry `index` in the tree of `tree_size`")
async def inclusion(
    runtime: RuntimeDep,
    _: ProofReader,
    index: Annotated[int, Query(ge=0)],
    tree_size: Annotated[int, Query(ge=1)],
) -> dict[str, Any]:
    if index >= tree_size:
        raise _invalid("query.index", "proof.index_out_of_range", f"entry {index} is not in a tree of {tree_size}")
    await _check_size(runtime, "query.tree_size", tree_size)
    proof = await store.inclusion_proof(runtime.pool, index, tree_size)
    leaf = await store.leaf(runtime.pool, index)
    return {
        "index": index,
        "tree_size": tree_size,
        "leaf_hash": leaf.hex(),
        "root": (await store.root(runtime.pool, tree_size)).hex(),
        "proof": [h.hex() for h in proof],
    }


@router.get("/proofs/consistency", tags=["proofs"], summary="Proof that tree `first` is a prefix of tree `second`")
async def consistency(
    runtime: RuntimeDep,
    _: ProofReader,
    first: Annotated[int, Query(ge=0)],
    second: Annotated[int, Query(ge=0)],
) -> dict[str, Any]:
    current = await store.tree_size(runtime.pool)
    if first > second or first > current:
        # Not a client error: whoever saw a tree of `first` entries now finds fewer. The log
        # cannot prove a shorter tree extends a longer one; entries are missing.
        smaller = min(second, current)
        metrics.VERIFICATION_FAILURES.labels("truncated").inc()
        raise Problem(
            409,
            "Verification failed: the log is smaller than a tree already seen",
            f"a tree of {first} entries cannot be a prefix of one of {smaller}: "
            f"entries {smaller} to {first - 1} are missing (the log holds {current})",
            type=problem_type("log-truncated"),
            extensions={"missing_from": smaller, "missing_to": first - 1, "log_size": current},
        )
    await _check_size(runtime, "query.second", second)
    proof = await store.consistency_proof(runtime.pool, first, second)
    return {
        "first": first,
        "second": second,
        "first_root": (await store.root(runtime.pool, first)).hex(),
        "second_root": (await store.root(runtime.pool, second)).hex(),
        "proof": [h.hex() for h in proof],
    }


# --- reconciliation (records' read log against this log) -------------------------------------

Service = Annotated[Principal, Depends(require_roles(Role.SERVICE))]


@router.post(
    "/internal/disclosures/present",
    tags=["internal"],
    summary="Which of these disclosure ids the log holds (records' reconciliation; ids only)",
)
async def disclosures_present(runtime: RuntimeDep, _: Service, body: DisclosuresPresent) -> PresentDisclosures:
    rows = await runtime.pool.fetch(
        "SELECT event_id FROM entries WHERE event_id = ANY($1::text[])", sorted(set(body.disclosure_ids))
    )
    return PresentDisclosures(present=[r["event_id"] for r in rows])


# --- breach scoping: a recipient's disclosures with one multiproof --------------------------

Scoper = Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.SERVICE))]


@router.post(
    "/selections/disclosures",
    tags=["compliance"],
    summary="Every disclosure to a recipient in a period, with key destructions and one multiproof (JSON Lines)",
)
async def select_disclosures(runtime: RuntimeDep, _: Scoper, body: DisclosureSelection) -> StreamingResponse:
    """What a breach's scope is computed from (homeroom/contracts/disclosure_selection.py): pseudonymous
    keys and element names only, proven against a signed (and, where witnessed, cosigned) tree head."""
    prepared = await selections.prepare(runtime, body)
    keys: Keyring = runtime.extras["keyring"]
    return StreamingResponse(
        selections.stream(runtime, prepared, keys, _settings(runtime).checkpoint_origin),
        media_type="application/jsonl",
    )


# --- export and verification -----------------------------------------------------------------


async def _export_jsonl(runtime: Runtime) -> AsyncIterator[str]:
    heads = await store.heads(runtime.pool)
    size = await store.tree_size(runtime.pool)
    yield export.header_line(runtime.extras["keyring"], size, time.time_ns() // 1_000_000)
    for head in heads:
        yield export.head_line(head)
    async for batch in store.iter_entries(runtime.pool, _settings(runtime).export_batch):
        yield "".join(export.entry_line(e, entry_object(e.seq, e.recorded_at_ms, e.draft)) for e in batch)


CSV_COLUMNS = (
    "seq",
    "event_id",
    "kind",
    "occurred_at",
    "requester_organization",
    "requester_role",
    "requester_person",
    "recipient_organization",
    "recipient_role",
    "recipient_client_id",
    "student_key",
    "district_id",
    "elements",
    "purpose",
    "legal_basis",
    "agreement_id",
    "decision_id",
    "redisclosure_parties",
    "channel",
    "record_required",
    "leaf_hash",
    "receipt_signature",
)


def _cell(value: object) -> object:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe (OWASP CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


async def _export_csv(runtime: Runtime) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    async for batch in store.iter_entries(runtime.pool, _settings(runtime).export_batch):
        for e in batch:
            d = e.draft
            writer.writerow(
                _cell(v)
                for v in (
                    e.seq,
                    d.event_id,
                    d.kind,
                    entry_object(e.seq, e.recorded_at_ms, d)["occurred_at"],
                    d.requester.organization,
                    d.requester.role,
                    d.requester.person,
                    d.recipient.organization,
                    d.recipient.role,
                    d.recipient.client_id,
                    d.student_key,
                    d.district_id,
                    ";".join(d.elements),
                    d.purpose,
                    d.legal_basis,
                    d.agreement_id,
                    d.decision_id,
                    ";".join(d.redisclosure_parties),
                    d.channel,
                    "true" if d.record_required else "false",
                    e.leaf_hash.hex(),
                    "" if e.receipt is None else e.receipt.signature.hex(),
                )
            )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


@router.get("/export", tags=["compliance"], summary="The whole log, for offline verification (JSON Lines) or CSV")
async def export_log(
    runtime: RuntimeDep, _: Compliance, format: Literal["jsonl", "csv"] = "jsonl"
) -> StreamingResponse:
    if format == "csv":
        return StreamingResponse(
            _export_csv(runtime),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'},
        )
    return StreamingResponse(
        _export_jsonl(runtime),
        media_type="application/jsonl",
        headers={"Content-Disposition": 'attachment; filename="audit-log.jsonl"'},
    )


async def _witness_findings(runtime: Runtime, log_size: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """What the witnessed checkpoints say about the stored log: the latest cosigned head, and
    a truncation finding naming the missing range when a witness saw a larger log."""
    findings: list[dict[str, Any]] = []
    recorded = await witnessing.latest(runtime)
    witnessed_size = recorded[0] if recorded else 0
    head = await store.latest_head(runtime.pool)
    if head is not None and _settings(runtime).witness_url:
        answer = await witnessing.submit(runtime, head)
        if answer.truncated is not None:
            witnessed_size = max(witnessed_size, answer.witness_size or 0)
        recorded = await witnessing.latest(runtime) or recorded
    if witnessed_size > log_size:
        first, last = log_size, witnessed_size - 1
        findings.append(
            {
                "kind": "truncated",
                "message": f"a witness cosigned a log of {witnessed_size} entries; the log holds {log_size}: "
                f"entries {first} to {last} missing (truncated)",
                "index": first,
                "last_index": last,
                "head": None,
            }
        )
    checkpoint = None
    if recorded is not None:
        size, root, note, witness, cosigned_at = recorded
        checkpoint = {"size": size, "root": root.hex(), "witness": witness, "cosigned_at": cosigned_at, "note": note}
    return checkpoint, findings


@router.get(
    "/checkpoint",
    tags=["proofs"],
    summary="The latest checkpoint a witness cosigned (c2sp.org/tlog-checkpoint signed note, with the cosignature)",
)
async def checkpoint(runtime: RuntimeDep, _: ProofReader) -> dict[str, Any]:
    recorded = await witnessing.latest(runtime)
    if recorded is None:
        raise Problem(
            404,
            "No witnessed checkpoint yet",
            "no witness has cosigned a checkpoint of this log yet",
            type=problem_type("not-found"),
        )
    size, root, note, witness, cosigned_at = recorded
    return {
        "size": size,
        "root": root.hex(),
        "witness": witness,
        "cosigned_at": cosigned_at,
        "note": note,
        "origin": _settings(runtime).checkpoint_origin,
    }


@router.get("/verification", tags=["compliance"], summary="Verify the stored log now")
async def verification(runtime: RuntimeDep, _: Verifier) -> dict[str, Any]:
    report = await verify_stored(runtime)
    tree = await check_stored_tree(runtime)
    witnessed, truncation = await _witness_findings(runtime, await store.tree_size(runtime.pool))
    return {
        "ok": report.ok and tree.ok and not truncation,
        "witnessed_checkpoint": witnessed,
        "entries_ok": report.ok,
        "stored_nodes_invalid": [{"level": level, "index": index} for level, index in tree.bad_nodes],
        "stored_roots_mismatched": tree.bad_roots,
        "entries_read": report.entries_read,
        "log_size": report.log_size,
        "heads_checked": report.heads_checked,
        "authenticated_size": report.authenticated_size,
        "findings": truncation
        + [
            {
                "kind": f.kind.value,
                "message": f.message,
                "index": f.index,
                "last_index": f.last_index,
                "head": None if f.head is None else {"size": f.head.size, "timestamp_ms": f.head.timestamp_ms},
            }
            for f in report.findings
        ],
        "failing_entries": report.entry_indices(),
        "failing_heads": [{"size": h.size, "timestamp_ms": h.timestamp_ms} for h in report.heads()],
    }


# --- parents ----------------------------------------------------------------------------------


@router.get(
    "/students/{student_key}/disclosures",
    tags=["parents"],
    summary="Every disclosure of a child's data: to whom, what, when, why, under which agreement",
)
async def student_disclosures(
    runtime: RuntimeDep,
    principal: ParentOrCompliance,
    student_key: str,
    after: Annotated[int | None, Query(ge=-1, le=BIGINT_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    if principal.role is Role.PARENT and not principal.is_parent_of(student_key):
        raise Forbidden("a parent sees only their own child's disclosures")
    if not STUDENT_KEY.match(student_key):
        raise _invalid("path.student_key", "student_key.format", "not a pseudonymous student key (stu_...)")
    filters = store.EntryFilter(student_key=student_key, kind="disclosure_recorded", after=after)
    found = await store.search(runtime.pool, filters, limit + 1)
    page = found[:limit]
    out = []
    own_views: dict[str, dict[str, Any]] = {}
    for e in page:
        d = e.draft
        if principal.role is Role.PARENT and not principal.is_parent_in(student_key, d.district_id):
            # A district where the parent's link is not active (a transfer carried it and the
            # district has not accepted it, or it was revoked): none of its disclosures (issue 24).
            continue
        if d.recipient.role == "parent":
            # A parent's (or an eligible student's) own inspection (99.10) is no disclosure to anyone
            # else: shown apart, one line per day, never as "who received your child's data".
            day = entry_object(e.seq, e.recorded_at_ms, d)["occurred_at"][:10]
            seen = own_views.setdefault(day, {"date": day, "views": 0, "districts": []})
            seen["views"] += 1
            if d.district_id not in seen["districts"]:
                seen["districts"].append(d.district_id)
            continue
        out.append(
            {
                "seq": e.seq,
                "when": entry_object(e.seq, e.recorded_at_ms, d)["occurred_at"],
                "recipient": d.recipient.to_dict(),
                "elements": [{"id": x, "name": CATALOGUE[x].name if x in CATALOGUE else x} for x in d.elements],
                "purpose": d.purpose,
                "purpose_description": PURPOSES.get(d.purpose, ""),
                "legal_basis": d.legal_basis,
                "agreement_id": d.agreement_id or None,
                "redisclosure_parties": list(d.redisclosure_parties),
                "record_required": d.record_required and d.legal_basis not in EXEMPT_BASES,
                "summary": describe_disclosure(d),
            }
        )
    return {
        "student_key": student_key,
        "disclosures": out,
        "own_views": sorted(own_views.values(), key=lambda v: str(v["date"]), reverse=True),
        "next_after": page[-1].seq if len(found) > limit else None,
    }


SMALL_CELL = 10  # counts below this are published as "fewer than 10" (FERPA 99.31(b)(1) practice)


@router.get(
    "/public/disclosure-counts/{district}",
    tags=["public"],
    summary="A year's recorded disclosures of a district's students, by recipient and purpose (no sign-in)",
)
async def disclosure_counts(
    district: Annotated[str, Path(max_length=100)],
    runtime: RuntimeDep,
    days: Annotated[int, Query(ge=1, le=366)] = 365,
) -> dict[str, Any]:
    """For the district's transparency page (issue 24): who received its students' data and for
    what, as counts; a count below 10 is shown as "fewer than 10", never exactly."""
    since = datetime.now(UTC) - timedelta(days=days)
    rows = await store.disclosure_counts(runtime.pool, district, since)
    return {
        "district_id": district,
        "since": since.isoformat(),
        "counts": [
            {
                "recipient": r["recipient"],
                "purpose": r["purpose"],
                "count": r["count"] if r["count"] >= SMALL_CELL else f"fewer than {SMALL_CELL}",
            }
            for r in rows
        ],
    }
