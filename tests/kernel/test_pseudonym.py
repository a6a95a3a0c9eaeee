"""Pseudonymous student keys: stable, normalised, keyed, one-way; the dev key file."""

from __future__ import annotations

import base64
import re
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeroom.pseudonym import KEY_BYTES, Pseudonymizer, base32_160, load_or_create_key, normalise_id

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
STUDENT_KEY_SHAPE = re.compile(r"^stu_[a-z2-7]{32}$")
LOCAL_ID_SHAPE = re.compile(r"^lid_[a-z2-7]{32}$")


def test_student_key_is_stable_across_instances_and_url_safe() -> None:
    first = Pseudonymizer(KEY).student_key("NY1234567890")
    again = Pseudonymizer(KEY).student_key("NY1234567890")
    assert first == again
    assert STUDENT_KEY_SHAPE.match(first)


def test_formatting_differences_do_not_split_one_student() -> None:
    p = Pseudonymizer(KEY)
    canonical = p.student_key("NY123ab")
    assert p.student_key("  ny123AB\t") == canonical
    assert p.student_key("ＮＹ１２３ａｂ") == canonical  # full-width digits and letters from some exports
    assert p.student_key("NY123AC") != canonical


def test_a_different_key_gives_unrelated_pseudonyms() -> None:
    assert Pseudonymizer(KEY).student_key("NY1") != Pseudonymizer(OTHER_KEY).student_key("NY1")
    assert Pseudonymizer(KEY).local_id_hash("d1", "42") != Pseudonymizer(OTHER_KEY).local_id_hash("d1", "42")


def test_local_ids_are_scoped_to_their_district_and_separate_from_state_ids() -> None:
    p = Pseudonymizer(KEY)
    here = p.local_id_hash("district-a", "00042")
    assert LOCAL_ID_SHAPE.match(here)
    assert p.local_id_hash(" DISTRICT-A ", "00042 ") == here
    assert p.local_id_hash("district-b", "00042") != here  # same number, another district's child
    assert p.student_key("00042")[4:] != here[4:]  # domain separation, not only a different prefix
    # The boundary between district and local id is part of the hash.
    assert p.local_id_hash("AB", "C") != p.local_id_hash("A", "BC")


def test_empty_ids_and_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        Pseudonymizer(KEY).student_key("   ")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymizer(b"short")


def test_repr_never_shows_the_key() -> None:
    assert KEY.hex() not in repr(Pseudonymizer(KEY))
    assert str(KEY) not in repr(Pseudonymizer(KEY))


# Realistic ids are 8+ characters; a shorter one could match 32 random characters by chance.
@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=8, max_size=40))
def test_pseudonym_never_contains_the_raw_id(raw_id: str) -> None:
    pseudonym = Pseudonymizer(KEY).student_key(raw_id)
    assert STUDENT_KEY_SHAPE.match(pseudonym)
    assert normalise_id(raw_id).lower() not in pseudonym


@given(st.text(alphabet="abcdefXYZ0123456789-", min_size=1, max_size=20), st.sampled_from(["", " ", "\t", "  \n"]))
def test_case_and_surrounding_space_never_change_the_pseudonym(raw_id: str, padding: str) -> None:
    p = Pseudonymizer(KEY)
    assert p.student_key(padding + raw_id.swapcase() + padding) == p.student_key(raw_id)


def test_dev_key_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "pseudonym.key"
    key = load_or_create_key(path)
    assert len(key) == KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["pseudonym.key"]  # no temp files left behind


def test_processes_starting_together_agree_on_one_dev_key(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    start = threading.Barrier(8)
    keys: list[bytes] = []

    def start_up() -> None:
        start.wait()
        keys.append(load_or_create_key(path))

    threads = [threading.Thread(target=start_up) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8
    assert len(set(keys)) == 1


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    load_or_create_key(path)
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_key(path)


def test_a_damaged_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_bytes(b"c2hvcnQ=\n")  # base64 of 5 bytes
    path.chmod(0o600)
    with pytest.raises(ValueError, match="expected 32"):
        load_or_create_key(path)


def test_keys_are_the_ones_issued_before_the_faster_digest() -> None:
    """Pinned outputs (computed before issue 19 made the digest cheaper): renaming a student is a
    migration, never a side effect of a speed-up."""
    p = Pseudonymizer(KEY)
    assert p.student_key("NY1234567890") == "stu_vygwclftzdnmh3h7bkpsj2h7i2nekvan"
    assert p.local_id_hash("d-100", "L1") == "lid_emydeovem3w3mxvq2z6nwhmopcwn73gn"
    assert p.staff_key("d-100", "T7") == "stf_bxhvd5joxog5nn5gywq4uv2eg23hzyxu"
    assert p.enrollment_id("d-100", "stu_x", "sch-1", "2024-09-03") == "enr_lxpcydhgclbqhc4dlugqdrdhbbgqhpil"


@given(st.binary(min_size=20, max_size=20))
def test_base32_of_a_digest_is_base64s(digest: bytes) -> None:
    assert base32_160(digest) == base64.b32encode(digest).decode("ascii").lower()


def test_base32_refuses_other_lengths() -> None:
    with pytest.raises(ValueError, match="20 bytes"):
        base32_160(bytes(19))
