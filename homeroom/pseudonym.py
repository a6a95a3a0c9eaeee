"""Pseudonymous keys: how Homeroom names a student without carrying the student's ids.

Kafka message keys, cross-service references and audit entries use these keys, never a
raw state or district id. A key is an HMAC-SHA256 of the normalised id under a secret
pseudonymisation key, so it is stable (one student, one key, in every service and every
district) yet cannot be reversed, or confirmed by guessing ids, without that secret.
Each kind of id hashes under its own domain label, so a state id and a local id that
happen to be spelled alike never collide.

Rotating the pseudonymisation key renames every student; treat it as a migration, not
routine hygiene.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import os
import secrets
import stat
import unicodedata
from pathlib import Path

STAFF_KEY_PREFIX = "stf_"  # a staff member's key; students' keys never start with it

KEY_BYTES = 32
MIN_KEY_BYTES = 16  # a configured key shorter than 128 bits is refused

STUDENT_DOMAIN = "homeroom/student/v1"
LOCAL_ID_DOMAIN = "homeroom/local-id/v1"
STAFF_DOMAIN = "homeroom/staff/v1"
STUDENT_PREFIX = "stu_"
LOCAL_ID_PREFIX = "lid_"
_DIGEST_BYTES = 20  # 160 bits: exactly 32 base32 characters, no padding


def normalise_id(raw: str) -> str:
    """The canonical spelling of an id: NFKC, trimmed, upper case.

    SIS exports differ in case, stray spaces and full-width digits; without this one
    student would split into two pseudonyms.
    """
    normal = unicodedata.normalize("NFKC", raw).strip().upper()
    if not normal:
        raise ValueError("an id must not be empty or only whitespace")
    return normal


_BASE32 = b"abcdefghijklmnopqrstuvwxyz234567"
_BASE32_OF_BYTE = bytes(_BASE32[i & 31] for i in range(256))  # bytes.translate's table


def _spread_plan() -> tuple[tuple[int, int, int], ...]:
    """How 160 bits spread into 32 bytes of 5 bits each, in five halvings: a lane of `width`
    bits holding `bits` of them splits into two lanes of half the width, the upper half of the
    bits shifted up by the difference. Each step is (mask of the lower halves, mask of the upper
    halves, shift) over all lanes at once (256 bits, 4 masks of a few words)."""
    steps = []
    width, bits, total = 256, 160, 256
    while width > 8:
        half, kept = width // 2, bits // 2
        low = sum(((1 << kept) - 1) << lane for lane in range(0, total, width))
        high = sum(((1 << bits) - 1) << lane for lane in range(0, total, width)) ^ low
        steps.append((low, high, half - kept))
        width, bits = half, kept
    return tuple(steps)


_SPREAD = _spread_plan()


def base32_160(digest: bytes) -> str:
    """``base64.b32encode(digest).decode().lower()`` for 20 bytes (160 bits, 32 characters, no
    padding), faster than it (docs/benchmarks.md): the digest as one number, its 5-bit groups
    spread one to a byte by five mask-and-shift steps, then one `bytes.translate`."""
    if len(digest) != _DIGEST_BYTES:
        raise ValueError(f"expected {_DIGEST_BYTES} bytes, got {len(digest)}")
    n = int.from_bytes(digest, "big")
    for low, high, shift in _SPREAD:
        n = (n & low) | ((n & high) << shift)
    return n.to_bytes(32, "big").translate(_BASE32_OF_BYTE).decode("ascii")


def _framed(part: str) -> bytes:
    data = part.encode("utf-8")
    return len(data).to_bytes(4, "big") + data


# Domains and district ids are a handful of values hashed again and again.
_framed_often = functools.lru_cache(maxsize=1024)(_framed)


@functools.lru_cache(maxsize=1024)
def _scoped(domain: str, district_id: str) -> bytes:
    """The framed domain and normalised district that start every id hashed in a district."""
    return _framed(domain) + _framed(normalise_id(district_id))


class Pseudonymizer:
    """Keyed, one-way names for students and their district-local ids."""

    __slots__ = ("_key", "_mac")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"pseudonymisation key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}")
        self._key = bytes(key)
        self._mac = hmac.new(self._key, digestmod=hashlib.sha256)  # keyed once; each digest copies it

    def __repr__(self) -> str:
        return "Pseudonymizer(<key hidden>)"  # never print the key into a log

    def student_key(self, state_student_id: str) -> str:
        """The student's pseudonymous key, e.g. ``stu_`` + 32 base32 characters."""
        return STUDENT_PREFIX + self._digest(STUDENT_DOMAIN, normalise_id(state_student_id))

    def local_id_hash(self, district_id: str, local_id: str) -> str:
        """A pseudonym for a district-local student id, scoped to its district.

        The same local id in two districts names two different children, so the
        district is part of the hashed input.
        """
        return LOCAL_ID_PREFIX + self._mac_of(_scoped(LOCAL_ID_DOMAIN, district_id) + _framed(normalise_id(local_id)))

    def staff_key(self, district_id: str, staff_id: str) -> str:
        """A staff member's pseudonymous key (``stf_`` + 32 base32 characters), scoped to the
        district: staff ids are the district's own, with no state-wide id to follow."""
        return STAFF_KEY_PREFIX + self._mac_of(_scoped(STAFF_DOMAIN, district_id) + _framed(normalise_id(staff_id)))

    def enrollment_id(self, district_id: str, student_key: str, school_id: str, entry_date: str) -> str:
        """An opaque, stable id for one enrollment: unlike ``key.school.date`` it does not
        carry the entry date, which an agreement may withhold."""
        return "enr_" + self._digest("homeroom.enrollment.v1", district_id, student_key, school_id, entry_date)

    def _digest(self, domain: str, *parts: str) -> str:
        # Length-prefix every part so ("AB", "C") and ("A", "BC") hash differently. One
        # message and one call into OpenSSL: ingest hashes every record's id.
        return self._mac_of(b"".join([_framed_often(domain), *map(_framed, parts)]))

    def _mac_of(self, message: bytes) -> str:
        mac = self._mac.copy()
        mac.update(message)
        return base32_160(mac.digest()[:_DIGEST_BYTES])


def load_or_create_key(path: Path) -> bytes:
    """The development pseudonymisation key at ``path``, created on first use.

    Used only when no key is configured. The file holds the 32 bytes base64-encoded and
    is created with mode 0600; two processes starting together agree on one key because
    the file appears atomically and only the first writer wins. A file readable by group
    or others is refused rather than trusted.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # fails if another process got there first: its key wins
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(f"{path} is accessible by group or others (mode {stat.filemode(mode)}); chmod 600 it")
    key = base64.b64decode(path.read_bytes().strip(), validate=True)
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} holds {len(key)} key bytes, expected {KEY_BYTES}")
    return key
