"""The export format (JSON Lines) and its reader for the offline verifier (pure: no I/O here).

Line 1 describes the log: ``{"type": "log", "format": "homeroom-audit-export/1", "key_id",
"public_key" (PEM), "public_keys" ({key id: PEM}, the current key and every retired one),
"tree_size", "exported_at_ms"}``; each head and receipt names the key id that signed it.
Then one ``{"type": "head", ...}`` line per signed tree head (``SignedTreeHead.to_dict``),
then one line per entry in sequence order:
``{"type": "entry", "index", "entry": {...}, "leaf_hash", "receipt": {...}}``.

``entry`` is the very object that was hashed: the verifier re-encodes it with
``canonical.canonical_json`` and gets the leaf's bytes back, so what a reader of the export
sees is exactly what the signatures cover. Nothing in an export is a student's PII value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from homeroom.tlog.canonical import canonical_json
from homeroom.tlog.signing import EntryReceipt, Keyring, SignedTreeHead
from homeroom.tlog.verify import ExportedEntry

FORMAT = "homeroom-audit-export/1"


class ExportFormatError(ValueError):
    """The export cannot be read at all (not a tampering finding): names the line."""


def header_line(keys: Keyring, tree_size: int, exported_at_ms: int) -> str:
    pems = keys.pems()
    current = keys.ids()[0]
    header = {
        "type": "log",
        "format": FORMAT,
        "key_id": current,
        "public_key": pems[current],
        "public_keys": pems,
        "tree_size": tree_size,
        "exported_at_ms": exported_at_ms,
    }
    return json.dumps(header) + "\n"


def head_line(head: SignedTreeHead) -> str:
    return json.dumps({"type": "head", **head.to_dict()}) + "\n"


def entry_line(index: int, entry_object: dict[str, Any], leaf_hash: bytes, receipt: EntryReceipt | None) -> str:
    line = {
        "type": "entry",
        "index": index,
        "entry": entry_object,
        "leaf_hash": leaf_hash.hex(),
    }
    if receipt is not None:  # entries appended before issue 19
        line["receipt"] = receipt.to_dict()
    return json.dumps(line, ensure_ascii=False) + "\n"


@dataclass(slots=True)
class ExportHeader:
    keys: Keyring
    key_id: str
    tree_size: int
    heads: list[SignedTreeHead]


def _parse(number: int, text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportFormatError(f"line {number}: not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise ExportFormatError(f"line {number}: expected a JSON object")
    return obj


def read_header(lines: Iterable[str]) -> ExportHeader:
    """First pass: the log line and every signed head."""
    header: ExportHeader | None = None
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        obj = _parse(number, text)
        kind = obj.get("type")
        if number == 1:
            if kind != "log" or obj.get("format") != FORMAT:
                raise ExportFormatError(f"line 1: not a {FORMAT} export")
            try:
                # Exports made before key rotation carry only "public_key".
                named = obj.get("public_keys") or {"": obj["public_key"]}
                if not isinstance(named, dict):
                    raise ValueError("public_keys is not an object")
                keys = Keyring.from_pems(str(pem).encode() for pem in named.values())
            except (KeyError, ValueError) as exc:
                raise ExportFormatError(f"line 1: unusable public key ({exc})") from None
            header = ExportHeader(keys, str(obj.get("key_id", "")), int(obj.get("tree_size", 0)), [])
        elif kind == "head":
            assert header is not None
            try:
                header.heads.append(SignedTreeHead.from_dict(obj))
            except ValueError as exc:
                raise ExportFormatError(f"line {number}: bad tree head ({exc})") from None
        elif kind != "entry":
            raise ExportFormatError(f"line {number}: unknown line type {kind!r}")
    if header is None:
        raise ExportFormatError("the export is empty")
    return header


def read_entries(lines: Iterable[str]) -> Iterator[ExportedEntry]:
    """Second pass: each entry as the verifier takes it, bytes re-encoded from its object."""
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        obj = _parse(number, text)
        if obj.get("type") != "entry":
            continue
        index, entry = obj.get("index"), obj.get("entry")
        if isinstance(index, bool) or not isinstance(index, int) or not isinstance(entry, dict):
            raise ExportFormatError(f"line {number}: an entry line needs an integer index and an entry object")
        try:
            stored = bytes.fromhex(str(obj.get("leaf_hash", "")))
            raw_receipt = obj.get("receipt")
            receipt = EntryReceipt.from_dict(raw_receipt) if isinstance(raw_receipt, dict) else None
            data = canonical_json(entry)
        except ValueError as exc:
            raise ExportFormatError(f"line {number}: {exc}") from None
        yield ExportedEntry(index, data, stored, receipt)
