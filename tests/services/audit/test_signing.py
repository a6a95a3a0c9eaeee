"""Signed tree heads and entry receipts: the byte layout others verify, and the key file."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from homeroom.tlog.merkle import leaf_hash
from homeroom.tlog.signing import (
    EntryReceipt,
    LogSigner,
    SignedTreeHead,
    TreeHead,
    key_id,
    load_or_create_signer,
    load_public_key,
    receipt_signing_bytes,
    verify_head,
    verify_receipt,
)

ROOT = bytes(range(32))
LEAF = leaf_hash(b"disclosure")


@pytest.fixture
def signer() -> LogSigner:
    return LogSigner(Ed25519PrivateKey.generate())


def test_tree_head_layout_is_fixed_width_big_endian_after_a_label() -> None:
    # This layout is a published contract (a parent's browser re-implements it), so it is
    # pinned byte for byte.
    head = TreeHead(size=0x0102, root=ROOT, timestamp_ms=0x0A0B0C)
    assert head.signing_bytes() == (
        b"homeroom-audit-tree-head-v1\x00"
        + bytes.fromhex("0000000000000102")
        + ROOT
        + bytes.fromhex("00000000000a0b0c")
    )
    # Fixed width: the encoding's length never depends on the values.
    assert len(TreeHead(2**64 - 1, ROOT, 2**64 - 1).signing_bytes()) == len(head.signing_bytes())


def test_receipt_layout_is_fixed_width_big_endian_after_a_label() -> None:
    assert receipt_signing_bytes(7, LEAF, 1_700_000_000_000) == (
        b"homeroom-audit-entry-receipt-v1\x00" + (7).to_bytes(8, "big") + LEAF + (1_700_000_000_000).to_bytes(8, "big")
    )


@pytest.mark.parametrize(
    ("size", "root", "timestamp_ms"),
    [(-1, ROOT, 0), (2**64, ROOT, 0), (1, ROOT[:31], 0), (1, ROOT, -5), (True, ROOT, 0)],
)
def test_tree_head_refuses_values_the_layout_cannot_hold(size: int, root: bytes, timestamp_ms: int) -> None:
    with pytest.raises(ValueError):
        TreeHead(size, root, timestamp_ms)


def test_signed_head_verifies_and_any_change_breaks_it(signer: LogSigner) -> None:
    signed = signer.sign_head(TreeHead(42, ROOT, 1_700_000_000_000))
    assert signed.key_id == signer.key_id
    assert verify_head(signed, signer.public_key)
    for head in (TreeHead(43, ROOT, 1_700_000_000_000), TreeHead(42, LEAF, 1_700_000_000_000), TreeHead(42, ROOT, 1)):
        assert not verify_head(SignedTreeHead(head, signed.key_id, signed.signature), signer.public_key)
    bad = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
    assert not verify_head(SignedTreeHead(signed.head, signed.key_id, bad), signer.public_key)
    assert not verify_head(SignedTreeHead(signed.head, signed.key_id, signed.signature[:63]), signer.public_key)
    other = LogSigner(Ed25519PrivateKey.generate())
    assert not verify_head(signed, other.public_key)


def test_receipt_verifies_and_any_change_breaks_it(signer: LogSigner) -> None:
    receipt = signer.sign_receipt(9, LEAF, 1_700_000_000_123)
    assert (receipt.index, receipt.leaf_hash, receipt.timestamp_ms, receipt.key_id) == (
        9,
        LEAF,
        1_700_000_000_123,
        signer.key_id,
    )
    assert verify_receipt(receipt, signer.public_key)
    sig = receipt.signature
    for changed in (
        EntryReceipt(10, LEAF, 1_700_000_000_123, signer.key_id, sig),  # moved to another index
        EntryReceipt(9, leaf_hash(b"edited"), 1_700_000_000_123, signer.key_id, sig),  # content rewritten
        EntryReceipt(9, LEAF, 1_700_000_000_124, signer.key_id, sig),
        EntryReceipt(9, LEAF[:31], 1_700_000_000_123, signer.key_id, sig),  # malformed: False, not an exception
        EntryReceipt(-1, LEAF, 1_700_000_000_123, signer.key_id, sig),
    ):
        assert not verify_receipt(changed, signer.public_key)


def test_a_head_signature_is_never_a_receipt_signature(signer: LogSigner) -> None:
    # Domain separation: the same numbers signed as a head do not make a valid receipt.
    signed = signer.sign_head(TreeHead(5, LEAF, 77))
    as_receipt = EntryReceipt(5, LEAF, 77, signer.key_id, signed.signature)
    assert not verify_receipt(as_receipt, signer.public_key)


def test_key_id_is_a_short_fingerprint_of_the_raw_public_key(signer: LogSigner) -> None:
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert signer.key_id == key_id(signer.public_key) == hashlib.sha256(raw).digest()[:8].hex()
    assert len(signer.key_id) == 16
    assert LogSigner(Ed25519PrivateKey.generate()).key_id != signer.key_id
    assert signer.key_id in repr(signer)


def test_published_pem_verifies_what_the_signer_signed(signer: LogSigner) -> None:
    public = load_public_key(signer.public_key_pem())
    assert verify_head(signer.sign_head(TreeHead(1, ROOT, 2)), public)
    ec_pem = (
        generate_private_key(SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="Ed25519"):
        load_public_key(ec_pem)


def test_dict_forms_round_trip_and_name_a_bad_field(signer: LogSigner) -> None:
    signed = signer.sign_head(TreeHead(3, ROOT, 4))
    assert SignedTreeHead.from_dict(signed.to_dict()) == signed
    receipt = signer.sign_receipt(2, LEAF, 5)
    assert EntryReceipt.from_dict(receipt.to_dict()) == receipt
    assert verify_receipt(EntryReceipt.from_dict(receipt.to_dict()), signer.public_key)
    with pytest.raises(ValueError, match="size"):
        SignedTreeHead.from_dict({**signed.to_dict(), "size": "3"})
    with pytest.raises(ValueError, match="leaf_hash"):
        EntryReceipt.from_dict({**receipt.to_dict(), "leaf_hash": "zz"})
    with pytest.raises(ValueError, match="key_id"):
        EntryReceipt.from_dict({k: v for k, v in receipt.to_dict().items() if k != "key_id"})


# --- the key file -------------------------------------------------------------------------


def test_key_file_is_created_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing.pem"
    first = load_or_create_signer(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in path.read_bytes()
    again = load_or_create_signer(path)
    assert again.key_id == first.key_id  # the same log key across restarts
    assert verify_head(first.sign_head(TreeHead(1, ROOT, 1)), again.public_key)
    assert [p.name for p in path.parent.iterdir()] == ["audit-signing.pem"]  # no temporary file left behind


def test_concurrent_starters_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "audit-signing.pem"
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        ids.append(load_or_create_signer(path).key_id)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit-signing.pem"
    load_or_create_signer(path)
    os.chmod(path, 0o640)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_signer(path)


def test_key_file_of_another_algorithm_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit-signing.pem"
    pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    with pytest.raises(ValueError, match="Ed25519"):
        load_or_create_signer(path)
