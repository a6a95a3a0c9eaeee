"""What the audit log signs, and the key it signs with (Ed25519).

Two statements are signed:

* a **tree head** (size, root, time): "the log held exactly these ``size`` entries, with
  this Merkle root, at this time". Published at a regular interval and on demand; any
  two heads can be checked against each other with a consistency proof.
* an **entry receipt** (index, leaf hash, time), the way Sigstore Rekor's
  SignedEntryTimestamp is: "this entry is at this index". Given on append until issue 19
  and still verified on those entries; appends no longer sign one (an Ed25519 signature
  per entry was most of an append's cost): an entry's receipt is now its index, a signed
  head covering it and the inclusion proof to that head. What that gives up: an operator
  with full database rights who rewrites an entry together with its stored leaf hash is
  caught by every head covering it, but located only between two heads.

Each statement is signed over a fixed-layout encoding: a label naming what it is
(NUL-terminated, so no label is a prefix of another) followed by fixed-width big-endian
fields. One layout, one meaning: a head can never be read as a receipt, nor one
field's bytes as another's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from homeroom.checkpoint import NoteSigner
from homeroom.tlog.merkle import HASH_SIZE

HEAD_LABEL = b"homeroom-audit-tree-head-v1\x00"
RECEIPT_LABEL = b"homeroom-audit-entry-receipt-v1\x00"
SIGNATURE_SIZE = 64
_U64 = struct.Struct(">Q")
_MAX_U64 = 2**64 - 1


def _check_u64(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_U64:
        raise ValueError(f"{name} must be an integer in 0..2**64-1, got {value!r}")


def _check_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ValueError(f"{name} must be {HASH_SIZE} bytes")


@dataclass(frozen=True, slots=True)
class TreeHead:
    size: int
    root: bytes
    timestamp_ms: int  # milliseconds since the Unix epoch, UTC

    def __post_init__(self) -> None:
        _check_u64("size", self.size)
        _check_hash("root", self.root)
        _check_u64("timestamp_ms", self.timestamp_ms)

    def signing_bytes(self) -> bytes:
        """label || size (8) || root (32) || timestamp_ms (8)."""
        return HEAD_LABEL + _U64.pack(self.size) + self.root + _U64.pack(self.timestamp_ms)


def receipt_signing_bytes(index: int, leaf_hash: bytes, timestamp_ms: int) -> bytes:
    """label || index (8) || leaf_hash (32) || timestamp_ms (8)."""
    _check_u64("index", index)
    _check_hash("leaf_hash", leaf_hash)
    _check_u64("timestamp_ms", timestamp_ms)
    return RECEIPT_LABEL + _U64.pack(index) + leaf_hash + _U64.pack(timestamp_ms)


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    head: TreeHead
    key_id: str  # which key signed; see ``key_id``
    signature: bytes

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (hashes and signature in hex) for exports and the API."""
        return {
            "size": self.head.size,
            "root": self.head.root.hex(),
            "timestamp_ms": self.head.timestamp_ms,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SignedTreeHead:
        head = TreeHead(_int(raw, "size"), _hex(raw, "root"), _int(raw, "timestamp_ms"))
        return cls(head, _str(raw, "key_id"), _hex(raw, "signature"))


@dataclass(frozen=True, slots=True)
class EntryReceipt:
    index: int
    leaf_hash: bytes
    timestamp_ms: int
    key_id: str
    signature: bytes

    def signing_bytes(self) -> bytes:
        return receipt_signing_bytes(self.index, self.leaf_hash, self.timestamp_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "leaf_hash": self.leaf_hash.hex(),
            "timestamp_ms": self.timestamp_ms,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EntryReceipt:
        index, leaf, timestamp_ms = _int(raw, "index"), _hex(raw, "leaf_hash"), _int(raw, "timestamp_ms")
        return cls(index, leaf, timestamp_ms, _str(raw, "key_id"), _hex(raw, "signature"))


# Readers of exported JSON: the input is whatever the file says, so each field is checked
# and a bad one named, instead of failing later with an unrelated TypeError.
def _int(raw: dict[str, Any], name: str) -> int:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    return value


def _str(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {value!r}")
    return value


def _hex(raw: dict[str, Any], name: str) -> bytes:
    value = _str(raw, name)
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{name}: not hexadecimal") from None


# --- keys -----------------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 8 bytes of SHA-256 over the raw 32-byte public key, in hex."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


class Keyring:
    """The public keys a log's statements may be signed with, by key id: the current
    signing key's and every retired one's. A statement names its key id; it is checked
    against that key only, and a key id outside the ring fails it (whoever made it, the
    log never held that key). Rotation adds keys; nothing old stops verifying."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys = {key_id(k): k for k in keys}
        if not self._keys:
            raise ValueError("a keyring needs at least one key")

    @classmethod
    def of(cls, keys: Keyring | Ed25519PublicKey) -> Keyring:
        return keys if isinstance(keys, Keyring) else cls([keys])

    @classmethod
    def from_pems(cls, pems: Iterable[bytes]) -> Keyring:
        return cls(load_public_key(pem) for pem in pems)

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    def ids(self) -> list[str]:
        return list(self._keys)

    def pems(self) -> dict[str, str]:
        return {
            kid: k.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
            for kid, k in self._keys.items()
        }


def verify_head(signed: SignedTreeHead, keys: Keyring | Ed25519PublicKey) -> bool:
    """Whether ``signed`` carries a valid signature over its head by the ring's key it names."""
    return _verify(Keyring.of(keys).get(signed.key_id), signed.signature, signed.head.signing_bytes())


def verify_receipt(receipt: EntryReceipt, keys: Keyring | Ed25519PublicKey) -> bool:
    """Whether ``receipt`` carries a valid signature by the ring's key it names; False if malformed."""
    try:
        message = receipt.signing_bytes()
    except ValueError:
        return False
    return _verify(Keyring.of(keys).get(receipt.key_id), receipt.signature, message)


def _verify(public_key: Ed25519PublicKey | None, signature: bytes, message: bytes) -> bool:
    if public_key is None or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


class LogSigner:
    """Signs tree heads and receipts with the log's Ed25519 key. Pure: the caller supplies times."""

    __slots__ = ("_private_key", "key_id", "public_key")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    def __repr__(self) -> str:
        return f"LogSigner(key_id={self.key_id!r})"  # never the key itself

    def public_key_pem(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign_head(self, head: TreeHead) -> SignedTreeHead:
        return SignedTreeHead(head, self.key_id, self._private_key.sign(head.signing_bytes()))

    def note_signer(self, origin: str) -> NoteSigner:
        """The same key signing c2sp.org signed notes (checkpoints) as ``origin``."""
        return NoteSigner(origin, self._private_key)

    def sign_receipt(self, index: int, leaf_hash: bytes, timestamp_ms: int) -> EntryReceipt:
        signature = self._private_key.sign(receipt_signing_bytes(index, leaf_hash, timestamp_ms))
        return EntryReceipt(index, leaf_hash, timestamp_ms, self.key_id, signature)


def load_keyring(signer: LogSigner, retired_dir: Path) -> Keyring:
    """The signer's public key first, then every retired key (``*.pem``) in ``retired_dir``."""
    retired = sorted(retired_dir.glob("*.pem")) if retired_dir.is_dir() else []
    return Keyring([signer.public_key, *(load_public_key(p.read_bytes()) for p in retired)])


def _new_key_file(path: Path) -> Path:
    """A new Ed25519 key (PKCS#8 PEM, mode 0600, on disk) in a temporary file beside ``path``."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _fsync_dir(directory: Path) -> None:
    """Make a rename or link in ``directory`` durable."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def rotate_signing_key(path: Path, retired_dir: Path) -> tuple[str, str]:
    """Retire the key at ``path`` (its public half kept in ``retired_dir`` as ``<key id>.pem``,
    so what it signed still verifies) and put a new key in its place. Returns (old, new) key ids.
    The service signs with the new key from its next start."""
    old = load_or_create_signer(path)
    retired_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (retired_dir / f"{old.key_id}.pem").write_bytes(old.public_key_pem())
    tmp = _new_key_file(path)
    try:
        os.replace(tmp, path)  # atomic: a starting service reads the old key or the new, never half of one
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return old.key_id, load_or_create_signer(path).key_id


def load_or_create_signer(path: Path) -> LogSigner:
    """The signer whose key is in the PKCS#8 PEM file at ``path``, created (mode 0600) if absent.

    The file is written to a temporary name and hard-linked into place, so a concurrent
    starter never reads a half-written key and two starters never end up with two keys:
    the link fails for the loser, which then loads the winner's. A key file readable by
    group or others is refused: whoever can read it can forge the log's history.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = _new_key_file(path)
        try:
            with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(f"{path} is accessible by group or others; chmod 600 it")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return LogSigner(key)
