"""Select a recipient's disclosures from the log and prove them all at once (read-only).

The breach-scoping use case (`POST /v1/selections/disclosures`; contract and line format:
`homeroom/contracts/disclosure_selection.py`). Everything is read in one REPEATABLE READ,
read-only transaction, so the entries, the tree nodes and the head agree; the append path
is not touched. Disclosures stream out in log order through server-side cursors (one per
agreement or organisation, merged), so memory holds the selected indices and student keys,
never the entries. Then the key destructions of those students or agreements recorded
before the exposure began, then one multiproof over every entry sent.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator
from dataclasses import dataclass

from homeroom.contracts import disclosure_selection as contract
from homeroom.problems import FieldError, Problem, problem_type
from homeroom.tlog.merkle import multiproof_nodes, subtree_range
from homeroom.tlog.signing import Keyring, SignedTreeHead
from services.audit import store
from services.audit.entries import entry_object
from services.audit.state import AuditRuntime


@dataclass(frozen=True, slots=True)
class Prepared:
    """What the stream proves against, settled before the first byte is sent (so a refusal is
    still a clean problem+json answer)."""

    selection: contract.DisclosureSelection
    head: SignedTreeHead
    checkpoint: str | None


async def prepare(runtime: AuditRuntime, selection: contract.DisclosureSelection) -> Prepared:
    """The signed head to prove against: the one of `tree_size`, else the latest."""
    if selection.tree_size is None:
        head = await store.latest_head(runtime.pool)
        if head is None:
            raise Problem(
                409,
                "No signed tree head yet",
                "the log has not signed a tree head yet; sign one (POST /v1/tree-heads) first",
                type=problem_type("no-tree-head"),
            )
    else:
        head = await store.head_of_size(runtime.pool, selection.tree_size)
        if head is None:
            raise Problem.validation(
                [
                    FieldError(
                        "tree_size",
                        "proof.no_signed_head",
                        f"no signed tree head has size {selection.tree_size}; sign one or omit tree_size",
                    )
                ]
            )
    checkpoint = await store.checkpoint_of_size(runtime.pool, head.head.size, head.head.root)
    return Prepared(selection, head, checkpoint)


async def stream(runtime: AuditRuntime, prepared: Prepared, keys: Keyring, origin: str) -> AsyncIterator[str]:
    """The selection as JSON Lines (see the contract): header, entries, destructions, multiproof, end."""
    selection, head = prepared.selection, prepared.head
    size = head.head.size
    yield contract.header_line(
        tree_size=size,
        root=head.head.root,
        head=head.to_dict(),
        checkpoint=prepared.checkpoint,
        origin=origin,
        public_keys=keys.pems(),
    )
    indices: list[int] = []
    students: set[str] = set()
    async with runtime.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        sources = [("agreement", a) for a in sorted(set(selection.agreement_ids))]
        sources += [("organization", o) for o in sorted(set(selection.organizations))]
        streams = [
            store.stream_disclosures(conn, by, value, size, selection.until, selection.since) for by, value in sources
        ]
        previous = -1
        async for entry in _merge(streams):
            if entry.seq == previous:  # named twice (its agreement and its organisation)
                continue
            previous = entry.seq
            indices.append(entry.seq)
            students.add(entry.draft.student_key)
            yield contract.entry_line(
                "disclosure", entry.seq, entry.leaf_hash, entry_object(entry.seq, entry.recorded_at_ms, entry.draft)
            )
        destroyed = []
        if selection.destroyed_before is not None and indices:
            destroyed = await store.key_destructions(
                conn, size, selection.destroyed_before, selection.agreement_ids, sorted(students - {""})
            )
        for entry in destroyed:
            yield contract.entry_line(
                "destruction", entry.seq, entry.leaf_hash, entry_object(entry.seq, entry.recorded_at_ms, entry.draft)
            )
        proven = sorted(set(indices) | {e.seq for e in destroyed})
        hashes: list[bytes] = []
        if proven:
            nodes = multiproof_nodes(proven, size)
            hashes = await store.subtree_hashes(conn, [subtree_range(n, size) for n in nodes])
    for line in contract.proof_lines(hashes):
        yield line
    yield contract.end_line(len(indices) + len(destroyed), len(hashes))


async def _merge(streams: list[AsyncIterator[store.StoredEntry]]) -> AsyncIterator[store.StoredEntry]:
    """Merge streams each in log order into one in log order (duplicates kept adjacent)."""
    if len(streams) == 1:
        async for entry in streams[0]:
            yield entry
        return
    heap: list[tuple[int, int, store.StoredEntry]] = []
    for n, source in enumerate(streams):
        first = await anext(source, None)
        if first is not None:
            heap.append((first.seq, n, first))
    heapq.heapify(heap)
    while heap:
        _, n, entry = heapq.heappop(heap)
        yield entry
        following = await anext(streams[n], None)
        if following is not None:
            heapq.heappush(heap, (following.seq, n, following))
