"""Envelope encryption and crypto-shredding, against a real keyring file and PostgreSQL.

The keyring and data-key-store tests are contract suites (one class per port, one
subclass per backend), so a KMS keyring or another store can be held to the same rules.
"""

from __future__ import annotations

import asyncio
import json
import stat
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeroom.catalogue import CATALOGUE
from homeroom.crypto import (
    DecryptionError,
    EnvelopeCipher,
    FileKeyring,
    KeyDestroyedError,
    KeyNotFoundError,
    Keyring,
    PostgresDataKeyStore,
    Scope,
    WrappedKey,
    ensure_schema,
)

DISTRICT = "district-a"
OTHER_DISTRICT = "district-b"
STUDENT = "stu_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
OTHER_STUDENT = "stu_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
AGREEMENT = "agr-2024-0007"


# --------------------------------------------------------------------------------------
# Keyring contract


class KeyringContract:
    """Rules every keyring backend keeps; subclasses provide ``keyring`` (creation allowed)."""

    @pytest.fixture
    def keyring(self) -> Iterator[Keyring]:
        raise NotImplementedError

    def test_first_use_creates_version_one_and_keeps_it(self, keyring: Keyring) -> None:
        version, key = keyring.kek(DISTRICT)
        assert version == 1
        assert len(key) == 32
        assert keyring.kek(DISTRICT) == (1, key)
        assert keyring.kek(DISTRICT, 1) == (1, key)

    def test_districts_have_their_own_keys(self, keyring: Keyring) -> None:
        assert keyring.kek(DISTRICT)[1] != keyring.kek(OTHER_DISTRICT)[1]

    def test_rotation_makes_a_new_current_key_and_keeps_the_old_one(self, keyring: Keyring) -> None:
        _, first = keyring.kek(DISTRICT)
        assert keyring.rotate(DISTRICT) == 2
        version, second = keyring.kek(DISTRICT)
        assert version == 2
        assert second != first
        assert keyring.kek(DISTRICT, 1) == (1, first)

    def test_destroyed_district_keys_are_gone_and_others_untouched(self, keyring: Keyring) -> None:
        keyring.kek(DISTRICT)
        keyring.rotate(DISTRICT)
        other = keyring.kek(OTHER_DISTRICT)
        keyring.destroy_district(DISTRICT)
        for version in (1, 2):
            with pytest.raises(KeyDestroyedError):
                keyring.kek(DISTRICT, version)
        assert keyring.kek(OTHER_DISTRICT) == other

    def test_destroyed_versions_are_never_reissued(self, keyring: Keyring) -> None:
        keyring.kek(DISTRICT)
        keyring.destroy_district(DISTRICT)
        version, _ = keyring.kek(DISTRICT)  # a district that returns gets a fresh key
        assert version == 2
        with pytest.raises(KeyDestroyedError):
            keyring.kek(DISTRICT, 1)

    def test_a_version_that_never_existed_is_not_reported_as_destroyed(self, keyring: Keyring) -> None:
        keyring.kek(DISTRICT)
        with pytest.raises(KeyNotFoundError):
            keyring.kek(DISTRICT, 7)


class TestFileKeyring(KeyringContract):
    @pytest.fixture
    def keyring(self, tmp_path: Path) -> Iterator[Keyring]:
        yield FileKeyring(tmp_path / "keys" / "keyring.json")

    def test_file_is_owner_only_and_leaves_no_temp_files(self, tmp_path: Path) -> None:
        path = tmp_path / "keyring.json"
        FileKeyring(path).kek(DISTRICT)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["keyring.json", "keyring.json.lock"]
        assert json.loads(path.read_text())["districts"][DISTRICT]["current"] == 1

    def test_another_process_sees_rotation_and_destruction(self, tmp_path: Path) -> None:
        path = tmp_path / "keyring.json"
        ingest, records = FileKeyring(path), FileKeyring(path)
        _, first = ingest.kek(DISTRICT)
        assert records.kek(DISTRICT) == (1, first)
        ingest.rotate(DISTRICT)
        assert records.kek(DISTRICT)[0] == 2
        ingest.destroy_district(DISTRICT)
        with pytest.raises(KeyDestroyedError):
            records.kek(DISTRICT, 1)

    def test_concurrent_rotations_lose_no_version(self, tmp_path: Path) -> None:
        path = tmp_path / "keyring.json"
        rings = [FileKeyring(path) for _ in range(4)]
        start = threading.Barrier(len(rings))
        issued: list[int] = []

        def rotate_five(ring: FileKeyring) -> None:
            start.wait()
            issued.extend(ring.rotate(DISTRICT) for _ in range(5))

        threads = [threading.Thread(target=rotate_five, args=(r,)) for r in rings]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(issued) == list(range(1, 21))
        fresh = FileKeyring(path)
        assert fresh.kek(DISTRICT)[0] == 20
        assert len({fresh.kek(DISTRICT, v)[1] for v in range(1, 21)}) == 20

    def test_production_mode_refuses_to_invent_keys(self, tmp_path: Path) -> None:
        strict = FileKeyring(tmp_path / "keyring.json", allow_create=False)
        with pytest.raises(KeyNotFoundError):
            strict.kek(DISTRICT)
        assert strict.rotate(DISTRICT) == 1  # an operator's explicit rotation still works
        assert strict.kek(DISTRICT)[0] == 1

    def test_a_keyring_readable_by_others_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "keyring.json"
        FileKeyring(path).kek(DISTRICT)
        path.chmod(0o644)
        with pytest.raises(PermissionError, match="chmod 600"):
            FileKeyring(path).kek(DISTRICT)


# --------------------------------------------------------------------------------------
# Data-key store contract


class DataKeyStoreContract:
    @pytest.fixture
    async def store(self) -> AsyncIterator[PostgresDataKeyStore]:
        raise NotImplementedError
        yield

    async def test_unknown_subject_has_no_key(self, store: PostgresDataKeyStore) -> None:
        assert await store.get(DISTRICT, "student", STUDENT) is None

    async def test_first_key_put_wins(self, store: PostgresDataKeyStore) -> None:
        first, second = WrappedKey(1, b"first"), WrappedKey(2, b"second")
        assert await store.put_if_absent(DISTRICT, "student", STUDENT, first) == first
        assert await store.put_if_absent(DISTRICT, "student", STUDENT, second) == first
        assert await store.get(DISTRICT, "student", STUDENT) == first
        # Same subject string under another scope or district is another key.
        assert await store.put_if_absent(DISTRICT, "agreement", STUDENT, second) == second
        assert await store.put_if_absent(OTHER_DISTRICT, "student", STUDENT, second) == second

    async def test_destroy_leaves_a_tombstone(self, store: PostgresDataKeyStore) -> None:
        await store.put_if_absent(DISTRICT, "student", STUDENT, WrappedKey(1, b"k"))
        assert await store.destroy(DISTRICT, "student", STUDENT) == 1
        assert await store.destroy(DISTRICT, "student", STUDENT) == 0
        with pytest.raises(KeyDestroyedError):
            await store.get(DISTRICT, "student", STUDENT)
        with pytest.raises(KeyDestroyedError):
            await store.put_if_absent(DISTRICT, "student", STUDENT, WrappedKey(1, b"again"))

    async def test_destroying_a_subject_without_a_key_prevents_one(self, store: PostgresDataKeyStore) -> None:
        assert await store.destroy(DISTRICT, "agreement", AGREEMENT) == 0
        with pytest.raises(KeyDestroyedError):
            await store.put_if_absent(DISTRICT, "agreement", AGREEMENT, WrappedKey(1, b"late"))

    async def test_destroy_district_counts_only_that_districts_live_keys(self, store: PostgresDataKeyStore) -> None:
        for subject in (STUDENT, OTHER_STUDENT):
            await store.put_if_absent(DISTRICT, "student", subject, WrappedKey(1, b"k"))
            await store.put_if_absent(OTHER_DISTRICT, "student", subject, WrappedKey(1, b"k"))
        await store.put_if_absent(DISTRICT, "agreement", AGREEMENT, WrappedKey(1, b"k"))
        await store.destroy(DISTRICT, "student", OTHER_STUDENT)
        assert await store.destroy_district(DISTRICT) == 2
        assert await store.destroy_district(DISTRICT) == 0
        assert await store.get(OTHER_DISTRICT, "student", STUDENT) == WrappedKey(1, b"k")


async def _postgres_store(pg_pool: asyncpg.Pool) -> PostgresDataKeyStore:
    await ensure_schema(pg_pool)
    await ensure_schema(pg_pool)  # idempotent: every service start applies it
    return PostgresDataKeyStore(pg_pool)


class TestPostgresDataKeyStore(DataKeyStoreContract):
    @pytest.fixture
    async def store(self, pg_pool: asyncpg.Pool) -> AsyncIterator[PostgresDataKeyStore]:
        yield await _postgres_store(pg_pool)

    async def test_schema_refuses_half_destroyed_rows(self, pg_pool: asyncpg.Pool) -> None:
        await ensure_schema(pg_pool)
        with pytest.raises(asyncpg.CheckViolationError):
            await pg_pool.execute(
                "INSERT INTO data_keys (district_id, scope, subject, kek_version, wrapped, destroyed_at)"
                " VALUES ('d', 'student', 's', 1, 'x', now())"
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await pg_pool.execute(
                "INSERT INTO data_keys (district_id, scope, subject, kek_version, wrapped)"
                " VALUES ('d', 'parent', 's', 1, 'x')"
            )


# --------------------------------------------------------------------------------------
# Envelope cipher


class Clock:
    """A clock the test moves by hand, to step past the key cache's TTL."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(pg_pool: asyncpg.Pool) -> PostgresDataKeyStore:
    return await _postgres_store(pg_pool)


@pytest.fixture
def keyring(tmp_path: Path) -> FileKeyring:
    return FileKeyring(tmp_path / "keyring.json")


@pytest.fixture
def cipher(keyring: FileKeyring, store: PostgresDataKeyStore) -> EnvelopeCipher:
    return EnvelopeCipher(keyring, store)


def another_process(keyring: FileKeyring, store: PostgresDataKeyStore) -> EnvelopeCipher:
    """A second service instance: same keyring file and database, its own key cache."""
    # The store holds no state of its own; the key cache and the keyring's view are per process.
    return EnvelopeCipher(FileKeyring(keyring.path), store)


async def test_round_trip_of_text_and_bytes(cipher: EnvelopeCipher) -> None:
    name = await cipher.seal(DISTRICT, STUDENT, "student.first_name", "Zoë")
    photo = await cipher.seal(DISTRICT, STUDENT, "health.immunizations", b"\x00\xffMMR 2019-04-02")
    assert await cipher.open(DISTRICT, STUDENT, "student.first_name", name) == "Zoë".encode()
    assert await cipher.open(DISTRICT, STUDENT, "health.immunizations", photo) == b"\x00\xffMMR 2019-04-02"
    assert b"Zo" not in name


async def test_sealed_value_format_is_version_nonce_ciphertext_tag(cipher: EnvelopeCipher) -> None:
    one = await cipher.seal(DISTRICT, STUDENT, "student.last_name", "Rivera")
    two = await cipher.seal(DISTRICT, STUDENT, "student.last_name", "Rivera")
    assert one[0] == 1
    assert len(one) == 1 + 12 + len("Rivera") + 16
    assert one[1:13] != two[1:13]  # a fresh random nonce every time
    assert one != two


async def test_another_process_opens_what_this_one_sealed(
    cipher: EnvelopeCipher, keyring: FileKeyring, store: PostgresDataKeyStore
) -> None:
    sealed = await cipher.seal_many(DISTRICT, STUDENT, {"student.first_name": "Ada", "student.sex": "F"})
    opened = await another_process(keyring, store).open_many(DISTRICT, STUDENT, sealed)
    assert opened == {"student.first_name": b"Ada", "student.sex": b"F"}


async def test_a_value_moved_elsewhere_fails_as_tampering_not_as_shredding(cipher: EnvelopeCipher) -> None:
    # Give every destination a live key, so failures come from the binding alone.
    destinations: list[tuple[str, str, Scope]] = [
        (DISTRICT, STUDENT, "student"),
        (DISTRICT, OTHER_STUDENT, "student"),
        (OTHER_DISTRICT, STUDENT, "student"),
        (DISTRICT, STUDENT, "agreement"),
    ]
    for district, subject, scope in destinations:
        await cipher.seal(district, subject, "student.first_name", "x", scope=scope)
    sealed = await cipher.seal(DISTRICT, STUDENT, "student.first_name", "Ada")
    moves: list[tuple[str, str, str, Scope]] = [
        (DISTRICT, STUDENT, "student.last_name", "student"),  # another field: same data key, only the AAD differs
        (DISTRICT, OTHER_STUDENT, "student.first_name", "student"),
        (OTHER_DISTRICT, STUDENT, "student.first_name", "student"),
        (DISTRICT, STUDENT, "student.first_name", "agreement"),
        (DISTRICT, "stu_nobodyhasthiskeyyet", "student.first_name", "student"),
    ]
    for district, subject, element, scope in moves:
        with pytest.raises(DecryptionError) as failure:
            await cipher.open(district, subject, element, sealed, scope=scope)
        assert not isinstance(failure.value, KeyDestroyedError), (district, subject, element, scope)


async def test_every_flipped_bit_is_detected(cipher: EnvelopeCipher) -> None:
    sealed = await cipher.seal(DISTRICT, STUDENT, "student.birth_date", "2012-03-04")
    for position in range(len(sealed)):
        for bit in (0x01, 0x80):
            damaged = bytearray(sealed)
            damaged[position] ^= bit
            with pytest.raises(DecryptionError) as failure:
                await cipher.open(DISTRICT, STUDENT, "student.birth_date", bytes(damaged))
            assert not isinstance(failure.value, KeyDestroyedError)
    for cut in (0, 1, 13, 28, len(sealed) - 1):
        with pytest.raises(DecryptionError):
            await cipher.open(DISTRICT, STUDENT, "student.birth_date", sealed[:cut])


async def test_shredding_a_student_destroys_only_that_students_data(
    cipher: EnvelopeCipher, keyring: FileKeyring, store: PostgresDataKeyStore
) -> None:
    doomed = await cipher.seal(DISTRICT, STUDENT, "student.last_name", "Okafor")
    kept = await cipher.seal(DISTRICT, OTHER_STUDENT, "student.last_name", "Lindqvist")
    assert await cipher.destroy_subject(DISTRICT, STUDENT, "student") == 1
    assert await cipher.destroy_subject(DISTRICT, STUDENT, "student") == 0
    for reader in (cipher, another_process(keyring, store)):
        with pytest.raises(KeyDestroyedError):
            await reader.open(DISTRICT, STUDENT, "student.last_name", doomed)
        assert await reader.open(DISTRICT, OTHER_STUDENT, "student.last_name", kept) == b"Lindqvist"
    # A shredded student is never silently re-keyed: old values would then read as tampering.
    with pytest.raises(KeyDestroyedError):
        await cipher.seal(DISTRICT, STUDENT, "student.last_name", "Okafor")


async def test_other_processes_see_shredding_once_their_cached_key_expires(
    cipher: EnvelopeCipher, keyring: FileKeyring, store: PostgresDataKeyStore
) -> None:
    clock = Clock()
    records = EnvelopeCipher(FileKeyring(keyring.path), store, cache_ttl=60, clock=clock)
    sealed = await cipher.seal(DISTRICT, STUDENT, "student.first_name", "Ada")
    assert await records.open(DISTRICT, STUDENT, "student.first_name", sealed) == b"Ada"
    await cipher.destroy_subject(DISTRICT, STUDENT)
    clock.now += 59  # still within the documented window
    assert await records.open(DISTRICT, STUDENT, "student.first_name", sealed) == b"Ada"
    clock.now += 2
    with pytest.raises(KeyDestroyedError):
        await records.open(DISTRICT, STUDENT, "student.first_name", sealed)


async def test_ending_an_agreement_shreds_its_releases_not_the_districts_own_copy(cipher: EnvelopeCipher) -> None:
    released = await cipher.seal(DISTRICT, AGREEMENT, "student.email", "ada@example.org", scope="agreement")
    own = await cipher.seal(DISTRICT, STUDENT, "student.email", "ada@example.org")
    assert await cipher.destroy_subject(DISTRICT, AGREEMENT, "agreement") == 1
    with pytest.raises(KeyDestroyedError):
        await cipher.open(DISTRICT, AGREEMENT, "student.email", released, scope="agreement")
    assert await cipher.open(DISTRICT, STUDENT, "student.email", own) == b"ada@example.org"


async def test_shredding_a_district_destroys_all_its_data_and_no_other_districts(
    cipher: EnvelopeCipher, keyring: FileKeyring, store: PostgresDataKeyStore
) -> None:
    doomed: list[tuple[str, Scope, bytes]] = [
        (STUDENT, "student", await cipher.seal(DISTRICT, STUDENT, "student.sex", "M")),
        (OTHER_STUDENT, "student", await cipher.seal(DISTRICT, OTHER_STUDENT, "student.sex", "F")),
        (AGREEMENT, "agreement", await cipher.seal(DISTRICT, AGREEMENT, "student.sex", "F", scope="agreement")),
    ]
    kept = await cipher.seal(OTHER_DISTRICT, STUDENT, "student.sex", "X")
    assert await cipher.destroy_district(DISTRICT) == 3
    for reader in (cipher, another_process(keyring, store)):
        for subject, scope, sealed in doomed:
            with pytest.raises(KeyDestroyedError):
                await reader.open(DISTRICT, subject, "student.sex", sealed, scope=scope)
        assert await reader.open(OTHER_DISTRICT, STUDENT, "student.sex", kept) == b"X"


async def test_a_backup_of_the_data_keys_does_not_undo_shredding_a_district(
    cipher: EnvelopeCipher, keyring: FileKeyring, store: PostgresDataKeyStore, pg_pool: asyncpg.Pool
) -> None:
    sealed = await cipher.seal(DISTRICT, STUDENT, "student.address", "12 Elm St")
    backup = await pg_pool.fetch("SELECT subject, kek_version, wrapped FROM data_keys")
    await cipher.destroy_district(DISTRICT)
    for row in backup:  # restore the wrapped keys as they were before the shredding
        await pg_pool.execute(
            "UPDATE data_keys SET kek_version = $2, wrapped = $3, destroyed_at = NULL WHERE subject = $1", *row
        )
    with pytest.raises(KeyDestroyedError):
        await another_process(keyring, store).open(DISTRICT, STUDENT, "student.address", sealed)


async def test_destroying_the_kek_alone_shreds_the_district(
    cipher: EnvelopeCipher, keyring: FileKeyring, store: PostgresDataKeyStore
) -> None:
    # E.g. the KMS key was scheduled for deletion and the data-key rows were never touched.
    sealed = await cipher.seal(DISTRICT, STUDENT, "student.address", "12 Elm St")
    FileKeyring(keyring.path).destroy_district(DISTRICT)
    with pytest.raises(KeyDestroyedError):
        await another_process(keyring, store).open(DISTRICT, STUDENT, "student.address", sealed)


async def test_rotation_keeps_old_values_readable_and_wraps_new_keys_with_the_new_kek(
    cipher: EnvelopeCipher, keyring: FileKeyring, store: PostgresDataKeyStore
) -> None:
    before = await cipher.seal(DISTRICT, STUDENT, "student.phone", "555-0100")
    assert keyring.rotate(DISTRICT) == 2
    after = await cipher.seal(DISTRICT, OTHER_STUDENT, "student.phone", "555-0199")
    old_key, new_key = (
        await store.get(DISTRICT, "student", STUDENT),
        await store.get(DISTRICT, "student", OTHER_STUDENT),
    )
    assert old_key is not None and old_key.kek_version == 1
    assert new_key is not None and new_key.kek_version == 2
    reader = another_process(keyring, store)
    assert await reader.open(DISTRICT, STUDENT, "student.phone", before) == b"555-0100"
    assert await reader.open(DISTRICT, OTHER_STUDENT, "student.phone", after) == b"555-0199"


async def test_a_wrapped_key_copied_to_another_student_does_not_unwrap(
    cipher: EnvelopeCipher, keyring: FileKeyring, store: PostgresDataKeyStore, pg_pool: asyncpg.Pool
) -> None:
    # Someone with write access to the table swaps a student's data key for another's.
    await cipher.seal(DISTRICT, STUDENT, "student.first_name", "Ada")
    sealed = await cipher.seal(DISTRICT, OTHER_STUDENT, "student.first_name", "Bo")
    await pg_pool.execute(
        "UPDATE data_keys SET wrapped = (SELECT wrapped FROM data_keys WHERE subject = $1) WHERE subject = $2",
        STUDENT,
        OTHER_STUDENT,
    )
    with pytest.raises(DecryptionError, match="stored data key") as failure:
        await another_process(keyring, store).open(DISTRICT, OTHER_STUDENT, "student.first_name", sealed)
    assert not isinstance(failure.value, KeyDestroyedError)


class RacingStore(PostgresDataKeyStore):
    """The real store, holding each caller after its read until all have read.

    This forces the race where two processes both find no key and both create one.
    """

    def __init__(self, pool: asyncpg.Pool, racers: asyncio.Barrier) -> None:
        super().__init__(pool)
        self._racers = racers

    async def get(self, district_id: str, scope: Scope, subject: str) -> WrappedKey | None:
        found = await super().get(district_id, scope, subject)
        await self._racers.wait()
        return found


async def test_concurrent_first_seals_for_a_new_student_converge_on_one_key(
    keyring: FileKeyring, pg_pool: asyncpg.Pool
) -> None:
    await ensure_schema(pg_pool)
    racers = asyncio.Barrier(2)
    ingest_a = EnvelopeCipher(FileKeyring(keyring.path), RacingStore(pg_pool, racers))
    ingest_b = EnvelopeCipher(FileKeyring(keyring.path), RacingStore(pg_pool, racers))
    sealed_a, sealed_b = await asyncio.wait_for(
        asyncio.gather(
            ingest_a.seal(DISTRICT, STUDENT, "student.first_name", "Ada"),
            ingest_b.seal(DISTRICT, STUDENT, "student.last_name", "Lovelace"),
        ),
        timeout=10,
    )
    assert await pg_pool.fetchval("SELECT count(*) FROM data_keys") == 1
    # A third process, knowing only the stored key, opens both: the loser adopted the winner's key.
    reader = EnvelopeCipher(FileKeyring(keyring.path), PostgresDataKeyStore(pg_pool))
    assert await reader.open(DISTRICT, STUDENT, "student.first_name", sealed_a) == b"Ada"
    assert await reader.open(DISTRICT, STUDENT, "student.last_name", sealed_b) == b"Lovelace"


class HeldStore(PostgresDataKeyStore):
    """The real store, pausing each read until the test lets it go."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.reading, self.release = asyncio.Event(), asyncio.Event()

    async def get(self, district_id: str, scope: Scope, subject: str) -> WrappedKey | None:
        found = await super().get(district_id, scope, subject)
        self.reading.set()
        await self.release.wait()
        return found


async def test_a_key_read_while_its_subject_is_shredded_is_not_cached(
    cipher: EnvelopeCipher, keyring: FileKeyring, pg_pool: asyncpg.Pool
) -> None:
    sealed = await cipher.seal(DISTRICT, STUDENT, "student.first_name", "Ada")
    held = HeldStore(pg_pool)
    records = EnvelopeCipher(FileKeyring(keyring.path), held)
    in_flight = asyncio.create_task(records.open(DISTRICT, STUDENT, "student.first_name", sealed))
    await asyncio.wait_for(held.reading.wait(), timeout=10)
    await records.destroy_subject(DISTRICT, STUDENT)
    held.release.set()
    assert await in_flight == b"Ada"  # it read the key before the shredding began
    with pytest.raises(KeyDestroyedError):  # but kept no copy of it for later reads
        await records.open(DISTRICT, STUDENT, "student.first_name", sealed)


async def test_many_processes_sealing_many_new_students_agree(
    keyring: FileKeyring, store: PostgresDataKeyStore
) -> None:
    processes = [another_process(keyring, store) for _ in range(4)]
    students = [f"stu_{n:032d}" for n in range(25)]
    sealed = await asyncio.gather(
        *(p.seal(DISTRICT, s, "student.first_name", s[-4:]) for s in students for p in processes)
    )
    reader = another_process(keyring, store)
    for index, value in enumerate(sealed):
        student = students[index // len(processes)]
        assert await reader.open(DISTRICT, student, "student.first_name", value) == student[-4:].encode()


async def test_separator_in_a_name_is_refused(cipher: EnvelopeCipher) -> None:
    # '|' would let two different (subject, element) pairs spell the same associated data.
    with pytest.raises(ValueError, match="'\\|'"):
        await cipher.seal(DISTRICT, STUDENT, "student.first_name|x", "Ada")
    with pytest.raises(ValueError, match="scope"):
        await cipher.seal(DISTRICT, STUDENT, "student.first_name", "Ada", scope="parent")  # type: ignore[arg-type]


async def test_prefetch_reads_many_keys_at_once_and_leaves_shredded_ones_to_open(
    keyring: FileKeyring, store: PostgresDataKeyStore
) -> None:
    sealed = {
        k: await EnvelopeCipher(keyring, store).seal(DISTRICT, k, "student.sex", "F") for k in (STUDENT, OTHER_STUDENT)
    }
    await EnvelopeCipher(keyring, store).destroy_subject(DISTRICT, OTHER_STUDENT)
    fresh = EnvelopeCipher(keyring, store)
    await fresh.prefetch(DISTRICT, [STUDENT, OTHER_STUDENT, "stu_" + "9" * 32])
    assert set(fresh._cache) == {(DISTRICT, "student", STUDENT)}  # the shredded and the unknown are not cached
    assert await fresh.open(DISTRICT, STUDENT, "student.sex", sealed[STUDENT]) == b"F"
    with pytest.raises(KeyDestroyedError):
        await fresh.open(DISTRICT, OTHER_STUDENT, "student.sex", sealed[OTHER_STUDENT])


async def test_the_key_cache_is_bounded(keyring: FileKeyring, store: PostgresDataKeyStore) -> None:
    small = EnvelopeCipher(keyring, store, cache_size=3)
    for n in range(10):
        await small.seal(DISTRICT, f"stu_{n:032d}", "student.sex", "F")
    assert len(small._cache) == 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.one_of(st.text(), st.binary()),
    element=st.sampled_from(sorted(CATALOGUE)),
    subject=st.sampled_from([STUDENT, OTHER_STUDENT]),
)
async def test_any_value_round_trips(cipher: EnvelopeCipher, value: str | bytes, element: str, subject: str) -> None:
    sealed = await cipher.seal(DISTRICT, subject, element, value)
    expected = value.encode("utf-8") if isinstance(value, str) else value
    assert await cipher.open(DISTRICT, subject, element, sealed) == expected
    assert len(sealed) == 1 + 12 + len(expected) + 16
