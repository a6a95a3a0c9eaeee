"""The offline verifier: does an exported disclosure log still say what was signed?

Input is the log as exported, ``(index, canonical_bytes, stored_leaf_hash, receipt)`` per
entry in log order, the signed tree heads, and the log's public key; nothing here reads
a database or trusts the service. In one pass over the entries it recomputes every leaf
hash and checks every entry receipt; then it rebuilds the tree and checks every head's
signature, its root, and consistency between successive heads.

What each kind of tampering looks like to it:

* content altered (with or without its stored leaf hash): the entry's receipt no longer
  matches, so that entry is named; every head covering it has a root mismatch. Entries
  appended since issue 19 have no receipt of their own (their receipt is a signed head
  and an inclusion proof): a change that also rewrites the stored leaf hash shows as the
  root mismatch of the first head covering it, i.e. somewhere between the last head that
  matches and that one; with the stored leaf hash left alone the entry is named.
* entry deleted: its index never appears (``entry i missing``); heads covering it mismatch.
  Deleting the newest entries is caught by the newest head, whose size exceeds the log.
* entries swapped (the rows' indices exchanged): each carries the receipt of the other's
  index; heads covering the lower index mismatch.
* export lines shuffled without changing any entry: ``entry at position p carries index
  i`` for the fewest entries whose removal leaves the rest in order. Leaves are placed by
  their index, so the roots still match: the log itself is intact.
* a forged head or signature: ``bad signature``; two signed heads that cannot both be
  true (a smaller size signed later, or one size with two roots) are reported even with
  no entries at all: that is the log's own key contradicting itself.

Memory stays flat in the number of Python objects: leaf hashes live in one bytearray
(32 bytes each), presence in another (1 byte each), the order of indices in an array.

Ed25519 verification costs about two hundred times a SHA-256 of a small entry, so
checking every receipt dominates. With ``check_all_receipts=False`` a receipt's signature
is checked only where it is needed: when its fields disagree with the entry, or when the
entry is not covered by a head whose root matches. A signed head whose root is
recomputed from the entries already authenticates every entry below its size, so the
findings about entries are the same; what that mode does not notice is a damaged
receipt (bad signature, fields intact) on an entry such a head already vouches for.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from homeroom.tlog.merkle import HASH_SIZE, LEAF_PREFIX, MemoryNodeStore, MerkleLog, verify_consistency
from homeroom.tlog.signing import (
    SIGNATURE_SIZE,
    EntryReceipt,
    Keyring,
    SignedTreeHead,
    TreeHead,
    verify_head,
    verify_receipt,
)

DEFAULT_PROGRESS_EVERY = 10_000
DEFAULT_MAX_FINDINGS = 10_000
# An index further than this past everything else is taken as garbage, not as a gap:
# honouring it would allocate 32 bytes per skipped index.
DEFAULT_MAX_GAP = 1_000_000
_PLACEHOLDER = bytes(HASH_SIZE)  # stands in for a missing leaf; no entry hashes to it
_MAX_U64 = 2**64 - 1


class ExportedEntry(NamedTuple):
    index: int  # type: ignore[assignment]  # shadows tuple.index(), which nothing here needs
    canonical_bytes: bytes
    stored_leaf_hash: bytes
    receipt: EntryReceipt | None


class FindingKind(StrEnum):
    ALTERED = "altered"  # content does not match the entry's receipt
    MOVED = "moved"  # the entry carries the receipt of another index
    RECEIPT_INVALID = "receipt_invalid"  # the receipt's signature does not verify
    NO_RECEIPT = "no_receipt"
    STORED_HASH_MISMATCH = "stored_hash_mismatch"  # the service's leaf hash disagrees with the content
    MISSING = "missing"
    DUPLICATE = "duplicate"
    REORDERED = "reordered"
    BAD_INDEX = "bad_index"
    HEAD_BAD_SIGNATURE = "head_bad_signature"
    HEAD_ROOT_MISMATCH = "head_root_mismatch"
    HEAD_ROLLBACK = "head_rollback"  # signed later than a larger head, yet smaller
    HEAD_FORK = "head_fork"  # same size as another signed head, different root
    HEADS_INCONSISTENT = "heads_inconsistent"
    TRUNCATED = "truncated"  # smaller than a head the verifier saw before (--trusted-head)
    TRUSTED_HEAD_MISMATCH = "trusted_head_mismatch"  # the log at a trusted head's size has another root


# Entry findings that by themselves account for a head whose root no longer matches.
_EXPLAINS_A_HEAD_MISMATCH = (
    FindingKind.ALTERED,
    FindingKind.MOVED,
    FindingKind.RECEIPT_INVALID,
    FindingKind.STORED_HASH_MISMATCH,
    FindingKind.MISSING,
    FindingKind.DUPLICATE,
    FindingKind.BAD_INDEX,
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    message: str
    index: int | None = None  # the entry (first of the run, for MISSING)
    last_index: int | None = None  # last of a MISSING run
    position: int | None = None  # place in the export stream, 0-based
    head: TreeHead | None = None
    earlier_head: TreeHead | None = None  # the other head of a rollback, fork or consistency check

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True)
class VerificationReport:
    entries_read: int = 0
    log_size: int = 0  # entries the log should hold: past the highest index and every signed head
    heads_checked: int = 0
    receipts_verified: int = 0  # Ed25519 receipt signatures actually checked
    consistency_checked: int = 0
    authenticated_size: int = 0  # the largest size a correctly signed, matching head vouches for
    awaiting_head: int = 0  # entries with no receipt of their own past every signed head (the next one covers them)
    missing_entries: int = 0
    findings: list[Finding] = field(default_factory=list)
    counts: Counter[FindingKind] = field(default_factory=Counter)  # exact, even when findings were cut short
    findings_truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.counts

    def entry_indices(self, *kinds: FindingKind) -> list[int]:
        """Indices named by findings of these kinds (every kind if none given), ascending."""
        out: set[int] = set()
        for f in self.findings:
            if f.index is not None and (not kinds or f.kind in kinds):
                out.update(range(f.index, (f.last_index if f.last_index is not None else f.index) + 1))
        return sorted(out)

    def heads(self, *kinds: FindingKind) -> list[TreeHead]:
        """Tree heads named by findings of these kinds, in the order reported."""
        return [f.head for f in self.findings if f.head is not None and (not kinds or f.kind in kinds)]

    def lines(self) -> list[str]:
        summary = (
            f"{self.entries_read} entries read, log size {self.log_size}, {self.heads_checked} tree heads, "
            f"{self.receipts_verified} receipt signatures checked, {self.consistency_checked} consistency proofs"
        )
        if self.awaiting_head:
            summary += f", {self.awaiting_head} entries not yet covered by a signed head"
        verdict = "OK: the log matches every signed tree head and receipt" if self.ok else "TAMPERING DETECTED"
        more = [f"... and {sum(self.counts.values()) - len(self.findings)} more"] if self.findings_truncated else []
        return [verdict, summary, *(f.message for f in self.findings), *more]


def verify_log(
    entries: Iterable[tuple[int, bytes, bytes, EntryReceipt | None]],
    heads: Iterable[SignedTreeHead],
    keys: Keyring | Ed25519PublicKey,
    *,
    check_all_receipts: bool = True,
    progress: Callable[[int], None] | None = None,
    progress_every: int = DEFAULT_PROGRESS_EVERY,
    max_findings: int = DEFAULT_MAX_FINDINGS,
    max_gap: int = DEFAULT_MAX_GAP,
    trusted: Sequence[TreeHead] = (),
) -> VerificationReport:
    """Check an exported log against its signed tree heads and receipts.

    ``trusted`` are heads the caller verified before (``verify --trusted-head``): the log
    must still hold them. A log smaller than one is truncated, and the finding names the
    missing range; a log whose root at that size differs was rewritten.

    ``progress`` is called with the number of entries read every ``progress_every``
    entries and once at the end of the pass. At most ``max_findings`` findings are kept
    (``counts`` stays exact).
    """
    v = _Verifier(Keyring.of(keys), max_findings)
    valid_heads = v.check_head_signatures(heads)
    signed_size = v.signed_size = max((s.head.size for s in valid_heads), default=0)
    v.read(entries, signed_size, check_all_receipts, progress, max(1, progress_every), max_gap)
    held = len(v.seen)
    tree = v.build_tree(max(signed_size, *(t.size for t in trusted), 0))
    v.check_trusted(trusted, tree, held, signed_size)
    v.check_heads(valid_heads, tree)
    v.verify_deferred_receipts()
    v.check_order()
    v.report_missing()
    v.check_unreceipted()
    return v.finish()


class _Verifier:
    def __init__(self, keys: Keyring, max_findings: int) -> None:
        self.keys = keys
        self.max_findings = max_findings
        self.report = VerificationReport()
        self.signed_size = 0  # the largest size a correctly signed head names
        self.leaves = bytearray()  # leaf hash of the entry holding each index, by index
        self.seen = bytearray()  # 1 where an entry holds that index
        self.order = array("q")  # the index at each stream position; -1 where the entry was set aside
        self.out_of_order = False
        # Receipts whose signature check is put off (check_all_receipts=False), by arrival.
        self.deferred_index = array("q")
        self.deferred_time = array("Q")
        self.deferred_sig = bytearray()
        self.deferred_key: list[str] = []  # the same str object for every receipt of one key
        self.unreceipted = array("q")  # indices of entries with no receipt of their own

    def add(self, finding: Finding) -> None:
        self.report.counts[finding.kind] += 1
        if len(self.report.findings) < self.max_findings:
            self.report.findings.append(finding)
        else:
            self.report.findings_truncated = True

    def _other_key(self, claimed: str) -> str:
        if self.keys.get(claimed) is not None:
            return ""
        return f" (claims key {claimed}, not one of the log's keys: {', '.join(self.keys.ids())})"

    # --- heads: signatures first, since only correctly signed heads define the log's size

    def check_head_signatures(self, heads: Iterable[SignedTreeHead]) -> list[SignedTreeHead]:
        valid = []
        for signed in heads:
            self.report.heads_checked += 1
            if verify_head(signed, self.keys):
                valid.append(signed)
            else:
                message = f"{_head(signed.head)}: bad signature{self._other_key(signed.key_id)}"
                self.add(Finding(FindingKind.HEAD_BAD_SIGNATURE, message, head=signed.head))
        return valid

    # --- the one pass over the entries

    def read(
        self,
        entries: Iterable[tuple[int, bytes, bytes, EntryReceipt | None]],
        signed_size: int,
        check_all_receipts: bool,
        progress: Callable[[int], None] | None,
        progress_every: int,
        max_gap: int,
    ) -> None:
        leaves, seen, order = self.leaves, self.seen, self.order
        leaf_state = hashlib.sha256(LEAF_PREFIX)
        order_append = order.append
        slots = 0  # == len(seen)
        last = -1  # index of the previous entry placed
        position = -1
        for position, (index, data, stored, receipt) in enumerate(entries):
            if progress is not None and position and position % progress_every == 0:
                progress(position)  # entries read so far
            h = leaf_state.copy()
            h.update(data)
            leaf = h.digest()
            if index == slots:  # the common case: the next index, in order
                leaves += leaf
                seen.append(1)
                slots += 1
            else:
                placed = self._place(position, index, leaf, slots, signed_size, max_gap)
                if placed is None:
                    order_append(-1)
                    continue
                slots = placed
            if index < last:
                self.out_of_order = True
            last = index
            order_append(index)

            if stored != leaf:
                self.add(
                    Finding(
                        FindingKind.STORED_HASH_MISMATCH,
                        f"entry {index}: stored leaf hash does not match its content",
                        index=index,
                        position=position,
                    )
                )
            if receipt is None:
                # Entries appended since issue 19 carry no receipt of their own: a signed head
                # whose root is recomputed from the entries vouches for them (check_unreceipted).
                self.unreceipted.append(index)
            elif (
                check_all_receipts
                or receipt.index != index
                or receipt.leaf_hash != leaf
                or len(receipt.signature) != SIGNATURE_SIZE
                or not 0 <= receipt.timestamp_ms <= _MAX_U64
            ):
                self._check_receipt(position, index, leaf, receipt)
            else:
                self.deferred_index.append(index)
                self.deferred_time.append(receipt.timestamp_ms)
                self.deferred_sig += receipt.signature
                self.deferred_key.append(receipt.key_id)
        self.report.entries_read = position + 1
        if progress is not None:
            progress(position + 1)

    def _place(self, position: int, index: int, leaf: bytes, slots: int, signed_size: int, max_gap: int) -> int | None:
        """Put an entry that is not simply the next index; returns the new slot count, or None if set aside."""
        if index < 0 or index > max(slots, signed_size) + max_gap:
            self.add(
                Finding(
                    FindingKind.BAD_INDEX,
                    f"entry at position {position} carries index {index!r}, outside the log",
                    position=position,
                )
            )
            return None
        if index < slots and self.seen[index]:
            self.add(
                Finding(
                    FindingKind.DUPLICATE,
                    f"entry at position {position} carries index {index}, which an earlier entry already holds",
                    index=index,
                    position=position,
                )
            )
            return None
        if index >= slots:  # skipping over indices not (yet) seen
            gap = index - slots
            self.leaves += _PLACEHOLDER * gap + leaf
            self.seen += bytes(gap) + b"\x01"
            return index + 1
        o = index * HASH_SIZE  # filling a gap left earlier: this entry arrived out of order
        self.leaves[o : o + HASH_SIZE] = leaf
        self.seen[index] = 1
        return slots

    def _check_receipt(self, position: int | None, index: int, leaf: bytes, receipt: EntryReceipt) -> None:
        self.report.receipts_verified += 1
        if not verify_receipt(receipt, self.keys):
            message = f"entry {index}: receipt signature is not valid{self._other_key(receipt.key_id)}"
            self.add(Finding(FindingKind.RECEIPT_INVALID, message, index=index, position=position))
        elif receipt.leaf_hash != leaf:
            elsewhere = "" if receipt.index == index else f" (the receipt is for entry {receipt.index})"
            message = f"entry {index}: content does not match its receipt{elsewhere}"
            self.add(Finding(FindingKind.ALTERED, message, index=index, position=position))
        elif receipt.index != index:
            message = f"entry {index}: carries the receipt of entry {receipt.index} (moved or reordered)"
            self.add(Finding(FindingKind.MOVED, message, index=index, position=position))

    # --- the tree and the heads

    def build_tree(self, signed_size: int) -> MerkleLog:
        size = max(signed_size, len(self.seen))
        missing_tail = size - len(self.seen)
        if missing_tail:  # the newest entries are gone, but a signed head says they existed
            self.leaves += _PLACEHOLDER * missing_tail
            self.seen += bytes(missing_tail)
        self.report.log_size = size
        self.tree = MerkleLog(MemoryNodeStore.from_leaf_hashes(self.leaves))
        return self.tree

    def check_heads(self, valid_heads: Sequence[SignedTreeHead], tree: MerkleLog) -> None:
        by_time = sorted(valid_heads, key=lambda s: (s.head.timestamp_ms, s.head.size))
        matched: set[TreeHead] = set()
        for signed in by_time:
            head = signed.head
            if tree.root(head.size) == head.root:
                matched.add(head)
                self.report.authenticated_size = max(self.report.authenticated_size, head.size)
            else:
                self.add(Finding(FindingKind.HEAD_ROOT_MISMATCH, f"{_head(head)}: root mismatch", head=head))

        # What the heads say about each other, whatever the entries now hold.
        first_of_size: dict[int, TreeHead] = {}
        largest: TreeHead | None = None
        previous: TreeHead | None = None
        for signed in by_time:
            head = signed.head
            twin = first_of_size.setdefault(head.size, head)
            if twin.root != head.root:
                message = f"{_head(head)}: root differs from the head of the same size signed at {_time(twin)}"
                self.add(Finding(FindingKind.HEAD_FORK, message, head=head, earlier_head=twin))
            if largest is not None and head.size < largest.size:
                message = f"{_head(head)}: smaller than {_head(largest)}, signed earlier"
                self.add(Finding(FindingKind.HEAD_ROLLBACK, message, head=head, earlier_head=largest))
            elif previous is not None and previous in matched and head in matched and previous.size < head.size:
                # Both roots were recomputed from the entries; the proof between them is the
                # one this log would serve, checked the way an auditor checks it.
                proof = tree.consistency_proof(previous.size, head.size)
                self.report.consistency_checked += 1
                if not verify_consistency(previous.size, head.size, previous.root, head.root, proof):
                    message = f"{_head(previous)} and {_head(head)}: consistency proof fails"
                    self.add(Finding(FindingKind.HEADS_INCONSISTENT, message, head=head, earlier_head=previous))
            if largest is None or head.size > largest.size:
                largest = head
            previous = head

    def check_trusted(self, trusted: Sequence[TreeHead], tree: MerkleLog, held: int, signed_size: int) -> None:
        for head in trusted:
            log_size = max(held, signed_size)
            if head.size > log_size:
                message = (
                    f"the log holds {log_size} entries but a head of size {head.size} was verified before "
                    f"({_time(head)}): entries {log_size} to {head.size - 1} missing (truncated)"
                )
                self.add(Finding(FindingKind.TRUNCATED, message, index=log_size, last_index=head.size - 1, head=head))
            elif tree.root(head.size) != head.root:
                message = f"the log's first {head.size} entries no longer give the root of the head verified before"
                self.add(Finding(FindingKind.TRUSTED_HEAD_MISMATCH, message, head=head))

    def verify_deferred_receipts(self) -> None:
        """Receipts put off while reading: needed only above the size a matching head vouches for."""
        vouched = self.report.authenticated_size
        leaves = self.leaves
        for k, index in enumerate(self.deferred_index):
            if index < vouched:
                continue
            o = index * HASH_SIZE
            leaf = bytes(leaves[o : o + HASH_SIZE])
            signature = bytes(self.deferred_sig[k * SIGNATURE_SIZE : (k + 1) * SIGNATURE_SIZE])
            receipt = EntryReceipt(index, leaf, self.deferred_time[k], self.deferred_key[k], signature)
            self._check_receipt(None, index, leaf, receipt)  # its stream position was not kept

    def check_unreceipted(self) -> None:
        """Entries without a receipt above every matching head: vouched for by nothing signed.

        Below a matching head they are authenticated by its root. Between that and the
        largest signed size a head covering them no longer matches: if no entry is named
        for it already (altered stored hash, missing, duplicated ...), one of them was
        rewritten together with its leaf hash, and without per-entry signatures the runs of
        such entries are named, not the one. On the unsigned tail (appended since the
        newest head) they are counted, not reported: the next head covers them."""
        vouched, signed = self.report.authenticated_size, self.signed_size
        explained = any(self.report.counts[kind] for kind in _EXPLAINS_A_HEAD_MISMATCH)
        start = last = -2
        for index in sorted(self.unreceipted):
            if index < vouched:
                continue
            if index >= signed:
                self.report.awaiting_head += 1
            elif not explained:
                if index != last + 1:
                    self._no_receipt_run(start, last)
                    start = index
                last = index
        self._no_receipt_run(start, last)

    def _no_receipt_run(self, start: int, last: int) -> None:
        if start < 0:
            return
        which = f"entry {start}" if start == last else f"entries {start} to {last}"
        message = f"{which}: no receipt, and no signed head whose root matches covers them (one was rewritten)"
        self.add(Finding(FindingKind.NO_RECEIPT, message, index=start, last_index=last))

    # --- order and gaps

    def check_order(self) -> None:
        """Name the fewest entries whose removal leaves the stream in index order."""
        if not self.out_of_order:
            return
        for position in _outside_longest_increasing(self.order):
            index = self.order[position]
            message = f"entry at position {position} carries index {index}"
            self.add(Finding(FindingKind.REORDERED, message, index=index, position=position))

    def report_missing(self) -> None:
        seen, start = self.seen, self.seen.find(0)
        while start != -1:
            end = seen.find(1, start)
            end = len(seen) if end == -1 else end
            last, count = end - 1, end - start
            message = f"entry {start} missing" if count == 1 else f"entries {start} to {last} missing ({count})"
            self.report.missing_entries += count
            self.add(Finding(FindingKind.MISSING, message, index=start, last_index=last))
            start = seen.find(0, end)

    def finish(self) -> VerificationReport:
        def key(f: Finding) -> tuple[int, int, int, int]:
            if f.head is not None:  # heads after entries, by size then time
                return (1, f.head.size, f.head.timestamp_ms, 0)
            at = f.index if f.index is not None else f.position if f.position is not None else -1
            return (0, at, f.position if f.position is not None else -1, 0)

        self.report.findings.sort(key=key)
        return self.report


def _outside_longest_increasing(order: Sequence[int]) -> list[int]:
    """Positions (ignoring -1) not on one longest strictly increasing subsequence of ``order``."""
    tails: list[int] = []  # tails[k]: position ending the best increasing run of length k+1
    tail_values: list[int] = []
    back = array("q", [-1]) * len(order)
    for position, value in enumerate(order):
        if value < 0:
            continue
        lo, hi = 0, len(tail_values)
        while lo < hi:
            mid = (lo + hi) // 2
            if tail_values[mid] < value:
                lo = mid + 1
            else:
                hi = mid
        if lo:
            back[position] = tails[lo - 1]
        if lo == len(tails):
            tails.append(position)
            tail_values.append(value)
        else:
            tails[lo] = position
            tail_values[lo] = value
    keep = bytearray(len(order))
    at = tails[-1] if tails else -1
    while at != -1:
        keep[at] = 1
        at = back[at]
    return [p for p, value in enumerate(order) if value >= 0 and not keep[p]]


def _time(head: TreeHead) -> str:
    try:
        moment = datetime.fromtimestamp(head.timestamp_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{head.timestamp_ms} ms after the epoch"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _head(head: TreeHead) -> str:
    return f"tree head size {head.size} signed at {_time(head)}"
