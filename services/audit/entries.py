"""What one log entry says, and the exact bytes its leaf hash covers (pure: no I/O).

An entry is a FERPA 99.32 record of one event: when, who asked and who received, which
student (pseudonymous key), which data elements (names, never values), why (purpose),
under which legal basis and agreement, which policy decision allowed it, and whom the
recipient may pass it on to. Its leaf is ``leaf_hash(canonical_bytes(entry))``: compact
JSON with sorted keys, so the same entry always gives the same bytes, and an export
line's ``entry`` object re-encodes to exactly the bytes that were hashed and signed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from homeroom.catalogue import CATALOGUE, LegalBasis
from homeroom.entry_text import escape, text_problem
from homeroom.rows import columns
from homeroom.tlog.canonical import canonical_json, format_time

ENTRY_VERSION = 1
STUDENT_KEY = re.compile(r"^stu_[a-z2-7]{32}$")
# The subject of a disclosure: a student key, or (teachers released to a rostering vendor, issue
# 23) a staff key, ``stf_`` + 32 base32 characters, pseudonymised by ingest the same way.
SUBJECT_KEY = re.compile(r"^st[uf]_[a-z2-7]{32}$")
# Disclosures FERPA 99.32(d) exempts from the record: to the parent, to school officials.
EXEMPT_BASES = frozenset({LegalBasis.PARENT.value, LegalBasis.SCHOOL_OFFICIAL.value})

DetailValue = str | int | bool | list[str]


@dataclass(frozen=True, slots=True)
class Party:
    organization: str = ""
    client_id: str = ""
    person: str = ""
    role: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """An entry before the log gives it a place (sequence number) and a time."""

    event_id: str
    topic: str
    kind: str
    occurred_at: datetime
    requester: Party = field(default_factory=Party)
    recipient: Party = field(default_factory=Party)
    student_key: str = ""
    district_id: str = ""
    elements: tuple[str, ...] = ()
    purpose: str = ""
    legal_basis: str = ""
    agreement_id: str = ""
    decision_id: str = ""
    policy_version: str = ""
    redisclosure_parties: tuple[str, ...] = ()
    channel: str = ""
    record_required: bool = True
    details: Mapping[str, DetailValue] = field(default_factory=dict)


def entry_object(seq: int, recorded_at_ms: int, draft: EntryDraft) -> dict[str, Any]:
    """The entry as the JSON object that is hashed (and exported)."""
    return {
        "v": ENTRY_VERSION,
        "seq": seq,
        "recorded_at_ms": recorded_at_ms,
        "event_id": draft.event_id,
        "topic": draft.topic,
        "kind": draft.kind,
        "occurred_at": format_time(draft.occurred_at),
        "requester": draft.requester.to_dict(),
        "recipient": draft.recipient.to_dict(),
        "student_key": draft.student_key,
        "district_id": draft.district_id,
        "elements": list(draft.elements),
        "purpose": draft.purpose,
        "legal_basis": draft.legal_basis,
        "agreement_id": draft.agreement_id,
        "decision_id": draft.decision_id,
        "policy_version": draft.policy_version,
        "redisclosure_parties": list(draft.redisclosure_parties),
        "channel": draft.channel,
        "record_required": draft.record_required,
        "details": dict(draft.details),
    }


def canonical_bytes(seq: int, recorded_at_ms: int, draft: EntryDraft) -> bytes:
    return canonical_json(entry_object(seq, recorded_at_ms, draft))


# The draft's fields stored as they are, in a column of the same name (a party is four columns;
# arrays come back as lists; details may come back as text).
_CONVERTED = frozenset({"requester", "recipient", "elements", "redisclosure_parties", "details"})
_STORED_AS_IS = tuple(f.name for f in fields(EntryDraft) if f.name not in _CONVERTED)


def draft_from_row(row: Any) -> EntryDraft:
    """Rebuild the draft from a stored row (a mapping by column): what the row says *now*, tampered or not."""

    def party(prefix: str) -> Party:
        return Party(row[f"{prefix}_org"], row[f"{prefix}_client"], row[f"{prefix}_person"], row[f"{prefix}_role"])

    details = row["details"]
    if isinstance(details, str):
        details = json.loads(details)
    return EntryDraft(
        **columns(row, _STORED_AS_IS),
        requester=party("requester"),
        recipient=party("recipient"),
        elements=tuple(row["elements"]),
        redisclosure_parties=tuple(row["redisclosure_parties"]),
        details=details,
    )


# --- checks: an entry holds names and codes, never a value -------------------------------


class EntryProblem(ValueError):
    def __init__(self, rule: str, message: str, field: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.field = field


# What an entry says of a release in one text each; a disclosure event carries them under the same names.
RELEASE_TEXTS = (
    "student_key",
    "district_id",
    "purpose",
    "legal_basis",
    "agreement_id",
    "decision_id",
    "policy_version",
    "channel",
)
# The draft's own texts, checked in this order before its parties, redisclosure parties and details.
_TEXT_FIELDS = ("event_id", *RELEASE_TEXTS)


def _texts(draft: EntryDraft) -> list[tuple[str, str]]:
    texts: list[tuple[str, str]] = [(name, getattr(draft, name)) for name in _TEXT_FIELDS]
    for prefix, p in (("requester", draft.requester), ("recipient", draft.recipient)):
        texts += [(f"{prefix}.{k}", v) for k, v in p.to_dict().items()]
    texts += [(f"redisclosure_parties/{i}", v) for i, v in enumerate(draft.redisclosure_parties)]
    for name, value in draft.details.items():
        values = value if isinstance(value, list) else [value]
        texts += [(f"details.{name}", v) for v in values if isinstance(v, str)]
    return texts


def problems(draft: EntryDraft) -> list[EntryProblem]:
    """Every rule ``draft`` breaks (homeroom.entry_text for texts), in field order."""
    found: list[EntryProblem] = []
    for name, value in _texts(draft):
        problem = text_problem(value)
        if problem is not None:
            found.append(EntryProblem(problem[0], f"{name} {problem[1]}", name))
    if draft.student_key and not SUBJECT_KEY.match(draft.student_key):
        found.append(
            EntryProblem(
                "entry.student_key",
                "student_key is not a pseudonymous key (stu_ + 32 base32 characters); raw ids never enter the log",
                "student_key",
            )
        )
    for i, element in enumerate(draft.elements):
        if element not in CATALOGUE:
            found.append(
                EntryProblem(
                    "entry.element_unknown",
                    f"elements/{i} is not a catalogue element name (values never enter the log)",
                    f"elements/{i}",
                )
            )
    return found


def check(draft: EntryDraft) -> None:
    """Refuse a draft that could carry a value instead of a name; raises EntryProblem."""
    found = problems(draft)
    if found:
        raise found[0]


def _escaped_party(p: Party) -> Party:
    return Party(escape(p.organization), escape(p.client_id), escape(p.person), escape(p.role))


def recorded_anyway(draft: EntryDraft, missing: Sequence[str] = ()) -> EntryDraft:
    """A disclosure that breaks a rule is still recorded (99.32), never dead-lettered: every
    text escaped (homeroom.entry_text.escape), a student key that is not pseudonymous kept
    only as its SHA-256, unknown elements moved to details, and the rules it broke named in
    ``details.problems``. Returns ``draft`` itself when it breaks none."""
    found = problems(draft)
    if not found and not missing:
        return draft
    details: dict[str, DetailValue] = {k: escape(v) if isinstance(v, str) else v for k, v in draft.details.items()}
    details["problems"] = sorted({p.rule for p in found} | set(missing))
    student_key = draft.student_key
    if student_key and not SUBJECT_KEY.match(student_key):
        details["student_key_sha256"] = hashlib.sha256(student_key.encode("utf-8", "surrogatepass")).hexdigest()
        student_key = ""
    unknown = [e for e in draft.elements if e not in CATALOGUE]
    if unknown:  # possibly a value smuggled as a name: only its digest is kept
        details["elements_unknown_sha256"] = [
            hashlib.sha256(e.encode("utf-8", "surrogatepass")).hexdigest() for e in unknown
        ]
    return replace(
        draft,
        event_id=escape(draft.event_id),
        requester=_escaped_party(draft.requester),
        recipient=_escaped_party(draft.recipient),
        student_key=student_key,
        district_id=escape(draft.district_id),
        elements=tuple(e for e in draft.elements if e in CATALOGUE),
        purpose=escape(draft.purpose),
        legal_basis=escape(draft.legal_basis),
        agreement_id=escape(draft.agreement_id),
        decision_id=escape(draft.decision_id),
        policy_version=escape(draft.policy_version),
        redisclosure_parties=tuple(escape(p) for p in draft.redisclosure_parties),
        channel=escape(draft.channel),
        details=details,
    )


# --- plain language for parents -----------------------------------------------------------


def element_names(elements: tuple[str, ...] | list[str]) -> list[str]:
    return [CATALOGUE[e].name if e in CATALOGUE else e for e in elements]


def _join(words: list[str]) -> str:
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def describe_disclosure(draft: EntryDraft) -> str:
    """One sentence a parent can read: to whom, what, when, why, under which agreement."""
    when = draft.occurred_at.astimezone(UTC).strftime("%-d %B %Y at %H:%M UTC")
    who = draft.recipient.organization or "an unnamed recipient"
    if draft.recipient.role:
        who += f" ({draft.recipient.role.replace('_', ' ')})"
    what = _join([n.lower() if i else n for i, n in enumerate(element_names(draft.elements))]) or "no data elements"
    sentence = f"On {when}, {who} received your child's {what}"
    if draft.purpose:
        sentence += f" for the purpose of {draft.purpose.replace('_', ' ')}"
    if draft.agreement_id:
        sentence += f", under agreement {draft.agreement_id}"
    if draft.legal_basis:
        sentence += f". Legal basis: {draft.legal_basis}"
    sentence += "."
    if not draft.record_required or draft.legal_basis in EXEMPT_BASES:
        sentence += " FERPA 99.32(d) does not require a record of this disclosure; it is shown for completeness."
    return sentence
