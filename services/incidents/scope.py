"""A breach's scope: which students, which elements, which disclosures (pure: no I/O).

The scope is computed from the disclosure log, never from contracts: audit selects every
disclosure to the recipient in the period with one multiproof against a signed, witnessed
tree head (`homeroom/contracts/disclosure_selection.py`). `ScopeBuilder` turns those
entries into the affected population, student by student and element by element; the
same builder runs inside Homeroom when the scope is frozen and inside the offline
verifier, so a state auditor recomputes every count from proven entries instead of
believing them.

Readable or not. Whatever Homeroom keeps for a recipient is sealed under keys it holds
(the agreement's key for release copies, the student's key for the record's values in
every topic), so data whose key was shredded *before the exposure began* was noise to
whoever breached the recipient. A disclosure at time t of (district D, student S,
agreement A) is not readable when a key destruction recorded at d, t <= d < exposure start,
destroyed S's key in D (an erasure order or retention) or A's key in D (the agreement's
end). An element of a student is readable if any disclosure of it is readable: its latest
disclosure came after every destruction that covers it.

The frozen scope is a bundle: gzip-compressed JSON Lines, in this order

    {"type": "scope", "format": FORMAT, "incident_id", "version", "computed_at",
     "selection": {...}, "exposure_start", "log": {the selection's header: signed head,
     witness-cosigned checkpoint, public keys}}
    {"type": "entry", ...} every proven entry, as audit sent it
    {"type": "proof", "hashes": [...]} the multiproof, in chunks
    {"type": "student", "district_id", "student_key", "elements", "unreadable_elements",
     "disclosures", "destructions"} per affected student, sorted
    {"type": "totals", ...}
    {"type": "signature", "sha256", "note"}: a C2SP signed note over the SHA-256 of every
        byte above (uncompressed), by the incidents service's key

`verify_bundle` checks all of it offline against pinned keys: the head's signature, the
witness's cosignature, every leaf, the multiproof, the selection rule for every entry, the
summary and totals recomputed, the bundle's own signature; and, given the full log export,
that nothing the rule selects is missing (completeness, which inclusion alone cannot show).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from homeroom.checkpoint import (
    ED25519,
    Checkpoint,
    Note,
    NoteError,
    NoteSigner,
    Verifier,
    verify_note,
)
from homeroom.contracts import disclosure_selection as sel
from homeroom.pseudonym import STAFF_KEY_PREFIX
from homeroom.tlog.canonical import canonical_json, format_time
from homeroom.tlog.merkle import leaf_hash, root_from_multiproof
from homeroom.tlog.signing import Keyring, SignedTreeHead, verify_head

FORMAT = "homeroom-breach-scope/1"
NOTE_LABEL = "homeroom-breach-scope/1"


class ScopeError(ValueError):
    """An entry that cannot be part of this scope (a rule it breaks, named)."""


# --- the affected population --------------------------------------------------------------


@dataclass(slots=True)
class StudentScope:
    district_id: str
    student_key: str
    elements: list[str]  # readable by whoever breached the recipient
    unreadable_elements: list[str]  # disclosed, but every copy's key was shredded before the exposure
    disclosures: list[int]
    destructions: list[int]  # the destruction records that made elements unreadable
    first_shared: str  # when the recipient first and last received this student's data
    last_shared: str

    def line(self) -> dict[str, Any]:
        return {
            "type": "student",
            "district_id": self.district_id,
            "student_key": self.student_key,
            "elements": self.elements,
            "unreadable_elements": self.unreadable_elements,
            "disclosures": self.disclosures,
            "destructions": self.destructions,
            "first_shared": self.first_shared,
            "last_shared": self.last_shared,
        }


@dataclass(slots=True)
class _Student:
    latest: dict[str, dict[str, str]] = field(default_factory=dict)  # agreement → element → latest time
    seqs: list[int] = field(default_factory=list)
    first: str = ""
    last: str = ""


class ScopeBuilder:
    """Feed it the selection's entries in stream order; `finish` gives students and totals."""

    def __init__(self, selection: sel.DisclosureSelection, exposure_start: datetime | None) -> None:
        self.selection = selection
        self.exposure_start = exposure_start
        self._start = format_time(exposure_start) if exposure_start is not None else None
        self._students: dict[tuple[str, str], _Student] = {}
        self._staff: dict[tuple[str, str], int] = {}  # (district, staff key) → disclosures
        self._destroyed: dict[tuple[str, str, str], tuple[str, list[int]]] = {}  # (district, scope, subject)
        self.disclosures = 0
        self.without_student = 0
        self.first_at: str | None = None
        self.last_at: str | None = None
        self._last_disclosure = -1
        self._last_destruction = -1

    def add(self, item: sel.SelectedEntry) -> None:
        entry = item.entry
        if item.role == "disclosure":
            self._disclosure(item.index, entry)
        else:
            self._destruction(item.index, entry)

    def _disclosure(self, index: int, entry: dict[str, Any]) -> None:
        if index <= self._last_disclosure:
            raise ScopeError(f"entry {index}: disclosures must come in log order")
        if self._last_destruction >= 0:
            raise ScopeError(f"entry {index}: a disclosure after the destruction records")
        self._last_disclosure = index
        if not self.selection.matches(entry):
            raise ScopeError(f"entry {index}: not a disclosure to this recipient in this period")
        when = str(entry["occurred_at"])
        self.disclosures += 1
        self.first_at = when if self.first_at is None else min(self.first_at, when)
        self.last_at = when if self.last_at is None else max(self.last_at, when)
        student = str(entry.get("student_key") or "")
        if not student:
            self.without_student += 1  # recorded escaped (a malformed key): counted, never dropped
            return
        if student.startswith(STAFF_KEY_PREFIX):
            # A teacher's data released with a roster (issue 23): counted as staff, never as a
            # student, so no family letter is written for it.
            staff = (str(entry.get("district_id") or ""), student)
            self._staff[staff] = self._staff.get(staff, 0) + 1
            return
        found = self._students.get((str(entry.get("district_id") or ""), student))
        if found is None:
            found = self._students[(str(entry.get("district_id") or ""), student)] = _Student()
        found.seqs.append(index)
        found.first = when if not found.first else min(found.first, when)
        found.last = max(found.last, when)
        by_element = found.latest.setdefault(str(entry.get("agreement_id") or ""), {})
        for element in entry.get("elements") or ():
            previous = by_element.get(element)
            if previous is None or when > previous:
                by_element[element] = when

    def _destruction(self, index: int, entry: dict[str, Any]) -> None:
        if index <= self._last_destruction:
            raise ScopeError(f"entry {index}: destruction records must come in log order")
        self._last_destruction = index
        if entry.get("kind") != "data_keys_destroyed":
            raise ScopeError(f"entry {index}: not a key destruction (keys.v1 data_keys_destroyed)")
        when = str(entry["occurred_at"])
        if self._start is None or when >= self._start:
            raise ScopeError(f"entry {index}: a key destruction not before the exposure began")
        details = entry.get("details") or {}
        scope = details.get("scope")
        district = str(entry.get("district_id") or "")
        if scope == "student":
            subject = str(entry.get("student_key") or "")
            named = any(key[1] == subject for key in self._students)
        elif scope == "agreement":
            subject = str(entry.get("agreement_id") or "")
            named = subject in self.selection.agreement_ids
        else:
            raise ScopeError(f"entry {index}: a key destruction of scope {scope!r} (student or agreement)")
        if not named:
            raise ScopeError(f"entry {index}: a key destruction of neither a selected student nor agreement")
        key = (district, scope, subject)
        latest, seqs = self._destroyed.get(key, ("", []))
        self._destroyed[key] = (max(latest, when), [*seqs, index])

    def finish(self) -> tuple[list[StudentScope], dict[str, Any]]:
        students: list[StudentScope] = []
        readable_pairs = unreadable_pairs = unreadable_only = 0
        by_element: dict[str, int] = {}
        districts: dict[str, dict[str, int]] = {}
        for (district, key), found in sorted(self._students.items()):
            by_student = self._destroyed.get((district, "student", key))
            readable: set[str] = set()
            disclosed: set[str] = set()
            used: set[int] = set()
            for agreement, elements in found.latest.items():
                by_agreement = self._destroyed.get((district, "agreement", agreement)) if agreement else None
                covers = [d for d in (by_student, by_agreement) if d is not None]
                shredded_at = max((d[0] for d in covers), default="")
                for element, latest in elements.items():
                    disclosed.add(element)
                    if latest > shredded_at:
                        readable.add(element)
                    else:
                        used.update(seq for d in covers if d[0] >= latest for seq in d[1])
            unreadable = sorted(disclosed - readable)
            students.append(
                StudentScope(
                    district,
                    key,
                    sorted(readable),
                    unreadable,
                    found.seqs,
                    sorted(used) if unreadable else [],
                    found.first,
                    found.last,
                )
            )
            readable_pairs += len(readable)
            unreadable_pairs += len(unreadable)
            counts = districts.setdefault(district, {"students": 0, "students_unreadable_only": 0, "disclosures": 0})
            counts["disclosures"] += len(found.seqs)
            if readable:
                counts["students"] += 1
            else:
                counts["students_unreadable_only"] += 1
                unreadable_only += 1
            for element in readable:
                by_element[element] = by_element.get(element, 0) + 1
        totals = {
            "type": "totals",
            "disclosures": self.disclosures,
            "disclosures_without_student": self.without_student,
            "students": sum(1 for s in students if s.elements),
            "students_unreadable_only": unreadable_only,
            "student_elements_readable": readable_pairs,
            "student_elements_unreadable": unreadable_pairs,
            "students_by_element": dict(sorted(by_element.items())),
            "staff_members": len(self._staff),
            "disclosures_of_staff": sum(self._staff.values()),
            "districts": dict(sorted(districts.items())),
            "destruction_records": sum(len(v[1]) for v in self._destroyed.values()),
            "first_disclosure_at": self.first_at,
            "last_disclosure_at": self.last_at,
        }
        return students, totals


# --- the bundle ---------------------------------------------------------------------------------


def scope_header(
    incident_id: str,
    version: int,
    computed_at: datetime,
    selection: sel.DisclosureSelection,
    exposure_start: datetime | None,
    log: dict[str, Any],
) -> dict[str, Any]:
    return {
        "type": "scope",
        "format": FORMAT,
        "incident_id": incident_id,
        "version": version,
        "computed_at": format_time(computed_at),
        "selection": selection.model_dump(mode="json", exclude={"tree_size", "destroyed_before"}),
        "exposure_start": format_time(exposure_start) if exposure_start is not None else None,
        "log": log,
    }


def line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def signature_text(incident_id: str, version: int, digest: bytes) -> str:
    return f"{NOTE_LABEL}\n{incident_id}\n{version}\n{digest.hex()}\n"


class BundleWriter:
    """Compresses lines as they come (gzip) and hashes what it compressed; `close` signs it."""

    def __init__(self) -> None:
        self._zip = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip member
        self._digest = hashlib.sha256()
        self.raw_bytes = 0
        self.lines = 0

    def write(self, text: str) -> bytes:
        data = text.encode()
        self._digest.update(data)
        self.raw_bytes += len(data)
        self.lines += 1
        return self._zip.compress(data)

    def close(self, incident_id: str, version: int, signer: NoteSigner) -> tuple[bytes, bytes, str]:
        """(the last compressed bytes, the SHA-256 signed, the signed note)."""
        digest = self._digest.digest()
        text = signature_text(incident_id, version, digest)
        rendered = Note(text, (signer.sign(text),)).render()
        tail = line({"type": "signature", "sha256": digest.hex(), "note": rendered}).encode()
        self.raw_bytes += len(tail)
        return self._zip.compress(tail) + self._zip.flush(), digest, rendered


def read_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The bundle's lines (bytes, newline kept) from its compressed chunks."""
    unzip = zlib.decompressobj(31)
    pending = b""
    for chunk in chunks:
        pending += unzip.decompress(chunk)
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw + b"\n"
    pending += unzip.flush()
    if pending:
        yield pending


# --- verifying a bundle offline -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustAnchors:
    """What the verifier trusts, pinned out of band; None: take the bundle's own (and say so)."""

    log_keys: Keyring | None = None
    witness: Verifier | None = None
    incidents: Verifier | None = None


@dataclass(slots=True)
class ScopeReport:
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    incident_id: str = ""
    version: int = 0
    tree_size: int = 0
    entries: int = 0
    proof_hashes: int = 0
    totals: dict[str, Any] = field(default_factory=dict)
    witnessed: bool = False
    complete: bool | None = None  # checked against a full log export, when one is given

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def verify_bundle(
    lines: Iterable[bytes],
    anchors: TrustAnchors,
    *,
    export_lines: Iterable[bytes] | None = None,
) -> ScopeReport:
    """Check a frozen scope offline; every finding names what failed."""
    report = ScopeReport()
    try:
        _verify(lines, anchors, report, export_lines)
    except (ScopeError, sel.SelectionFormatError, ValueError, KeyError, TypeError) as exc:
        report.findings.append(f"unreadable: {exc}")
    return report


def _verify(
    lines: Iterable[bytes], anchors: TrustAnchors, report: ScopeReport, export_lines: Iterable[bytes] | None
) -> None:
    digest = hashlib.sha256()
    header: dict[str, Any] | None = None
    builder: ScopeBuilder | None = None
    log: sel.SelectionHeader | None = None
    leaves: list[tuple[int, bytes]] = []
    proof: list[bytes] = []
    claimed_students: list[dict[str, Any]] = []
    claimed_totals: dict[str, Any] | None = None
    signature: dict[str, Any] | None = None
    selected: list[int] = []
    for number, raw in enumerate(lines, 1):
        if signature is not None:
            raise ScopeError(f"line {number}: nothing may follow the signature")
        obj = sel.parse_line(raw, number)
        kind = obj["type"]
        if kind == "signature":
            signature = obj
            continue
        digest.update(raw)
        if header is None:
            if kind != "scope" or obj.get("format") != FORMAT:
                raise ScopeError(f"line {number}: not a {FORMAT} bundle")
            header = obj
            log = sel.parse_header(obj["log"], f"line {number} log")
            selection = sel.DisclosureSelection.model_validate(obj["selection"])
            start = obj.get("exposure_start")
            builder = ScopeBuilder(selection, sel.parse_time(start) if start else None)
            report.incident_id, report.version = str(obj.get("incident_id")), int(obj.get("version") or 0)
            report.tree_size = log.tree_size
            _check_log(log, anchors, report)
        elif kind == "entry":
            assert builder is not None and log is not None
            item = sel.parse_entry(obj, f"line {number}")
            if item.index >= log.tree_size:
                raise ScopeError(f"line {number}: entry {item.index} is beyond the tree of {log.tree_size}")
            computed = leaf_hash(canonical_json(item.entry))
            if computed != item.leaf_hash:
                report.findings.append(f"entry {item.index}: its content does not hash to its leaf")
            builder.add(item)
            leaves.append((item.index, computed))
            if item.role == "disclosure":
                selected.append(item.index)
        elif kind == "proof":
            proof += sel.parse_proof(obj, f"line {number}")
        elif kind == "student":
            claimed_students.append(obj)
        elif kind == "totals":
            claimed_totals = obj
        else:
            raise ScopeError(f"line {number}: unknown line type {kind!r}")
    if header is None or builder is None or log is None:
        raise ScopeError("the bundle is empty")
    report.entries, report.proof_hashes = len(leaves), len(proof)
    leaves.sort()
    if leaves:
        try:
            proven = root_from_multiproof(leaves, log.tree_size, proof) == log.root
        except ValueError as exc:
            report.findings.append(f"the multiproof does not fit the entries: {exc}")
        else:
            if not proven:
                report.findings.append("the entries and the multiproof do not give the signed root: not proven")
    elif proof:
        report.findings.append("a multiproof with no entries to prove")
    students, totals = builder.finish()
    report.totals = totals
    if [s.line() for s in students] != claimed_students:
        report.findings.append("the students listed are not the ones the proven entries give")
    if claimed_totals != totals:
        report.findings.append("the totals are not the ones the proven entries give")
    _check_signature(signature, digest.digest(), report, anchors)
    if export_lines is not None:
        report.complete = _complete(export_lines, builder.selection, log, selected, report)


def _check_log(log: sel.SelectionHeader, anchors: TrustAnchors, report: ScopeReport) -> None:
    keys = anchors.log_keys
    if keys is None:
        keys = Keyring.from_pems(p.encode() for p in log.public_keys.values())
        report.notes.append("no pinned log key: the head is checked against the key the bundle carries")
    head = SignedTreeHead.from_dict(log.head)
    if not verify_head(head, keys):
        report.findings.append(f"the tree head of size {head.head.size} is not signed by the log's key")
    if head.head.size != log.tree_size or head.head.root != log.root:
        report.findings.append("the signed tree head is not the tree the entries are proven against")
    if log.checkpoint is None:
        if anchors.witness is not None:
            report.findings.append("no witness cosigned this tree head (a witness key was pinned)")
        else:
            report.notes.append("not witnessed: no cosigned checkpoint in the bundle")
        return
    try:
        note = Note.parse(log.checkpoint)
        checkpoint = Checkpoint.from_text(note.text)
        log_key = keys.get(head.key_id)
        verifiers = [Verifier(log.origin, ED25519, log_key)] if log_key is not None else []
        if anchors.witness is not None:
            verifiers.append(anchors.witness)
        names = verify_note(note, verifiers)
    except NoteError as exc:
        report.findings.append(f"the checkpoint does not verify: {exc}")
        return
    if (checkpoint.size, checkpoint.root) != (log.tree_size, log.root):
        report.findings.append("the cosigned checkpoint is of another tree")
    if log.origin not in names:
        report.findings.append("the checkpoint is not signed by the log's key")
    if anchors.witness is not None:
        if anchors.witness.name in names:
            report.witnessed = True
        else:
            report.findings.append(
                f"the checkpoint carries no cosignature by the pinned witness {anchors.witness.name}"
            )
    else:
        cosigners = [s.name for s in note.signatures if s.name != log.origin]
        report.notes.append(f"a cosignature by {', '.join(cosigners) or 'nobody'} is present; no witness key pinned")


def _check_signature(
    signature: dict[str, Any] | None, digest: bytes, report: ScopeReport, anchors: TrustAnchors
) -> None:
    if signature is None:
        report.findings.append("the bundle is not signed (no signature line)")
        return
    if signature.get("sha256") != digest.hex():
        report.findings.append("the bundle was changed after it was signed (its SHA-256 differs)")
        return
    try:
        note = Note.parse(str(signature.get("note")))
    except NoteError as exc:
        report.findings.append(f"the bundle's signature is not a signed note: {exc}")
        return
    if note.text != signature_text(report.incident_id, report.version, digest):
        report.findings.append("the bundle's signature names another incident, version or digest")
        return
    if anchors.incidents is None:
        report.notes.append("the bundle's own signature is not checked: no incidents key pinned")
        return
    try:
        verify_note(note, [anchors.incidents])
    except NoteError as exc:
        report.findings.append(f"the bundle's signature does not verify: {exc}")


def _complete(
    export_lines: Iterable[bytes],
    selection: sel.DisclosureSelection,
    log: sel.SelectionHeader,
    selected: list[int],
    report: ScopeReport,
) -> bool:
    """With the whole log (an audit export): the export's first `tree_size` entries give the signed
    root, and the rule selects from them exactly the disclosures the bundle holds."""
    from homeroom.tlog.merkle import MemoryNodeStore, MerkleLog

    leaves = bytearray()
    expected: list[int] = []
    count = 0
    for number, raw in enumerate(export_lines, 1):
        obj = json.loads(raw)
        if obj.get("type") != "entry":
            continue
        index = int(obj["index"])
        if index >= log.tree_size:
            break
        if index != count:
            report.findings.append(f"the export's line {number} holds entry {index}, expected {count}")
            return False
        entry = obj["entry"]
        leaves += leaf_hash(canonical_json(entry))
        if selection.matches(entry):
            expected.append(index)
        count += 1
    if count < log.tree_size:
        report.findings.append(f"the export holds {count} entries, fewer than the tree's {log.tree_size}")
        return False
    if MerkleLog(MemoryNodeStore.from_leaf_hashes(leaves)).root() != log.root:
        report.findings.append("the export does not give the signed root: it is another log")
        return False
    missing = sorted(set(expected) - set(selected))
    if missing:
        report.findings.append(
            f"{len(missing)} disclosures the rule selects are missing from the bundle: {missing[:5]}"
        )
        return False
    return True
