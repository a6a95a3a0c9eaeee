"""Envelope encryption of student data, and crypto-shredding.

Every PII value is sealed with AES-256-GCM under a data key (DEK) that belongs to one
subject: a student in a district (scope ``student``, subject = the pseudonymous student
key) or a vendor agreement (scope ``agreement``, subject = the agreement id). Each DEK is
stored wrapped (encrypted) by its district's key-encryption key (KEK) from a keyring.

Values are sealed *before* they reach Kafka, so destroying keys destroys data even in an
immutable log: drop a subject's DEK and every value sealed for that subject, in every
topic, backup and replica, becomes noise; drop a district's KEKs and all of that
district's DEKs become useless at once.

A sealed value is ``0x01 | 12-byte random nonce | ciphertext + 16-byte tag``. Its
associated data is ``homeroom/v1|{district}|{scope}:{subject}|{element}``, so a value
copied into another element, student or district fails to open.

Readers tell the two failures apart: ``KeyDestroyedError`` means the data was shredded
on purpose (skip it); a plain ``DecryptionError`` means the value is corrupt, tampered
with or filed under the wrong subject (raise the alarm).

A destroyed subject stays destroyed: its data-key row is kept as a tombstone and later
seals for it raise ``KeyDestroyedError``. Were a fresh key minted instead, old values
would fail against the new key and read as tampering rather than shredding.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias, get_args

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from homeroom.storage import DATA_KEYS, apply_kernel_migrations

Scope: TypeAlias = Literal["student", "agreement"]
SCOPES: tuple[str, ...] = get_args(Scope)

KEY_BYTES = 32  # AES-256, for both KEKs and DEKs
NONCE_BYTES = 12
TAG_BYTES = 16
FORMAT_V1 = b"\x01"
_OVERHEAD = len(FORMAT_V1) + NONCE_BYTES + TAG_BYTES

DEFAULT_CACHE_SIZE = 100_000
DEFAULT_CACHE_TTL_SECONDS = 60.0


class DecryptionError(Exception):
    """The value cannot be opened: corrupt, tampered with, or filed under the wrong subject."""


class KeyDestroyedError(DecryptionError):
    """The subject's data key or the district's key was destroyed: the data is shredded."""


class KeyNotFoundError(LookupError):
    """The keyring has no such key and never had it (a configuration fault, not shredding)."""


# --------------------------------------------------------------------------------------
# Keyring: district key-encryption keys


class Keyring(Protocol):
    """District key-encryption keys (KEKs): 32 bytes each, numbered from 1 per district.

    ``FileKeyring`` serves development and tests. Production plugs an adapter for a KMS
    or Vault behind this same Protocol, so that the KEKs live outside the database that
    holds the wrapped data keys.
    """

    def kek(self, district_id: str, version: int | None = None) -> tuple[int, bytes]:
        """``(version, key)``; ``version=None`` is the district's current key.

        Asking for the current key of a district that has none creates version 1 when
        the keyring allows creation (development); otherwise ``KeyNotFoundError``. A
        destroyed version, or any version of a destroyed district, raises
        ``KeyDestroyedError``.
        """
        ...

    def rotate(self, district_id: str) -> int:
        """Make a new current KEK for the district; older versions stay readable."""
        ...

    def destroy_district(self, district_id: str) -> None:
        """Destroy every KEK the district has; its versions are never reissued."""
        ...


class FileKeyring:
    """KEKs in a JSON file of base64 keys, for development and tests.

    The file is replaced atomically (write, fsync, rename) with mode 0600, and changes
    take a ``flock`` on ``<path>.lock``, so several local processes can share it. Each
    read checks whether the file changed, so a rotation or destruction made by another
    process is seen at its next key lookup.

    Destruction here removes the key from the current file only: copies may linger in
    old disk blocks or backups. That is acceptable for development; production needs a
    KMS or Vault whose destruction is final.
    """

    def __init__(self, path: Path, *, allow_create: bool = True) -> None:
        self.path = path
        self.allow_create = allow_create
        self._lock_path = path.with_name(path.name + ".lock")
        self._thread_lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._districts: dict[str, _DistrictKeys] = {}

    def __repr__(self) -> str:
        return f"FileKeyring({str(self.path)!r})"

    def kek(self, district_id: str, version: int | None = None) -> tuple[int, bytes]:
        _check_part("district_id", district_id)
        with self._thread_lock:
            self._refresh()
            found = self._find(district_id, version)
            if found is not None:
                return found
        if version is not None or not self.allow_create:
            return self._missing(district_id, version)
        with self._mutation() as districts:
            entry = districts.setdefault(district_id, _DistrictKeys())
            if entry.current == 0:
                entry.add(secrets.token_bytes(KEY_BYTES))
            return entry.current, entry.keys[entry.current]

    def rotate(self, district_id: str) -> int:
        _check_part("district_id", district_id)
        with self._mutation() as districts:
            entry = districts.setdefault(district_id, _DistrictKeys())
            entry.add(secrets.token_bytes(KEY_BYTES))
            return entry.current

    def destroy_district(self, district_id: str) -> None:
        _check_part("district_id", district_id)
        with self._mutation() as districts:
            entry = districts.setdefault(district_id, _DistrictKeys())
            entry.destroyed_through = max(entry.destroyed_through, entry.newest)
            entry.keys.clear()
            entry.current = 0

    def _find(self, district_id: str, version: int | None) -> tuple[int, bytes] | None:
        entry = self._districts.get(district_id)
        if entry is None:
            return None
        wanted = entry.current if version is None else version
        key = entry.keys.get(wanted)
        return None if key is None else (wanted, key)

    def _missing(self, district_id: str, version: int | None) -> tuple[int, bytes]:
        entry = self._districts.get(district_id)
        if entry is not None and entry.destroyed_through and (version is None or version <= entry.destroyed_through):
            raise KeyDestroyedError(f"district {district_id!r}: key-encryption key destroyed")
        what = "no current key" if version is None else f"no key version {version}"
        raise KeyNotFoundError(f"district {district_id!r}: {what} in {self.path}")

    def _refresh(self) -> None:
        """Reload the file if another process (or this one) replaced it since last read."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._districts = None, {}
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(f"{self.path} is accessible by group or others; chmod 600 it")
        document = json.loads(self.path.read_bytes())
        if document.get("format") != 1:
            raise ValueError(f"{self.path}: unknown keyring format {document.get('format')!r}")
        self._districts = {d: _DistrictKeys.from_json(v) for d, v in document["districts"].items()}
        self._stamp = stamp

    @contextlib.contextmanager
    def _mutation(self) -> Iterator[dict[str, _DistrictKeys]]:
        """Read-modify-write under a process lock and a file lock; written atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._thread_lock:
            lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                self._refresh()
                yield self._districts
                self._write()
            finally:
                os.close(lock_fd)  # closing releases the flock

    def _write(self) -> None:
        document = {"format": 1, "districts": {d: e.to_json() for d, e in sorted(self._districts.items())}}
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(document, out, indent=2)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
        self._stamp = None  # next read reloads what was written


@dataclass(slots=True)
class _DistrictKeys:
    current: int = 0  # 0: no live key
    keys: dict[int, bytes] = field(default_factory=dict)
    destroyed_through: int = 0  # versions up to here are gone for good and never reissued

    @property
    def newest(self) -> int:
        return max([self.destroyed_through, *self.keys])

    def add(self, key: bytes) -> None:
        self.current = self.newest + 1
        self.keys[self.current] = key

    def to_json(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "keys": {str(v): base64.b64encode(k).decode("ascii") for v, k in sorted(self.keys.items())},
            "destroyed_through": self.destroyed_through,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> _DistrictKeys:
        keys = {int(v): base64.b64decode(k, validate=True) for v, k in raw["keys"].items()}
        if any(len(k) != KEY_BYTES for k in keys.values()):
            raise ValueError("keyring holds a key that is not 32 bytes")
        return cls(int(raw["current"]), keys, int(raw["destroyed_through"]))


# --------------------------------------------------------------------------------------
# Data-key store: wrapped DEKs per (district, scope, subject)


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key encrypted under the district KEK of ``kek_version``."""

    kek_version: int
    wrapped: bytes


class DataKeyStore(Protocol):
    """Wrapped data keys, one per (district, scope, subject).

    A destroyed key leaves a tombstone: ``get`` and ``put_if_absent`` raise
    ``KeyDestroyedError`` for it, so a shredded subject is never silently re-keyed.
    """

    async def get(self, district_id: str, scope: Scope, subject: str) -> WrappedKey | None: ...

    async def get_many(self, district_id: str, scope: Scope, subjects: Sequence[str]) -> dict[str, WrappedKey]:
        """The live keys of those subjects that have one (none, and tombstones, left out)."""
        ...

    async def put_if_absent(self, district_id: str, scope: Scope, subject: str, key: WrappedKey) -> WrappedKey:
        """Store ``key`` unless the subject already has one; return the key that is stored."""
        ...

    async def destroy(self, district_id: str, scope: Scope, subject: str) -> int:
        """Tombstone the subject's key (even if it had none yet); 1 if a live key was destroyed."""
        ...

    async def destroy_district(self, district_id: str) -> int:
        """Tombstone every live key in the district; the number destroyed."""
        ...

    async def rewrap(self, district_id: str, scope: Scope, subject: str, old: WrappedKey, new: WrappedKey) -> bool:
        """Replace the subject's wrapped key `old` by `new` (the same data key under another KEK
        version); False when it is no longer `old` (rewrapped or destroyed meanwhile)."""
        ...


async def ensure_schema(pool: asyncpg.Pool) -> None:
    """Apply the keys database's numbered migrations (homeroom/migrations/data_keys; idempotent).

    Several services share the keys database and start together; CREATE TABLE IF NOT
    EXISTS is not safe against a concurrent twin, so creation is serialised by a lock."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('homeroom.data_keys.schema'))")
        await apply_kernel_migrations(conn, (DATA_KEYS,))


class PostgresDataKeyStore:
    """``DataKeyStore`` over the ``data_keys`` table (homeroom/migrations/data_keys).

    A tombstone nulls the wrapped key in place. PostgreSQL keeps the old row version
    until VACUUM, and WAL archives and backups keep it longer; that copy is useless
    without the district KEK, which is why district destruction goes to the keyring.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, district_id: str, scope: Scope, subject: str) -> WrappedKey | None:
        row = await self._pool.fetchrow(
            "SELECT kek_version, wrapped FROM data_keys WHERE district_id = $1 AND scope = $2 AND subject = $3",
            district_id,
            scope,
            subject,
        )
        return _wrapped_or_raise(row, district_id, scope, subject)

    async def get_many(self, district_id: str, scope: Scope, subjects: Sequence[str]) -> dict[str, WrappedKey]:
        rows = await self._pool.fetch(
            """SELECT subject, kek_version, wrapped FROM data_keys
               WHERE district_id = $1 AND scope = $2 AND subject = ANY($3::text[]) AND wrapped IS NOT NULL""",
            district_id,
            scope,
            list(subjects),
        )
        return {r["subject"]: WrappedKey(r["kek_version"], bytes(r["wrapped"])) for r in rows}

    async def put_if_absent(self, district_id: str, scope: Scope, subject: str, key: WrappedKey) -> WrappedKey:
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO data_keys (district_id, scope, subject, kek_version, wrapped)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                district_id,
                scope,
                subject,
                key.kek_version,
                key.wrapped,
            )
            # Re-read: when another process won the race, its key is the one to use.
            row = await conn.fetchrow(
                "SELECT kek_version, wrapped FROM data_keys WHERE district_id = $1 AND scope = $2 AND subject = $3",
                district_id,
                scope,
                subject,
            )
        stored = _wrapped_or_raise(row, district_id, scope, subject)
        if stored is None:  # only if someone deleted the row between our two statements
            raise KeyDestroyedError(f"{district_id}/{scope}:{subject}: data key removed while being created")
        return stored

    async def destroy(self, district_id: str, scope: Scope, subject: str) -> int:
        async with self._pool.acquire() as conn:
            while True:
                updated = await conn.execute(
                    "UPDATE data_keys SET kek_version = NULL, wrapped = NULL, destroyed_at = now()"
                    " WHERE district_id = $1 AND scope = $2 AND subject = $3 AND destroyed_at IS NULL",
                    district_id,
                    scope,
                    subject,
                )
                if updated == "UPDATE 1":
                    return 1
                # No live key: leave a tombstone so a seal racing with us cannot create one.
                inserted = await conn.execute(
                    "INSERT INTO data_keys (district_id, scope, subject, destroyed_at)"
                    " VALUES ($1, $2, $3, now()) ON CONFLICT DO NOTHING",
                    district_id,
                    scope,
                    subject,
                )
                if inserted == "INSERT 0 1":
                    return 0
                tombstoned = await conn.fetchval(
                    "SELECT destroyed_at IS NOT NULL FROM data_keys"
                    " WHERE district_id = $1 AND scope = $2 AND subject = $3",
                    district_id,
                    scope,
                    subject,
                )
                if tombstoned:
                    return 0
                # A live key was inserted between our UPDATE and INSERT: destroy it too.

    async def rewrap(self, district_id: str, scope: Scope, subject: str, old: WrappedKey, new: WrappedKey) -> bool:
        status = await self._pool.execute(
            "UPDATE data_keys SET kek_version = $6, wrapped = $7"
            " WHERE district_id = $1 AND scope = $2 AND subject = $3 AND kek_version = $4 AND wrapped = $5"
            " AND destroyed_at IS NULL",
            district_id,
            scope,
            subject,
            old.kek_version,
            old.wrapped,
            new.kek_version,
            new.wrapped,
        )
        return bool(status == "UPDATE 1")

    async def destroy_district(self, district_id: str) -> int:
        status = await self._pool.execute(
            "UPDATE data_keys SET kek_version = NULL, wrapped = NULL, destroyed_at = now()"
            " WHERE district_id = $1 AND destroyed_at IS NULL",
            district_id,
        )
        return int(status.split()[-1])


def _wrapped_or_raise(row: asyncpg.Record | None, district_id: str, scope: str, subject: str) -> WrappedKey | None:
    if row is None:
        return None
    if row["wrapped"] is None:
        raise KeyDestroyedError(f"{district_id}/{scope}:{subject}: data key destroyed")
    return WrappedKey(row["kek_version"], bytes(row["wrapped"]))


# --------------------------------------------------------------------------------------
# Envelope cipher


class EnvelopeCipher:
    """Seals and opens values with per-subject data keys; shreds by destroying keys.

    Unwrapped data keys are cached in process (LRU, ``cache_size`` entries, each kept
    at most ``cache_ttl`` seconds from when it was loaded), so repeat seals for a
    subject cost one AES-GCM operation. Destruction through this object evicts at once;
    other processes see it within ``cache_ttl`` seconds, when their cached key expires.
    """

    def __init__(
        self,
        keyring: Keyring,
        store: DataKeyStore,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        cache_ttl: float = DEFAULT_CACHE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keyring = keyring
        self._store = store
        self._cache: OrderedDict[tuple[str, str, str], tuple[AESGCM, float]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_ttl = cache_ttl
        self._clock = clock
        # Bumped by every destruction, so a key loaded while one ran is not cached.
        self._destructions = 0

    async def seal(
        self, district_id: str, subject: str, element: str, plaintext: str | bytes, scope: Scope = "student"
    ) -> bytes:
        """Encrypt one value of ``element`` for the subject, creating its data key if new."""
        sealed = await self.seal_many(district_id, subject, {element: plaintext}, scope=scope)
        return sealed[element]

    async def seal_many(
        self, district_id: str, subject: str, values: Mapping[str, str | bytes], scope: Scope = "student"
    ) -> dict[str, bytes]:
        """Encrypt several elements of one subject with a single key lookup."""
        aead = await self._data_key(district_id, scope, subject, create=True)
        prefix = _aad_prefix(district_id, scope, subject)
        return {element: _seal_value(aead, prefix, element, value) for element, value in values.items()}

    async def open(
        self, district_id: str, subject: str, element: str, ciphertext: bytes, scope: Scope = "student"
    ) -> bytes:
        """Decrypt a value sealed for exactly this district, subject and element."""
        opened = await self.open_many(district_id, subject, {element: ciphertext}, scope=scope)
        return opened[element]

    async def open_many(
        self, district_id: str, subject: str, ciphertexts: Mapping[str, bytes], scope: Scope = "student"
    ) -> dict[str, bytes]:
        """Decrypt several elements of one subject with a single key lookup."""
        aead = await self._data_key(district_id, scope, subject, create=False)
        prefix = _aad_prefix(district_id, scope, subject)
        opened: dict[str, bytes] = {}
        for element, ciphertext in ciphertexts.items():
            _check_part("element", element)
            if len(ciphertext) < _OVERHEAD or ciphertext[:1] != FORMAT_V1:
                raise DecryptionError(f"{element}: not a sealed value (wrong length or format byte)")
            nonce, body = ciphertext[1 : 1 + NONCE_BYTES], ciphertext[1 + NONCE_BYTES :]
            try:
                opened[element] = aead.decrypt(nonce, body, prefix + element.encode("utf-8"))
            except InvalidTag:
                raise DecryptionError(
                    f"{element} of {district_id}/{scope}:{subject}: authentication failed"
                    " (tampered, or sealed for another element, subject or district)"
                ) from None
        return opened

    async def prefetch(self, district_id: str, subjects: Iterable[str], scope: Scope = "student") -> None:
        """Load the data keys of many subjects into the cache in one store read (a page of a
        roster opened one key read per student: 1,000 round trips). A subject with no key, a
        shredded one or one that fails to unwrap is left to `open_many`, which says why."""
        now = self._clock()
        wanted = []
        for subject in dict.fromkeys(subjects):
            hit = self._cache.get((district_id, scope, subject))
            if hit is None or hit[1] <= now:
                _check_subject(district_id, scope, subject)
                wanted.append(subject)
        if not wanted:
            return
        destructions = self._destructions
        found = await self._store.get_many(district_id, scope, wanted)
        if destructions != self._destructions:
            return  # a destruction ran meanwhile: nothing read before it is cached
        for subject, wrapped in found.items():
            try:
                dek = self._unwrap(district_id, scope, subject, wrapped, _wrap_aad(district_id, scope, subject))
            except (KeyDestroyedError, DecryptionError):
                continue
            cache_key = (district_id, scope, subject)
            self._cache[cache_key] = (AESGCM(dek), now + self._cache_ttl)
            self._cache.move_to_end(cache_key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def destroy_subject(self, district_id: str, subject: str, scope: Scope = "student") -> int:
        """Crypto-shred everything sealed for one subject; 1 if a live key was destroyed."""
        _check_subject(district_id, scope, subject)
        self._destructions += 1  # a key load still in flight will not cache what it read
        destroyed = await self._store.destroy(district_id, scope, subject)
        self._cache.pop((district_id, scope, subject), None)
        return destroyed

    def forget(self, district_id: str, subject: str, scope: Scope = "student") -> None:
        """Drop this process's cached copy of a subject's data key, so the next use reads the
        store: another process may have destroyed it (proofs of destruction check this way)."""
        self._destructions += 1
        self._cache.pop((district_id, scope, subject), None)

    async def destroy_district(self, district_id: str) -> int:
        """Crypto-shred everything sealed for a district; the number of data keys tombstoned.

        The KEKs go first: once they are gone every wrapped key is useless, even if
        tombstoning the data keys then fails.
        """
        _check_part("district_id", district_id)
        self._destructions += 1
        self._keyring.destroy_district(district_id)
        destroyed = await self._store.destroy_district(district_id)
        self._evict_district(district_id)
        return destroyed

    def rotate_district_key(self, district_id: str) -> int:
        """A new current key-encryption key for the district (older versions stay to unwrap old keys)."""
        _check_part("district_id", district_id)
        return self._keyring.rotate(district_id)

    async def rewrap_subject(self, district_id: str, subject: str, scope: Scope = "student") -> int | None:
        """Wrap the subject's data key under the district's current key-encryption key (rotate
        that first: `rotate_district_key`). The data key, and so every sealed value, stays the
        same; a copy of the old wrapped key no longer matches the stored one. Returns the KEK
        version now wrapping it; None when nothing was ever sealed for the subject.
        KeyDestroyedError when it was shredded."""
        _check_subject(district_id, scope, subject)
        aad = _wrap_aad(district_id, scope, subject)
        while True:
            wrapped = await self._store.get(district_id, scope, subject)
            if wrapped is None:
                return None
            version, kek = self._keyring.kek(district_id)
            if wrapped.kek_version == version:
                return version
            dek = self._unwrap(district_id, scope, subject, wrapped, aad)
            nonce = os.urandom(NONCE_BYTES)
            fresh = WrappedKey(version, FORMAT_V1 + nonce + AESGCM(kek).encrypt(nonce, dek, aad(version)))
            if await self._store.rewrap(district_id, scope, subject, wrapped, fresh):
                self._cache.pop((district_id, scope, subject), None)
                return version
            # Another process rewrapped (or shredded) it meanwhile: look again.

    def _evict_district(self, district_id: str) -> None:
        for cached in [k for k in self._cache if k[0] == district_id]:
            del self._cache[cached]

    async def _data_key(self, district_id: str, scope: Scope, subject: str, *, create: bool) -> AESGCM:
        cache_key = (district_id, scope, subject)
        hit = self._cache.get(cache_key)
        now = self._clock()
        if hit is not None and hit[1] > now:
            self._cache.move_to_end(cache_key)
            return hit[0]
        _check_subject(district_id, scope, subject)
        destructions = self._destructions
        aad = _wrap_aad(district_id, scope, subject)
        wrapped = await self._store.get(district_id, scope, subject)
        if wrapped is None:
            if not create:
                raise DecryptionError(f"{district_id}/{scope}:{subject} has no data key: nothing was sealed for it")
            version, kek = self._keyring.kek(district_id)
            dek = AESGCM.generate_key(bit_length=256)
            nonce = os.urandom(NONCE_BYTES)
            fresh = WrappedKey(version, FORMAT_V1 + nonce + AESGCM(kek).encrypt(nonce, dek, aad(version)))
            wrapped = await self._store.put_if_absent(district_id, scope, subject, fresh)
            if wrapped != fresh:
                dek = self._unwrap(district_id, scope, subject, wrapped, aad)  # another process won
        else:
            dek = self._unwrap(district_id, scope, subject, wrapped, aad)
        aead = AESGCM(dek)
        if destructions == self._destructions:
            self._cache[cache_key] = (aead, now + self._cache_ttl)
            self._cache.move_to_end(cache_key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return aead

    def _unwrap(
        self, district_id: str, scope: str, subject: str, wrapped: WrappedKey, aad: Callable[[int], bytes]
    ) -> bytes:
        _, kek = self._keyring.kek(district_id, wrapped.kek_version)  # KeyDestroyedError if shredded
        blob = wrapped.wrapped
        if len(blob) != _OVERHEAD + KEY_BYTES or blob[:1] != FORMAT_V1:
            raise DecryptionError(f"{district_id}/{scope}:{subject}: stored data key is malformed")
        try:
            return AESGCM(kek).decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], aad(wrapped.kek_version))
        except InvalidTag:
            raise DecryptionError(f"{district_id}/{scope}:{subject}: stored data key fails authentication") from None


def _seal_value(aead: AESGCM, prefix: bytes, element: str, value: str | bytes) -> bytes:
    """One element's value sealed under the subject's data key, bound to the element's name."""
    _check_part("element", element)
    data = value.encode("utf-8") if isinstance(value, str) else value
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_V1 + nonce + aead.encrypt(nonce, data, prefix + element.encode("utf-8"))


def _aad_prefix(district_id: str, scope: str, subject: str) -> bytes:
    return f"homeroom/v1|{district_id}|{scope}:{subject}|".encode()


def _wrap_aad(district_id: str, scope: str, subject: str) -> Callable[[int], bytes]:
    # Binds a wrapped key to its row, so a wrapped key copied to another subject fails.
    return lambda version: f"homeroom/dek/v1|{district_id}|{scope}:{subject}|kek:{version}".encode()


def _check_subject(district_id: str, scope: str, subject: str) -> None:
    _check_part("district_id", district_id)
    _check_part("subject", subject)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")


def _check_part(name: str, value: str) -> None:
    # '|' separates the parts of the associated data; allowing it would make two
    # different (subject, element) pairs spell the same associated data.
    if not value or "|" in value:
        raise ValueError(f"{name} must be non-empty and must not contain '|': {value!r}")
