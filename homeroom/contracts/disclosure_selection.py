"""Audit's `POST /v1/selections/disclosures`: every disclosure to a recipient in a period, with
one multiproof against a signed (and witnessed) tree head; the incidents service scopes a
breach from it.

The request names the recipient (agreement ids and/or organisations) and the period; the
answer is JSON Lines, streamed, so a million disclosures never sit in one document:

    {"type": "log", "format": FORMAT, "tree_size", "root", "head": {signed tree head},
     "checkpoint": the witness-cosigned C2SP note of that size or null, "origin",
     "public_keys": {key id: PEM}}
    {"type": "entry", "role": "disclosure" | "destruction", "index", "leaf_hash", "entry": {...}}
    ... every selected disclosure in log order, then every key destruction (keys.v1
        `data_keys_destroyed`) of those students or agreements recorded before
        `destroyed_before`, in log order
    {"type": "proof", "hashes": [hex, ...]}   ... the multiproof of all those entries, in chunks
    {"type": "end", "entries": n, "proof_hashes": m}

`entry` re-encodes canonically (sorted keys, compact UTF-8 JSON) to the bytes whose
RFC 9162 leaf hash is `leaf_hash`; the multiproof (`homeroom/tlog/merkle.py`,
`multiproof_nodes`) takes the entries' leaves in index order to the head's root.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FORMAT = "homeroom-disclosure-selection/1"
PROOF_CHUNK = 10_000  # hashes per proof line
ENTRY_ROLES = ("disclosure", "destruction")

Text = Annotated[str, Field(min_length=1, max_length=200)]


class DisclosureSelection(BaseModel):
    """Which disclosures: to these agreements or organisations, made in [since, until)."""

    model_config = ConfigDict(extra="forbid")

    agreement_ids: list[Text] = Field(default_factory=list, max_length=50)
    organizations: list[Text] = Field(default_factory=list, max_length=50, description="recipient organisations")
    since: datetime | None = Field(default=None, description="disclosed at or after (ISO 8601 with zone)")
    until: datetime = Field(description="disclosed before (ISO 8601 with zone)")
    destroyed_before: datetime | None = Field(
        default=None, description="key destructions recorded before this time are included (the exposure's start)"
    )
    tree_size: int | None = Field(default=None, ge=0, description="the signed head to prove against (default: latest)")

    @model_validator(mode="after")
    def _check(self) -> DisclosureSelection:
        if not self.agreement_ids and not self.organizations:
            raise ValueError("name at least one agreement id or recipient organisation")
        for name in ("since", "until", "destroyed_before"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name} needs a time zone (e.g. 2026-11-02T00:00:00Z)")
        if self.since is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self

    def matches(self, entry: dict[str, Any]) -> bool:
        """Whether an entry object (as the log hashes it) is a disclosure this selection names."""
        if entry.get("kind") != "disclosure_recorded":
            return False
        recipient = entry.get("recipient") or {}
        named = entry.get("agreement_id") in self.agreement_ids or recipient.get("organization") in self.organizations
        if not named:
            return False
        when = parse_time(str(entry.get("occurred_at", "")))
        return (self.since is None or when >= self.since) and when < self.until


def parse_time(text: str) -> datetime:
    """An entry's time ('2026-11-02T09:14:00.000000Z')."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class SelectionFormatError(ValueError):
    """The answer is not a selection stream: names the line and what is wrong."""


@dataclass(slots=True)
class SelectedEntry:
    role: Literal["disclosure", "destruction"]
    index: int
    leaf_hash: bytes
    entry: dict[str, Any]


@dataclass(slots=True)
class SelectionHeader:
    tree_size: int
    root: bytes
    head: dict[str, Any]
    checkpoint: str | None
    origin: str
    public_keys: dict[str, str]
    raw: dict[str, Any] = field(default_factory=dict)


def header_line(
    *,
    tree_size: int,
    root: bytes,
    head: dict[str, Any],
    checkpoint: str | None,
    origin: str,
    public_keys: dict[str, str],
) -> str:
    return (
        json.dumps(
            {
                "type": "log",
                "format": FORMAT,
                "tree_size": tree_size,
                "root": root.hex(),
                "head": head,
                "checkpoint": checkpoint,
                "origin": origin,
                "public_keys": public_keys,
            }
        )
        + "\n"
    )


def entry_line(role: str, index: int, leaf_hash: bytes, entry: dict[str, Any]) -> str:
    return (
        json.dumps(
            {"type": "entry", "role": role, "index": index, "leaf_hash": leaf_hash.hex(), "entry": entry},
            ensure_ascii=False,
        )
        + "\n"
    )


def proof_lines(hashes: list[bytes]) -> Iterator[str]:
    for start in range(0, len(hashes), PROOF_CHUNK):
        yield json.dumps({"type": "proof", "hashes": [h.hex() for h in hashes[start : start + PROOF_CHUNK]]}) + "\n"


def end_line(entries: int, proof_hashes: int) -> str:
    return json.dumps({"type": "end", "entries": entries, "proof_hashes": proof_hashes}) + "\n"


def _hash(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise SelectionFormatError(f"{where}: not a hex hash")
    try:
        digest = bytes.fromhex(value)
    except ValueError:
        raise SelectionFormatError(f"{where}: not hexadecimal") from None
    if len(digest) != 32:
        raise SelectionFormatError(f"{where}: not 32 bytes")
    return digest


def parse_header(obj: dict[str, Any], where: str) -> SelectionHeader:
    if obj.get("type") != "log" or obj.get("format") != FORMAT:
        raise SelectionFormatError(f"{where}: not a {FORMAT} header")
    size = obj.get("tree_size")
    head = obj.get("head")
    keys = obj.get("public_keys")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise SelectionFormatError(f"{where}: tree_size is not a non-negative integer")
    if not isinstance(head, dict) or not isinstance(keys, dict):
        raise SelectionFormatError(f"{where}: head and public_keys must be objects")
    checkpoint = obj.get("checkpoint")
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise SelectionFormatError(f"{where}: checkpoint must be a signed note or null")
    return SelectionHeader(
        tree_size=size,
        root=_hash(obj.get("root"), f"{where} root"),
        head=head,
        checkpoint=checkpoint,
        origin=str(obj.get("origin") or ""),
        public_keys={str(k): str(v) for k, v in keys.items()},
        raw=obj,
    )


def parse_entry(obj: dict[str, Any], where: str) -> SelectedEntry:
    role = obj.get("role")
    index = obj.get("index")
    entry = obj.get("entry")
    if role not in ENTRY_ROLES:
        raise SelectionFormatError(f"{where}: role must be one of {', '.join(ENTRY_ROLES)}")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise SelectionFormatError(f"{where}: index is not a non-negative integer")
    if not isinstance(entry, dict):
        raise SelectionFormatError(f"{where}: entry is not an object")
    return SelectedEntry(role, index, _hash(obj.get("leaf_hash"), f"{where} leaf_hash"), entry)


def parse_proof(obj: dict[str, Any], where: str) -> list[bytes]:
    hashes = obj.get("hashes")
    if not isinstance(hashes, list):
        raise SelectionFormatError(f"{where}: hashes is not a list")
    return [_hash(h, f"{where} hash {i}") for i, h in enumerate(hashes)]


def parse_line(line: str | bytes, number: int) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise SelectionFormatError(f"line {number}: not JSON ({exc})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise SelectionFormatError(f"line {number}: not an object with a type")
    return obj
