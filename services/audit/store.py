"""The log in PostgreSQL (SQL only): appends, tree heads, proofs, searches, checkpoints and the export stream.

Appends come in batches and are serialised by one transaction-scoped advisory lock, so
sequence numbers are gapless (a rolled-back batch leaves no hole: nobody else took its
numbers) and the tree grows one leaf at a time exactly as ``merkle.MerkleLog.append``
grows it: the new leaf plus, for each trailing 1-bit of the old size, the perfect subtree
it completes, computed in memory for the whole batch and written with one COPY. The right
edge of the tree is read from ``tree_nodes`` once per batch (at most 64 rows by primary
key) rather than cached, so a rolled-back transaction can never leave a cache ahead of
the database. Nothing is signed per entry: signed tree heads are made apart from appends
(``application/tree_heads.py``), and an entry's receipt is its index plus a head covering it
and the inclusion proof to that head, served on request. Entries appended before issue 19
keep the Ed25519 receipts they were given.

Proofs and roots read O(log n) stored nodes and fold them with ``merkle.fold``, the same
recipe ``MerkleLog`` follows over its in-memory store.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from homeroom.storage import BIGINT_MAX, Connection
from homeroom.tlog.merkle import (
    EMPTY_ROOT,
    NodeId,
    consistency_ranges,
    fold,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    range_nodes,
)
from homeroom.tlog.signing import EntryReceipt, SignedTreeHead, TreeHead
from services.audit.entries import EntryDraft, canonical_bytes, draft_from_row

APPEND_LOCK = "homeroom.audit.append"
_ENTRY_COLUMNS = """seq, event_id, topic, kind, occurred_at, recorded_at_ms,
    requester_org, requester_client, requester_person, requester_role,
    recipient_org, recipient_client, recipient_person, recipient_role,
    student_key, district_id, elements, purpose, legal_basis, agreement_id, decision_id, policy_version,
    redisclosure_parties, channel, record_required, details, leaf_hash, receipt_signature, key_id"""


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int
    leaf_hash: bytes


async def act_as_writer(conn: Connection, role: str) -> None:
    """Drop to the writer role for the rest of this transaction (SELECT and INSERT only)."""
    if role:
        await conn.execute(f'SET LOCAL ROLE "{role}"')


async def tree_size(conn: Connection | asyncpg.Pool) -> int:
    size: int = await conn.fetchval("SELECT coalesce(max(idx) + 1, 0) FROM tree_nodes WHERE level = 0")
    return size


async def _nodes(conn: Connection | asyncpg.Pool, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
    if not ids:
        return {}
    rows = await conn.fetch(
        # LATERAL: one primary-key lookup per wanted node (a plain join may scan the table).
        """SELECT want.level, want.idx, n.hash FROM unnest($1::smallint[], $2::bigint[]) AS want(level, idx)
           CROSS JOIN LATERAL (SELECT hash FROM tree_nodes t WHERE t.level = want.level AND t.idx = want.idx) n""",
        [level for level, _ in ids],
        [index for _, index in ids],
    )
    found = {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}
    missing = [i for i in ids if i not in found]
    if missing:
        raise LookupError(f"tree nodes missing from the store: {missing[:5]}")
    return found


_COLUMNS = [c.strip() for c in _ENTRY_COLUMNS.split(",")][:-2]  # appends leave the legacy receipt NULL


def entry_row(seq: int, draft: EntryDraft, recorded_at_ms: int, leaf: bytes) -> tuple[Any, ...]:
    """An entry's row in `_COLUMNS` order, as `append_many` copies it (the bulk loader of
    bench/incident_scope.py adds placeholder receipt columns after it)."""
    r, q = draft.requester, draft.recipient
    return (
        seq,
        draft.event_id,
        draft.topic,
        draft.kind,
        draft.occurred_at,
        recorded_at_ms,
        r.organization,
        r.client_id,
        r.person,
        r.role,
        q.organization,
        q.client_id,
        q.person,
        q.role,
        draft.student_key,
        draft.district_id,
        list(draft.elements),
        draft.purpose,
        draft.legal_basis,
        draft.agreement_id,
        draft.decision_id,
        draft.policy_version,
        list(draft.redisclosure_parties),
        draft.channel,
        draft.record_required,
        json.dumps(dict(draft.details)),
        leaf,
    )


async def append_many(conn: Connection, drafts: Sequence[EntryDraft], now_ms: int) -> list[Appended | None]:
    """Append drafts in order in the caller's transaction; None for each whose event is
    already in the log (or earlier in `drafts`).

    One batch costs the same few statements whatever its size: the append lock, the tree's
    size and the events already logged (read after the lock, so nobody can have appended
    since), its right edge, then one COPY of the entries and one of the new tree nodes,
    computed in memory as ``merkle.MerkleLog.append`` grows the tree.
    """
    if not drafts:
        return []
    await lock_appends(conn)
    row = await conn.fetchrow(
        """SELECT (SELECT coalesce(max(idx) + 1, 0) FROM tree_nodes WHERE level = 0) AS size,
                  array(SELECT event_id FROM entries WHERE event_id = ANY($1::text[])) AS seen""",
        [d.event_id for d in drafts],
    )
    assert row is not None
    size: int = row["size"]
    seen = set(row["seen"])
    edge_ids = range_nodes(0, size) if size else []
    stored = await _nodes(conn, edge_ids)
    edge = [stored[i] for i in edge_ids]
    entries: list[tuple[Any, ...]] = []
    nodes: list[tuple[int, int, bytes]] = []
    out: list[Appended | None] = []
    for draft in drafts:
        if draft.event_id in seen:
            out.append(None)
            continue
        seen.add(draft.event_id)
        leaf = leaf_hash(canonical_bytes(size, now_ms, draft))
        # As MerkleLog.append: each trailing 1-bit of the old size closes a perfect subtree.
        nodes.append((0, size, leaf))
        h, level, i = leaf, 0, size
        while i & 1:
            h = node_hash(edge.pop(), h)
            level += 1
            i >>= 1
            nodes.append((level, i, h))
        edge.append(h)
        entries.append(entry_row(size, draft, now_ms, leaf))
        out.append(Appended(size, leaf))
        size += 1
    if entries:
        await conn.copy_records_to_table("entries", records=entries, columns=_COLUMNS)
        await conn.copy_records_to_table("tree_nodes", records=nodes, columns=["level", "idx", "hash"])
    return out


# --- roots, proofs and heads --------------------------------------------------------------


async def _range_hashes(conn: Connection | asyncpg.Pool, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    pieces = [range_nodes(a, b) for a, b in ranges]
    stored = await _nodes(conn, sorted({n for p in pieces for n in p}))
    return [fold([stored[n] for n in p]) for p in pieces]


async def leaf(conn: Connection | asyncpg.Pool, index: int) -> bytes:
    return (await _nodes(conn, [(0, index)]))[(0, index)]


async def root(conn: Connection | asyncpg.Pool, size: int) -> bytes:
    if size == 0:
        return EMPTY_ROOT
    return (await _range_hashes(conn, [(0, size)]))[0]


async def inclusion_proof(conn: Connection | asyncpg.Pool, index: int, size: int) -> list[bytes]:
    return await _range_hashes(conn, inclusion_ranges(index, size))


async def consistency_proof(conn: Connection | asyncpg.Pool, first: int, second: int) -> list[bytes]:
    return await _range_hashes(conn, consistency_ranges(first, second))


async def lock_appends(conn: Connection) -> None:
    """Take the append lock for the rest of the caller's transaction (appends and heads serialise on it)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", APPEND_LOCK)


async def insert_head(conn: Connection, signed: SignedTreeHead) -> None:
    await conn.execute(
        "INSERT INTO tree_heads (size, root, timestamp_ms, key_id, signature) VALUES ($1, $2, $3, $4, $5)",
        signed.head.size,
        signed.head.root,
        signed.head.timestamp_ms,
        signed.key_id,
        signed.signature,
    )


def _head(row: asyncpg.Record) -> SignedTreeHead:
    return SignedTreeHead(
        TreeHead(row["size"], bytes(row["root"]), row["timestamp_ms"]), row["key_id"], bytes(row["signature"])
    )


async def latest_head(conn: Connection | asyncpg.Pool) -> SignedTreeHead | None:
    row = await conn.fetchrow(
        """SELECT size, root, timestamp_ms, key_id, signature FROM tree_heads
           ORDER BY timestamp_ms DESC, size DESC, id DESC LIMIT 1"""
    )
    return None if row is None else _head(row)


async def heads(conn: Connection | asyncpg.Pool) -> list[SignedTreeHead]:
    rows = await conn.fetch("SELECT size, root, timestamp_ms, key_id, signature FROM tree_heads ORDER BY id")
    return [_head(r) for r in rows]


# --- reading entries ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredEntry:
    seq: int
    recorded_at_ms: int
    draft: EntryDraft
    leaf_hash: bytes
    receipt: EntryReceipt | None  # only on entries appended before issue 19

    def canonical(self) -> bytes:
        return canonical_bytes(self.seq, self.recorded_at_ms, self.draft)


def _entry(row: asyncpg.Record) -> StoredEntry:
    leaf = bytes(row["leaf_hash"])
    signature = row["receipt_signature"]
    receipt = (
        None
        if signature is None
        else EntryReceipt(row["seq"], leaf, row["recorded_at_ms"], row["key_id"], bytes(signature))
    )
    return StoredEntry(row["seq"], row["recorded_at_ms"], draft_from_row(row), leaf, receipt)


class EntryFilter(BaseModel):
    """The log search's filters, declared once: GET /v1/entries takes them as its query
    parameters (`from` and `to` for since and until) and `_where` turns them into SQL."""

    model_config = ConfigDict(frozen=True)

    student_key: str | None = None
    district_id: str | None = None
    recipient: str | None = Field(default=None, description="recipient organisation")
    agreement_id: str | None = None
    legal_basis: str | None = None
    purpose: str | None = None
    element: str | None = None
    kind: str | None = None
    since: datetime | None = Field(default=None, alias="from", description="occurred at or after (ISO 8601)")
    until: datetime | None = Field(default=None, alias="to", description="occurred before (ISO 8601)")
    # A keyset cursor: entries with seq above this.
    after: int | None = Field(default=None, ge=-1, le=BIGINT_MAX, description="the next_after of the previous page")


def _where(f: EntryFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.replace("?", f"${len(args)}"))

    for column, value in (
        ("student_key", f.student_key),
        ("district_id", f.district_id),
        ("recipient_org", f.recipient),
        ("agreement_id", f.agreement_id),
        ("legal_basis", f.legal_basis),
        ("purpose", f.purpose),
        ("kind", f.kind),
    ):
        if value is not None:
            add(f"{column} = ?", value)
    if f.element is not None:
        add("elements @> ARRAY[?]::text[]", f.element)
    if f.since is not None:
        add("occurred_at >= ?", f.since)
    if f.until is not None:
        add("occurred_at < ?", f.until)
    if f.after is not None:
        add("seq > ?", f.after)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


async def search(conn: Connection | asyncpg.Pool, f: EntryFilter, limit: int) -> list[StoredEntry]:
    where, args = _where(f)
    rows = await conn.fetch(
        f"SELECT {_ENTRY_COLUMNS} FROM entries{where} ORDER BY seq LIMIT ${len(args) + 1}",  # noqa: S608 (placeholders only)
        *args,
        limit,
    )
    return [_entry(r) for r in rows]


async def get_entry(conn: Connection | asyncpg.Pool, seq: int) -> StoredEntry | None:
    row = await conn.fetchrow(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE seq = $1", seq)  # noqa: S608
    return None if row is None else _entry(row)


async def entries_after(conn: Connection | asyncpg.Pool, after: int, limit: int) -> list[StoredEntry]:
    """One keyset page: entries with seq above ``after``, in order."""
    rows = await conn.fetch(
        f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE seq > $1 ORDER BY seq LIMIT $2",  # noqa: S608
        after,
        limit,
    )
    return [_entry(r) for r in rows]


async def iter_entries(pool: asyncpg.Pool, batch: int) -> AsyncIterator[list[StoredEntry]]:
    """Every entry in sequence order, in batches (keyset pages: no long transaction)."""
    after = -1
    while True:
        page = await entries_after(pool, after, batch)
        if not page:
            return
        yield page
        after = page[-1].seq


# --- selections for breach scoping (read-only; services/audit/application/selection.py) -----

SELECTION_COLUMNS = _ENTRY_COLUMNS
# One agreement's (or organisation's) disclosures in log order: the index on (agreement_id, seq)
# or (recipient_org, seq) yields them already sorted, so a million rows stream without a sort.
_SELECT_BY = {
    "agreement": f"""SELECT {_ENTRY_COLUMNS} FROM entries
        WHERE agreement_id = $1 AND seq < $2 AND kind = 'disclosure_recorded'
          AND occurred_at < $3 AND ($4::timestamptz IS NULL OR occurred_at >= $4)
        ORDER BY seq""",  # noqa: S608 (constant)
    "organization": f"""SELECT {_ENTRY_COLUMNS} FROM entries
        WHERE recipient_org = $1 AND seq < $2 AND kind = 'disclosure_recorded'
          AND occurred_at < $3 AND ($4::timestamptz IS NULL OR occurred_at >= $4)
        ORDER BY seq""",  # noqa: S608 (constant)
}


async def stream_disclosures(
    conn: Connection,
    by: str,
    value: str,
    tree_size: int,
    until: datetime,
    since: datetime | None,
    prefetch: int = 2000,
) -> AsyncIterator[StoredEntry]:
    """Disclosures to one agreement (``by="agreement"``) or organisation, in log order, through a
    server-side cursor (call inside a transaction)."""
    async for row in conn.cursor(_SELECT_BY[by], value, tree_size, until, since, prefetch=prefetch):
        yield _entry(row)


async def key_destructions(
    conn: Connection,
    tree_size: int,
    before: datetime,
    agreement_ids: Sequence[str],
    student_keys: Sequence[str],
    chunk: int = 5000,
) -> list[StoredEntry]:
    """Key destructions (keys.v1 `data_keys_destroyed`) of these agreements or students recorded
    before ``before``, in log order."""
    found: dict[int, StoredEntry] = {}
    base = f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE kind = 'data_keys_destroyed' AND seq < $1 AND occurred_at < $2"  # noqa: S608
    if agreement_ids:
        for row in await conn.fetch(
            base + " AND agreement_id = ANY($3::text[])", tree_size, before, list(agreement_ids)
        ):
            found[row["seq"]] = _entry(row)
    keys = sorted(set(student_keys))
    for start in range(0, len(keys), chunk):
        rows = await conn.fetch(
            base + " AND student_key = ANY($3::text[])", tree_size, before, keys[start : start + chunk]
        )
        for row in rows:
            found[row["seq"]] = _entry(row)
    return [found[seq] for seq in sorted(found)]


async def subtree_hashes(
    conn: Connection | asyncpg.Pool, ranges: Sequence[tuple[int, int]], chunk: int = 50_000
) -> list[bytes]:
    """MTH of each leaf range (each a subtree of the RFC tree), read from the stored nodes in chunks."""
    out: list[bytes] = []
    for start in range(0, len(ranges), chunk):
        out += await _range_hashes(conn, ranges[start : start + chunk])
    return out


async def head_of_size(conn: Connection | asyncpg.Pool, size: int) -> SignedTreeHead | None:
    row = await conn.fetchrow(
        """SELECT size, root, timestamp_ms, key_id, signature FROM tree_heads WHERE size = $1
           ORDER BY timestamp_ms DESC, id DESC LIMIT 1""",
        size,
    )
    return None if row is None else _head(row)


async def checkpoint_of_size(conn: Connection | asyncpg.Pool, size: int, root: bytes) -> str | None:
    """The witness-cosigned checkpoint note of this tree (None when no witness cosigned it)."""
    note: str | None = await conn.fetchval(
        "SELECT note FROM checkpoints WHERE size = $1 AND root = $2 ORDER BY id DESC LIMIT 1", size, root
    )
    return note


async def disclosure_counts(conn: Connection | asyncpg.Pool, district_id: str, since: datetime) -> list[asyncpg.Record]:
    """Recorded disclosures of a district's students since `since`, by recipient and purpose
    (the district's transparency page, issue 24): counts only, never a student."""
    return list(
        await conn.fetch(
            """SELECT recipient_org AS recipient, purpose, count(*) AS count FROM entries
               WHERE district_id = $1 AND kind = 'disclosure_recorded' AND record_required AND occurred_at >= $2
               GROUP BY recipient_org, purpose ORDER BY count(*) DESC, recipient_org, purpose""",
            district_id,
            since,
        )
    )


# --- witnessed checkpoints (services/audit/application/witnessing.py) -------------------------


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str
    witness: str
    cosigned_at: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "root": self.root.hex()}


async def last_cosigned_size(conn: Connection | asyncpg.Pool, witness: str) -> int:
    size = await conn.fetchval("SELECT max(size) FROM checkpoints WHERE witness = $1", witness)
    return int(size or 0)


async def insert_checkpoint(conn: Connection | asyncpg.Pool, checkpoint: StoredCheckpoint) -> None:
    await conn.execute(
        "INSERT INTO checkpoints (size, root, note, witness, cosigned_at) VALUES ($1, $2, $3, $4, $5)",
        checkpoint.size,
        checkpoint.root,
        checkpoint.note,
        checkpoint.witness,
        checkpoint.cosigned_at,
    )


async def latest_checkpoint(conn: Connection | asyncpg.Pool) -> StoredCheckpoint | None:
    row = await conn.fetchrow(
        "SELECT size, root, note, witness, cosigned_at FROM checkpoints ORDER BY size DESC, id DESC LIMIT 1"
    )
    if row is None:
        return None
    return StoredCheckpoint(row["size"], bytes(row["root"]), row["note"], row["witness"], row["cosigned_at"])


# --- checks of the stored tree (services/audit/application/verification.py) ------------------


async def bad_tree_nodes(conn: Connection | asyncpg.Pool, limit: int) -> list[tuple[int, int]]:
    """(level, index) of stored nodes that are not what their children (or their entry) make, in SQL, one pass."""
    rows = await conn.fetch(
        """SELECT level, idx FROM (
               SELECT p.level, p.idx FROM tree_nodes p
               LEFT JOIN tree_nodes l ON l.level = p.level - 1 AND l.idx = 2 * p.idx
               LEFT JOIN tree_nodes r ON r.level = p.level - 1 AND r.idx = 2 * p.idx + 1
               WHERE p.level >= 1 AND (l.hash IS NULL OR r.hash IS NULL
                                       OR p.hash <> sha256('\\x01'::bytea || l.hash || r.hash))
               UNION ALL
               SELECT t.level, t.idx FROM tree_nodes t LEFT JOIN entries e ON e.seq = t.idx
               WHERE t.level = 0 AND e.leaf_hash IS DISTINCT FROM t.hash
           ) bad ORDER BY level, idx LIMIT $1""",
        limit,
    )
    return [(r["level"], r["idx"]) for r in rows]


async def events_present(conn: Connection | asyncpg.Pool, event_ids: Sequence[str]) -> list[str]:
    """Which of these event (disclosure) ids the log holds."""
    rows = await conn.fetch("SELECT event_id FROM entries WHERE event_id = ANY($1::text[])", sorted(set(event_ids)))
    return [r["event_id"] for r in rows]
