"""Freezing a scope: the affected population computed from the disclosure log, proven, signed.

1. Sign a fresh tree head at audit (it is witnessed as it is signed), so the scope covers
   every disclosure made until now and the head is one a witness cosigned.
2. Stream audit's selection (`homeroom/contracts/disclosure_selection.py`) and check it as it
   comes: every entry re-hashes to its leaf, obeys the selection rule, in order; the
   multiproof gives the head's root; the head is signed by the log's key (pinned, or the
   keys audit publishes) and, where a witness key is pinned, cosigned by that witness.
3. Write it into a bundle (`scope.py`) as it streams, in chunks, with the students and
   totals the same `ScopeBuilder` the offline verifier runs computes, and sign the bundle.

All of it is one transaction holding the incident's row lock: a version is frozen whole or
not at all, and versions are numbered without gaps. Re-scoping (a longer period, another
agreement) makes a new version; old versions stay as they were (append-only tables).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

from homeroom.auth import Principal
from homeroom.checkpoint import ED25519, Checkpoint, Note, NoteError, Verifier, verify_note
from homeroom.contracts import disclosure_selection as sel
from homeroom.contracts.clients import PeerUnavailable
from homeroom.problems import Problem, problem_type
from homeroom.rows import field_values
from homeroom.tlog.canonical import canonical_json
from homeroom.tlog.merkle import leaf_hash, root_from_multiproof
from homeroom.tlog.signing import Keyring, SignedTreeHead, verify_head
from services.incidents import metrics, store
from services.incidents.application.common import (
    actor,
    invalid,
    load_visible,
    record,
    require_not_closed,
    require_whole_incident,
    unavailable,
)
from services.incidents.incidents import Status
from services.incidents.scope import BundleWriter, ScopeBuilder, ScopeError, line, scope_header
from services.incidents.state import IncidentsState


@dataclass(frozen=True, slots=True)
class Rescope:
    """Changes to scope with (None: keep the incident's)."""

    exposure_start: datetime | None = None
    exposure_end: datetime | None = None
    disclosed_since: datetime | None = None
    add_agreement_ids: tuple[str, ...] = ()


class UntrustedAnswer(Problem):
    """Audit's answer failed a check: nothing is frozen."""

    def __init__(self, message: str) -> None:
        super().__init__(
            502,
            "The disclosure log's answer does not verify",
            message,
            type=problem_type("scope-unverified"),
        )


async def freeze(
    state: IncidentsState, pool: asyncpg.Pool, principal: Principal, incident_id: str, rescope: Rescope
) -> dict[str, Any]:
    started = state.now()
    row = await load_visible(pool, principal, incident_id)
    require_not_closed(row)
    require_whole_incident(principal, row)
    exposure_start = rescope.exposure_start or row["exposure_start"]
    until = rescope.exposure_end or row["exposure_end"] or started
    since = rescope.disclosed_since or row["disclosed_since"]
    agreements = sorted(set(row["agreement_ids"]) | set(rescope.add_agreement_ids))
    organizations = [] if agreements else [row["recipient_org"]] if row["recipient_org"] else []
    if not agreements and not organizations:
        raise invalid(
            "agreement_ids", "scope.no_recipient", "the incident names no agreement or recipient organisation"
        )
    if exposure_start is not None and exposure_start >= until:
        raise invalid("exposure_start", "time.range_empty", "the exposure starts before it ends")
    try:
        selection = sel.DisclosureSelection(
            agreement_ids=agreements,
            organizations=organizations,
            since=since,
            until=until,
            destroyed_before=exposure_start,
        )
        head = await state.peers.audit.sign_head()
    except PeerUnavailable as exc:
        raise unavailable(exc) from None
    except ValueError as exc:
        raise invalid("selection", "scope.selection_invalid", str(exc)) from None
    request = selection.model_copy(update={"tree_size": int(head["size"])})
    async with pool.acquire() as conn, conn.transaction():
        row = await load_visible(conn, principal, incident_id, lock=True)
        require_not_closed(row)
        number = row["latest_version"] + 1
        frozen = await _stream_into_bundle(state, conn, request, incident_id, number, exposure_start, started)
        await store.insert_version(
            conn,
            {
                "incident_id": incident_id,
                "version": number,
                "computed_at": started,
                "computed_by": actor(principal),
                "selection": request.model_dump(mode="json"),
                "exposure_start": exposure_start,
                **frozen.version_row(),
            },
        )
        await store.insert_students(conn, incident_id, number, frozen.students)
        changes: dict[str, Any] = {"latest_version": number}
        if row["status"] == Status.OPEN.value:
            changes["status"] = Status.SCOPED.value
        if set(agreements) != set(row["agreement_ids"]):
            changes["agreement_ids"] = agreements
        for name, value in (
            ("exposure_start", rescope.exposure_start),
            ("exposure_end", rescope.exposure_end),
            ("disclosed_since", rescope.disclosed_since),
        ):
            if value is not None:
                changes[name] = value
        await store.update_incident(conn, incident_id, **changes)
        fresh = await store.get_incident(conn, incident_id)
        assert fresh is not None
        totals = frozen.totals
        await record(
            conn,
            fresh,
            principal,
            "incident_scoped",
            started,
            history={
                "version": number,
                "students": totals["students"],
                "disclosures": totals["disclosures"],
                "tree_size": frozen.tree_size,
                "witnessed": frozen.witnessed,
            },
            scope_version=number,
            scope_sha256=frozen.bundle_sha256.hex(),
            tree_size=frozen.tree_size,
            students=int(totals["students"]),
            disclosures=int(totals["disclosures"]),
        )
    metrics.SCOPES_FROZEN.inc()
    return {"incident_id": incident_id, "version": number, **frozen.summary()}


@dataclass
class Frozen:
    """A frozen scope: its students, and the rest as stored in its version row (columns of the same names)."""

    students: list[Any]
    totals: dict[str, Any]
    tree_size: int
    tree_root: bytes
    witnessed: bool
    entries: int
    proof_hashes: int
    bundle_sha256: bytes
    bundle_bytes: int
    raw_bytes: int
    signature_note: str

    def version_row(self) -> dict[str, Any]:
        return field_values(self, _VERSION_COLUMNS)

    def summary(self) -> dict[str, Any]:
        """What the API tells of the scope: the version row with the hashes in hex, without the note."""
        row = self.version_row()
        del row["signature_note"]
        return {**row, "tree_root": self.tree_root.hex(), "bundle_sha256": self.bundle_sha256.hex()}


_VERSION_COLUMNS = tuple(f.name for f in fields(Frozen) if f.name != "students")


class _Chunks:
    """Compressed bytes into numbered rows of about `size` bytes each."""

    def __init__(self, conn: Any, incident_id: str, version: int, size: int) -> None:
        self.conn, self.incident_id, self.version, self.size = conn, incident_id, version, size
        self.pending = bytearray()
        self.n = 0
        self.total = 0

    async def add(self, data: bytes) -> None:
        self.pending += data
        self.total += len(data)
        if len(self.pending) >= self.size:
            await self.flush()

    async def flush(self) -> None:
        if self.pending:
            await store.insert_chunk(self.conn, self.incident_id, self.version, self.n, bytes(self.pending))
            self.n += 1
            self.pending = bytearray()


async def _stream_into_bundle(
    state: IncidentsState,
    conn: Any,
    request: sel.DisclosureSelection,
    incident_id: str,
    version: int,
    exposure_start: datetime | None,
    computed_at: datetime,
) -> Frozen:
    writer = BundleWriter()
    chunks = _Chunks(conn, incident_id, version, state.settings.bundle_chunk_bytes)
    builder = ScopeBuilder(request, exposure_start)
    leaves: list[tuple[int, bytes]] = []
    proof: list[bytes] = []
    header: sel.SelectionHeader | None = None
    ended: dict[str, Any] | None = None
    number = 0
    try:
        async for raw in state.peers.audit.selection(request, state.settings.scope_timeout_s):
            number += 1
            obj = sel.parse_line(raw, number)
            kind = obj["type"]
            if header is None:
                header = sel.parse_header(obj, f"line {number}")
                # Pinned keys where configured; else the keys audit names (as its /v1/keys would).
                keys = state.audit_keys or Keyring.from_pems(p.encode() for p in header.public_keys.values())
                _check_head(header, keys, state.witness, request.tree_size)
                await chunks.add(
                    writer.write(line(scope_header(incident_id, version, computed_at, request, exposure_start, obj)))
                )
                continue
            if ended is not None:
                raise UntrustedAnswer(f"line {number}: more after the end line")
            if kind == "entry":
                item = sel.parse_entry(obj, f"line {number}")
                computed = leaf_hash(canonical_json(item.entry))
                if computed != item.leaf_hash or item.index >= header.tree_size:
                    raise UntrustedAnswer(f"entry {item.index}: its content does not hash to its leaf in the tree")
                builder.add(item)
                leaves.append((item.index, computed))
            elif kind == "proof":
                proof += sel.parse_proof(obj, f"line {number}")
            elif kind == "end":
                ended = obj
                continue
            else:
                raise UntrustedAnswer(f"line {number}: an unknown line type {kind!r}")
            await chunks.add(writer.write(raw.decode() + "\n"))
    except (sel.SelectionFormatError, ScopeError) as exc:
        raise UntrustedAnswer(str(exc)) from None
    except PeerUnavailable as exc:
        raise unavailable(exc) from None
    if header is None or ended is None:
        raise UntrustedAnswer("the selection ended before its end line")
    if ended.get("entries") != len(leaves) or ended.get("proof_hashes") != len(proof):
        raise UntrustedAnswer("the end line's counts are not what was sent")
    leaves.sort()
    if leaves:
        try:
            proven = root_from_multiproof(leaves, header.tree_size, proof) == header.root
        except ValueError as exc:
            raise UntrustedAnswer(f"the multiproof does not fit the entries: {exc}") from None
        if not proven:
            raise UntrustedAnswer("the entries and the multiproof do not give the signed root")
    students, totals = builder.finish()
    for student in students:
        await chunks.add(writer.write(line(student.line())))
    await chunks.add(writer.write(line(totals)))
    tail, digest, note = writer.close(incident_id, version, state.signer)
    await chunks.add(tail)
    await chunks.flush()
    metrics.SCOPE_BYTES.observe(chunks.total)
    return Frozen(
        students=students,
        totals=totals,
        tree_size=header.tree_size,
        tree_root=header.root,
        witnessed=header.checkpoint is not None and state.witness is not None,
        entries=len(leaves),
        proof_hashes=len(proof),
        bundle_sha256=digest,
        bundle_bytes=chunks.total,
        raw_bytes=writer.raw_bytes,
        signature_note=note,
    )


def _check_head(header: sel.SelectionHeader, keys: Keyring, witness: Verifier | None, size: int | None) -> None:
    try:
        head = SignedTreeHead.from_dict(header.head)
    except ValueError as exc:
        raise UntrustedAnswer(f"the tree head is malformed: {exc}") from None
    if not verify_head(head, keys):
        raise UntrustedAnswer("the tree head is not signed by the log's key")
    if (head.head.size, head.head.root) != (header.tree_size, header.root) or (size and head.head.size != size):
        raise UntrustedAnswer("the signed tree head is not the tree the selection is proven against")
    if witness is None:
        return
    if header.checkpoint is None:
        raise UntrustedAnswer("the tree head was not cosigned by the witness")
    try:
        note = Note.parse(header.checkpoint)
        checkpoint = Checkpoint.from_text(note.text)
        log_key = keys.get(head.key_id)
        verifiers = [witness] + ([Verifier(header.origin, ED25519, log_key)] if log_key else [])
        names = verify_note(note, verifiers)
    except NoteError as exc:
        raise UntrustedAnswer(f"the witnessed checkpoint does not verify: {exc}") from None
    if witness.name not in names or (checkpoint.size, checkpoint.root) != (header.tree_size, header.root):
        raise UntrustedAnswer("the witness's cosignature is not on this tree head")
