"""C2SP signed notes, checkpoints and witness cosignatures (Ed25519), pure: no I/O.

* c2sp.org/signed-note: a text ending in a newline, a blank line, then signature lines
  ``— <key name> base64(key ID (4) || signature)``; key ID = SHA-256(name || 0x0A ||
  type || public key)[:4], type 0x01 for Ed25519 signatures over the text.
* c2sp.org/tlog-checkpoint: the text is ``<origin>\\n<size>\\n<base64 root>\\n``.
* c2sp.org/tlog-cosignature: a witness's type 0x04 signature line carries
  ``timestamp (u64, big-endian) || Ed25519 signature`` over
  ``cosignature/v1\\ntime <timestamp>\\n`` followed by the checkpoint text.

No maintained Python library implements these formats (the reference implementations are
Go's golang.org/x/mod/sumdb/note and transparency-dev), so they are written here against
the specifications, and tested against their published examples' structure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
EM_DASH = "\u2014"
MAX_SIGNATURES = 32


class NoteError(ValueError):
    """A note, checkpoint or cosignature that is malformed or does not verify."""


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, signature_type: int, public_key: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + _raw(public_key)).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"key name {name!r} is empty or holds a space or '+'")


@dataclass(frozen=True, slots=True)
class Signature:
    name: str
    key_id: bytes
    body: bytes  # what follows the key ID: the signature (and, for cosignatures, the timestamp first)

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {base64.b64encode(self.key_id + self.body).decode()}\n"


@dataclass(frozen=True, slots=True)
class Note:
    text: str  # ends in a newline
    signatures: tuple[Signature, ...]

    def render(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    @classmethod
    def parse(cls, raw: str) -> Note:
        if any(ord(c) < 0x20 and c != "\n" for c in raw):
            raise NoteError("a note holds no control characters but newlines")
        cut = raw.rfind("\n\n")
        if cut < 0 or not raw.endswith("\n"):
            raise NoteError("a note is text, a blank line, then signature lines, each ending in a newline")
        text, lines = raw[: cut + 1], raw[cut + 2 :].splitlines()
        if not lines or len(lines) > MAX_SIGNATURES:
            raise NoteError(f"a note has 1 to {MAX_SIGNATURES} signatures")
        signatures = []
        for line in lines:
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] != EM_DASH:
                raise NoteError(f"not a signature line: {line[:80]!r}")
            _check_name(parts[1])
            try:
                blob = base64.b64decode(parts[2], validate=True)
            except (binascii.Error, ValueError):
                raise NoteError(f"signature of {parts[1]!r} is not base64") from None
            if len(blob) < 5:
                raise NoteError(f"signature of {parts[1]!r} is too short")
            signatures.append(Signature(parts[1], blob[:4], blob[4:]))
        return cls(text, tuple(signatures))

    def with_signatures(self, *more: Signature) -> Note:
        known = set(self.signatures)
        return Note(self.text, self.signatures + tuple(s for s in more if s not in known))


# --- checkpoints ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or not lines[0]:
            raise NoteError("a checkpoint is origin, size and root hash lines")
        size_line = lines[1]
        if not size_line.isdigit() or (size_line != "0" and size_line.startswith("0")) or not size_line.isascii():
            raise NoteError(f"checkpoint size {size_line[:30]!r} is not a decimal without leading zeroes")
        try:
            root = base64.b64decode(lines[2], validate=True)
        except (binascii.Error, ValueError):
            raise NoteError("checkpoint root is not base64") from None
        if len(root) != 32:
            raise NoteError("checkpoint root is not 32 bytes")
        return cls(lines[0], int(size_line), root)


class _NamedKey:
    """An Ed25519 private key that signs as ``name``; its key id also commits to the
    subclass's ``signature_type``."""

    signature_type: ClassVar[int]

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(name, self.signature_type, self.public_key)


class NoteSigner(_NamedKey):
    """Signs notes as ``name`` with an Ed25519 key (signature type 0x01): the log's signature."""

    signature_type = ED25519

    def sign(self, text: str) -> Signature:
        return Signature(self.name, self.key_id, self._key.sign(text.encode()))

    def checkpoint(self, checkpoint: Checkpoint) -> Note:
        text = checkpoint.text()
        return Note(text, (self.sign(text),))


class Cosigner(_NamedKey):
    """A witness's key (signature type 0x04, timestamped cosignature/v1)."""

    signature_type = COSIGNATURE_V1

    def cosign(self, checkpoint_text: str, timestamp: int) -> Signature:
        signed = timestamp.to_bytes(8, "big") + self._key.sign(cosigned_message(checkpoint_text, timestamp))
        return Signature(self.name, self.key_id, signed)


def cosigned_message(checkpoint_text: str, timestamp: int) -> bytes:
    if not 0 <= timestamp <= 2**63 - 1:
        raise NoteError("cosignature timestamp out of range")
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


@dataclass(frozen=True, slots=True)
class Verifier:
    """A trusted key: (name, type, public key). Signatures by others are ignored."""

    name: str
    signature_type: int
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.signature_type, self.public_key)

    def verifies(self, text: str, signature: Signature) -> int | None:
        """None if ``signature`` is not this key's or does not verify; else its time (0 for a
        plain signature, the cosignature's timestamp for a cosignature)."""
        if signature.name != self.name or signature.key_id != self.key_id:
            return None
        try:
            if self.signature_type == ED25519:
                self.public_key.verify(signature.body, text.encode())
                return 0
            if self.signature_type == COSIGNATURE_V1 and len(signature.body) == 8 + 64:
                timestamp = int.from_bytes(signature.body[:8], "big")
                self.public_key.verify(signature.body[8:], cosigned_message(text, timestamp))
                return timestamp
        except (InvalidSignature, NoteError):
            return None
        return None


def verify_note(note: Note, verifiers: list[Verifier]) -> dict[str, int]:
    """The trusted keys whose signatures verify (by name, with their time). A signature by a
    trusted key that fails rejects the note (NoteError); none verifying rejects it too."""
    verified: dict[str, int] = {}
    for signature in note.signatures:
        for verifier in verifiers:
            if signature.name == verifier.name and signature.key_id == verifier.key_id:
                when = verifier.verifies(note.text, signature)
                if when is None:
                    raise NoteError(f"the signature of {signature.name} does not verify")
                verified[signature.name] = when
    if not verified:
        raise NoteError("no signature by a trusted key")
    return verified


def public_key_from_pem(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise NoteError("not an Ed25519 public key")
    return key
