"""The offline verifier names exactly the tampered entries and the tree heads they break.

Each test builds an honest log (entries, receipts given at append, tree heads signed at
several sizes), then tampers with the export the way an operator with full database
rights could, and checks the verifier's findings entry by entry and head by head.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from homeroom.tlog.merkle import MerkleLog, leaf_hash
from homeroom.tlog.signing import EntryReceipt, LogSigner, SignedTreeHead, TreeHead
from homeroom.tlog.verify import ExportedEntry, FindingKind, VerificationReport, verify_log

K = FindingKind
SIGNER = LogSigner(Ed25519PrivateKey.generate())
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HEAD_SIZES = (50, 120, 200, 300)


def canonical(i: int) -> bytes:
    # Shaped like a disclosure entry: who, which elements, to whom, why; never a value.
    record = {"seq": i, "actor": f"vendor-{i % 7}", "elements": ["attendance.daily"], "purpose": "instruction"}
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


class Log:
    """An honest log as the service would export it."""

    def __init__(self, n: int = 300, head_sizes: tuple[int, ...] = HEAD_SIZES, signer: LogSigner = SIGNER) -> None:
        tree = MerkleLog()
        self.entries: list[ExportedEntry] = []
        self.heads: list[SignedTreeHead] = []
        for i in range(n):
            data = canonical(i)
            leaf = leaf_hash(data)
            tree.append(leaf)
            self.entries.append(ExportedEntry(i, data, leaf, signer.sign_receipt(i, leaf, T0 + i)))
            if i + 1 in head_sizes:
                self.heads.append(signer.sign_head(TreeHead(i + 1, tree.root(), T0 + i + 1)))

    def head(self, size: int) -> SignedTreeHead:
        return next(h for h in self.heads if h.head.size == size)

    def stream(self) -> Iterator[ExportedEntry]:
        yield from self.entries  # a generator: the verifier gets one pass, as from a file

    def verify(
        self,
        check_all_receipts: bool = True,
        progress: Callable[[int], None] | None = None,
        progress_every: int = 10_000,
        max_findings: int = 10_000,
    ) -> VerificationReport:
        return verify_log(
            self.stream(),
            self.heads,
            SIGNER.public_key,
            check_all_receipts=check_all_receipts,
            progress=progress,
            progress_every=progress_every,
            max_findings=max_findings,
        )


def head_sizes(report: VerificationReport, *kinds: FindingKind) -> list[int]:
    return [h.size for h in report.heads(*kinds)]


def kinds_at(report: VerificationReport) -> set[tuple[FindingKind, int | None]]:
    return {(f.kind, f.index) for f in report.findings}


def test_an_untouched_log_verifies_clean() -> None:
    report = Log().verify()
    assert report.ok and report.findings == []
    assert report.entries_read == report.log_size == 300
    assert report.receipts_verified == 300
    assert report.heads_checked == 4
    assert report.consistency_checked == 3  # 50->120->200->300
    assert report.authenticated_size == 300
    assert report.lines()[0].startswith("OK")


def test_altered_content_names_the_entry_and_every_head_covering_it() -> None:
    log = Log()
    e = log.entries[130]
    log.entries[130] = e._replace(canonical_bytes=e.canonical_bytes.replace(b"instruction", b"research"))
    report = log.verify()
    assert not report.ok
    assert kinds_at(report) == {
        (K.ALTERED, 130),
        (K.STORED_HASH_MISMATCH, 130),
        (K.HEAD_ROOT_MISMATCH, None),
    }
    assert head_sizes(report, K.HEAD_ROOT_MISMATCH) == [200, 300]  # 50 and 120 predate entry 130
    assert report.authenticated_size == 120
    assert "entry 130: content does not match its receipt" in report.lines()
    assert "tree head size 200 signed at 2026-01-01T00:00:00.200Z: root mismatch" in report.lines()


def test_content_and_stored_hash_rewritten_together_is_caught_by_the_receipt() -> None:
    # The attack receipts exist for: everything the database holds is self-consistent.
    log = Log()
    data = log.entries[130].canonical_bytes.replace(b"vendor", b"nobody")
    log.entries[130] = log.entries[130]._replace(canonical_bytes=data, stored_leaf_hash=leaf_hash(data))
    report = log.verify()
    assert kinds_at(report) == {(K.ALTERED, 130), (K.HEAD_ROOT_MISMATCH, None)}
    assert report.entry_indices() == [130]
    assert head_sizes(report, K.HEAD_ROOT_MISMATCH) == [200, 300]


def test_deleted_entry_is_named_missing() -> None:
    log = Log()
    del log.entries[75]
    report = log.verify()
    assert kinds_at(report) == {(K.MISSING, 75), (K.HEAD_ROOT_MISMATCH, None)}
    assert "entry 75 missing" in report.lines()
    assert report.missing_entries == 1
    assert head_sizes(report, K.HEAD_ROOT_MISMATCH) == [120, 200, 300]


def test_truncated_tail_is_caught_by_the_newest_head() -> None:
    log = Log()
    del log.entries[270:]
    report = log.verify()
    assert report.log_size == 300  # the signed head says the log held 300
    assert kinds_at(report) == {(K.MISSING, 270), (K.HEAD_ROOT_MISMATCH, None)}
    assert "entries 270 to 299 missing (30)" in report.lines()
    assert report.entry_indices(K.MISSING) == list(range(270, 300))
    assert head_sizes(report, K.HEAD_ROOT_MISMATCH) == [300]


def test_swapped_entries_each_carry_the_other_ones_receipt() -> None:
    # Exchanging two rows' indices: content, stored hash and receipt move with the row.
    log = Log()
    a, b = log.entries[60], log.entries[170]
    log.entries[60], log.entries[170] = b._replace(index=60), a._replace(index=170)
    report = log.verify()
    assert kinds_at(report) == {(K.MOVED, 60), (K.MOVED, 170), (K.HEAD_ROOT_MISMATCH, None)}
    assert "entry 60: carries the receipt of entry 170 (moved or reordered)" in report.lines()
    assert head_sizes(report, K.HEAD_ROOT_MISMATCH) == [120, 200, 300]


def test_swapped_contents_under_fixed_receipts_are_both_altered() -> None:
    # Receipts kept apart from the rows stay put while the contents trade places.
    log = Log()
    a, b = log.entries[60], log.entries[170]
    log.entries[60] = a._replace(canonical_bytes=b.canonical_bytes, stored_leaf_hash=b.stored_leaf_hash)
    log.entries[170] = b._replace(canonical_bytes=a.canonical_bytes, stored_leaf_hash=a.stored_leaf_hash)
    report = log.verify()
    assert report.entry_indices() == [60, 170]
    assert set(report.counts) == {K.ALTERED, K.HEAD_ROOT_MISMATCH}
    assert head_sizes(report, K.HEAD_ROOT_MISMATCH) == [120, 200, 300]


def test_forged_head_root_is_a_bad_signature_and_nothing_else() -> None:
    log = Log()
    honest = log.head(200)
    forged = TreeHead(200, leaf_hash(b"a root the operator prefers"), honest.head.timestamp_ms)
    log.heads[log.heads.index(honest)] = SignedTreeHead(forged, honest.key_id, honest.signature)
    report = log.verify()
    assert kinds_at(report) == {(K.HEAD_BAD_SIGNATURE, None)}
    assert head_sizes(report, K.HEAD_BAD_SIGNATURE) == [200]
    assert report.entry_indices() == []
    assert report.consistency_checked == 2  # 50->120->300: the forged head is left out


def test_a_cover_up_cannot_re_sign_the_heads() -> None:
    # Alter an entry, then rewrite the later heads' roots to fit the altered log: without
    # the key, those heads fail their signatures, and the receipt still names the entry.
    log = Log()
    data = log.entries[130].canonical_bytes + b" "
    log.entries[130] = log.entries[130]._replace(canonical_bytes=data, stored_leaf_hash=leaf_hash(data))
    altered = MerkleLog()
    altered.extend(e.stored_leaf_hash for e in log.entries)
    for size in (200, 300):
        old = log.head(size)
        fitted = TreeHead(size, altered.root(size), old.head.timestamp_ms)
        log.heads[log.heads.index(old)] = SignedTreeHead(fitted, old.key_id, old.signature)
    report = log.verify()
    assert kinds_at(report) == {(K.ALTERED, 130), (K.HEAD_BAD_SIGNATURE, None)}
    assert head_sizes(report, K.HEAD_BAD_SIGNATURE) == [200, 300]


def test_corrupted_signatures_are_named() -> None:
    log = Log()
    head = log.head(120)
    bad_sig = bytes([head.signature[0] ^ 0x40]) + head.signature[1:]
    log.heads[log.heads.index(head)] = SignedTreeHead(head.head, head.key_id, bad_sig)
    e = log.entries[42]
    assert e.receipt is not None
    log.entries[42] = e._replace(receipt=EntryReceipt(42, e.stored_leaf_hash, T0 + 42, e.receipt.key_id, bytes(64)))
    report = log.verify()
    assert kinds_at(report) == {(K.RECEIPT_INVALID, 42), (K.HEAD_BAD_SIGNATURE, None)}
    assert head_sizes(report, K.HEAD_BAD_SIGNATURE) == [120]
    assert "entry 42: receipt signature is not valid" in report.lines()


def test_heads_and_receipts_signed_by_another_key_say_so() -> None:
    impostor = LogSigner(Ed25519PrivateKey.generate())
    log = Log(n=60, head_sizes=(60,), signer=impostor)
    report = log.verify()  # against the real log key
    assert report.counts == {K.RECEIPT_INVALID: 60, K.HEAD_BAD_SIGNATURE: 1}
    assert f"claims key {impostor.key_id}, not one of the log's keys: {SIGNER.key_id}" in report.findings[0].message


def test_entries_without_receipts_are_vouched_for_by_heads_and_the_tail_is_counted() -> None:
    # Since issue 19 entries carry no receipt of their own: a matching signed head vouches.
    log = Log(n=320)
    log.entries = [e._replace(receipt=None) for e in log.entries]
    report = log.verify()
    assert report.ok and report.receipts_verified == 0 and report.authenticated_size == 300
    assert report.awaiting_head == 20 and "20 entries not yet covered by a signed head" in report.lines()[1]

    # Rewritten with its leaf hash: only the heads covering it can tell, from entry 120 up.
    data = canonical(130).replace(b"instruction", b"marketing")
    log.entries[130] = ExportedEntry(130, data, leaf_hash(data), None)
    report = log.verify()
    assert head_sizes(report, K.HEAD_ROOT_MISMATCH) == [200, 300] and report.authenticated_size == 120
    assert kinds_at(report) - {(K.HEAD_ROOT_MISMATCH, None)} == {(K.NO_RECEIPT, 120)}
    assert report.entry_indices(K.NO_RECEIPT) == list(range(120, 300))  # one run, not 180 findings

    # With the stored leaf hash left alone the entry itself is named, and nothing else.
    log.entries[130] = ExportedEntry(130, data, leaf_hash(canonical(130)), None)
    report = log.verify()
    assert kinds_at(report) - {(K.HEAD_ROOT_MISMATCH, None)} == {(K.STORED_HASH_MISMATCH, 130)}


def test_missing_receipt_is_named_where_no_matching_head_vouches() -> None:
    log = Log(head_sizes=())
    log.entries[10] = log.entries[10]._replace(receipt=None)
    report = log.verify()
    assert report.ok and report.awaiting_head == 1  # the unsigned tail: the next head covers it
    log = Log()
    log.entries[10] = log.entries[10]._replace(receipt=None)
    assert log.verify().ok  # head 50 vouches for it


def test_shuffled_export_lines_name_the_misplaced_positions_only() -> None:
    # The entries themselves are intact (each still carries its own index and receipt),
    # so every root still matches; only the export's order is wrong.
    log = Log()
    log.entries[10], log.entries[250] = log.entries[250], log.entries[10]
    report = log.verify()
    assert kinds_at(report) == {(K.REORDERED, 250), (K.REORDERED, 10)}
    assert {f.position for f in report.findings} == {10, 250}
    assert "entry at position 10 carries index 250" in report.lines()
    assert report.authenticated_size == 300


def test_adjacent_swap_in_the_export_names_one_of_the_pair() -> None:
    # Either entry alone explains the disorder; the verifier names the fewest that do.
    log = Log()
    log.entries[20], log.entries[21] = log.entries[21], log.entries[20]
    report = log.verify()
    assert report.counts == {K.REORDERED: 1}
    assert report.entry_indices()[0] in (20, 21)


def test_duplicated_and_impossible_indices_are_set_aside() -> None:
    log = Log()
    log.entries.insert(100, log.entries[99])  # a second row claiming index 99
    log.entries.append(log.entries[5]._replace(index=-3))
    log.entries.append(log.entries[6]._replace(index=10**15))  # would need petabytes as a gap
    report = log.verify()
    assert kinds_at(report) == {(K.DUPLICATE, 99), (K.BAD_INDEX, None)}
    assert report.counts[K.BAD_INDEX] == 2
    assert {f.position for f in report.findings if f.kind is K.DUPLICATE} == {100}
    assert report.log_size == 300 and report.authenticated_size == 300


def test_a_smaller_head_signed_later_is_a_rollback() -> None:
    # Even with the key, the log cannot take back what a head already published.
    log = Log()
    tree = MerkleLog()
    tree.extend(e.stored_leaf_hash for e in log.entries[:250])
    log.heads.append(SIGNER.sign_head(TreeHead(250, tree.root(), T0 + 10_000)))
    report = log.verify()
    assert kinds_at(report) == {(K.HEAD_ROLLBACK, None)}
    assert [(f.head.size, f.earlier_head.size) for f in report.findings if f.head and f.earlier_head] == [(250, 300)]


def test_two_roots_for_one_size_is_a_fork() -> None:
    # A key holder showing different parents different histories.
    log = Log()
    log.heads.append(SIGNER.sign_head(TreeHead(120, leaf_hash(b"other history"), T0 + 121)))
    report = log.verify()
    assert report.counts == {K.HEAD_FORK: 1, K.HEAD_ROOT_MISMATCH: 1}
    assert head_sizes(report) == [120, 120]


def test_fast_mode_checks_only_receipts_no_matching_head_vouches_for() -> None:
    log = Log(n=320)  # 20 entries appended after the newest head
    report = log.verify(check_all_receipts=False)
    assert report.ok
    assert report.receipts_verified == 20


def test_fast_mode_still_names_an_entry_whose_receipt_was_rewritten_to_fit() -> None:
    # Content, stored hash and the receipt's leaf hash all rewritten consistently: every
    # cheap comparison passes, so only the signature can tell; the heads' mismatch sends
    # the verifier back to check it.
    log = Log()
    e = log.entries[130]
    assert e.receipt is not None
    data = e.canonical_bytes + b"!"
    fake = EntryReceipt(130, leaf_hash(data), e.receipt.timestamp_ms, e.receipt.key_id, e.receipt.signature)
    log.entries[130] = ExportedEntry(130, data, leaf_hash(data), fake)
    report = log.verify(check_all_receipts=False)
    assert kinds_at(report) == {(K.RECEIPT_INVALID, 130), (K.HEAD_ROOT_MISMATCH, None)}
    assert head_sizes(report, K.HEAD_ROOT_MISMATCH) == [200, 300]
    assert report.receipts_verified == 300 - 120  # from the last head that still matches


def test_fast_mode_trades_away_damaged_receipts_on_vouched_entries() -> None:
    # The entry is authentic (a matching head vouches for it); only its receipt is broken.
    log = Log()
    e = log.entries[42]
    assert e.receipt is not None
    log.entries[42] = e._replace(receipt=EntryReceipt(42, e.stored_leaf_hash, T0 + 42, e.receipt.key_id, bytes(64)))
    assert kinds_at(log.verify()) == {(K.RECEIPT_INVALID, 42)}
    assert log.verify(check_all_receipts=False).ok


@pytest.mark.parametrize("check_all", [True, False])
def test_both_modes_agree_on_the_attacks(check_all: bool) -> None:
    log = Log()
    del log.entries[210]
    log.entries[30] = log.entries[30]._replace(canonical_bytes=b"{}", stored_leaf_hash=leaf_hash(b"{}"))
    report = log.verify(check_all_receipts=check_all)
    assert kinds_at(report) == {(K.ALTERED, 30), (K.MISSING, 210), (K.HEAD_ROOT_MISMATCH, None)}
    assert head_sizes(report, K.HEAD_ROOT_MISMATCH) == [50, 120, 200, 300]


def test_progress_is_reported_while_streaming() -> None:
    calls: list[int] = []
    Log().verify(progress=calls.append, progress_every=100)
    assert calls == [100, 200, 300]
    calls.clear()
    verify_log(iter([]), [], SIGNER.public_key, progress=calls.append)
    assert calls == [0]


def test_findings_are_capped_but_counted_exactly() -> None:
    log = Log(n=100, head_sizes=())
    log.entries = [e._replace(receipt=replace(e.receipt, signature=bytes(64))) for e in log.entries if e.receipt]
    report = log.verify(max_findings=10)
    assert len(report.findings) == 10 and report.findings_truncated
    assert report.counts[K.RECEIPT_INVALID] == 100
    assert report.lines()[-1] == "... and 90 more"


def test_an_empty_log_with_no_heads_is_clean_and_a_signed_size_makes_it_not() -> None:
    assert verify_log([], [], SIGNER.public_key).ok
    log = Log(n=5, head_sizes=(5,))
    report = verify_log([], log.heads, SIGNER.public_key)
    assert report.entry_indices(K.MISSING) == [0, 1, 2, 3, 4]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 70),
    head_every=st.integers(1, 30),
    attack=st.sampled_from(["alter", "rewrite", "delete", "swap"]),
    picks=st.data(),
)
def test_any_single_attack_names_its_entries_and_exactly_the_heads_covering_them(
    n: int, head_every: int, attack: str, picks: st.DataObject
) -> None:
    sizes = tuple(range(head_every, n + 1, head_every))
    log = Log(n=n, head_sizes=sizes)
    i = picks.draw(st.integers(0, n - 1), label="victim")
    if attack == "alter":
        log.entries[i] = log.entries[i]._replace(canonical_bytes=b"x" + log.entries[i].canonical_bytes)
        expected = {i}
    elif attack == "rewrite":
        data = b"y" + log.entries[i].canonical_bytes
        log.entries[i] = log.entries[i]._replace(canonical_bytes=data, stored_leaf_hash=leaf_hash(data))
        expected = {i}
    elif attack == "delete":
        del log.entries[i]
        expected = {i}
    else:
        j = picks.draw(st.integers(0, n - 1).filter(lambda j: j != i), label="other")
        a, b = log.entries[i], log.entries[j]
        log.entries[i], log.entries[j] = b._replace(index=i), a._replace(index=j)
        expected = {i, j}
    report = log.verify()
    if attack == "delete" and i == n - 1 and n not in sizes:
        # Deleting the newest entry that no head covers yet leaves nothing to contradict:
        # that is why the service signs a head on demand before an export.
        assert report.ok
        return
    assert set(report.entry_indices()) == expected
    assert head_sizes(report, K.HEAD_ROOT_MISMATCH) == [s for s in sizes if s > min(expected)]
    assert set(report.counts) - {K.HEAD_ROOT_MISMATCH, K.STORED_HASH_MISMATCH} <= {K.ALTERED, K.MISSING, K.MOVED}
