"""Answer proofs: what a verifier checks the log with, hashes and signatures only.

Use cases:
- `entry_with_proof`: one entry, the latest signed head and the entry's inclusion proof to it
  (the entry's receipt).
- `latest_head`: the latest signed tree head with the log's public key.
- `public_keys`: the signing key's id and every key (current and retired) by id.
- `inclusion`: the audit path of entry `index` in the tree of `tree_size`.
- `consistency`: the proof that the tree of `first` entries is a prefix of the tree of `second`;
  a `first` larger than the log is a truncation, counted and answered as such.
"""

from __future__ import annotations

from typing import Any

from homeroom.problems import FieldError, Problem, problem_type
from services.audit import metrics, store
from services.audit.entries import entry_object
from services.audit.state import AuditRuntime


def invalid(field: str, rule: str, message: str) -> Problem:
    return Problem.validation([FieldError(field, rule, message)])


def entry_json(entry: store.StoredEntry) -> dict[str, Any]:
    body = entry_object(entry.seq, entry.recorded_at_ms, entry.draft)
    body["leaf_hash"] = entry.leaf_hash.hex()
    # A receipt signed per entry exists only for entries appended before issue 19; the
    # receipt of every entry is the signed head and inclusion proof served beside it.
    body["receipt"] = None if entry.receipt is None else entry.receipt.to_dict()
    return body


def not_found(title: str, detail: str) -> Problem:
    return Problem(404, title, detail, type=problem_type("not-found"))


async def entry_with_proof(runtime: AuditRuntime, seq: int) -> dict[str, Any]:
    entry = await store.get_entry(runtime.pool, seq)
    if entry is None:
        raise not_found("No such entry", f"the log has no entry {seq}")
    head = await store.latest_head(runtime.pool)
    proof: list[str] | None = None
    if head is not None and seq < head.head.size:
        proof = [h.hex() for h in await store.inclusion_proof(runtime.pool, seq, head.head.size)]
    return {
        "entry": entry_json(entry),
        "tree_head": None if head is None else head.to_dict(),
        "inclusion_proof": proof,
        "included": proof is not None,
        "note": None if proof is not None else "not yet covered by a signed tree head; ask again after the next one",
    }


async def latest_head(runtime: AuditRuntime) -> dict[str, Any]:
    head = await store.latest_head(runtime.pool)
    if head is None:
        raise not_found("No tree head yet", "the log has not signed a tree head yet")
    return {**head.to_dict(), "public_key": runtime.state.signer.public_key_pem().decode()}


def public_keys(runtime: AuditRuntime) -> dict[str, Any]:
    return {"signing_key_id": runtime.state.signer.key_id, "keys": runtime.state.keyring.pems()}


async def _check_size(runtime: AuditRuntime, field: str, size: int) -> None:
    current = await store.tree_size(runtime.pool)
    if size > current:
        raise invalid(field, "proof.tree_size_too_large", f"the log holds {current} entries; {size} is more")


async def inclusion(runtime: AuditRuntime, index: int, tree_size: int) -> dict[str, Any]:
    if index >= tree_size:
        raise invalid("query.index", "proof.index_out_of_range", f"entry {index} is not in a tree of {tree_size}")
    await _check_size(runtime, "query.tree_size", tree_size)
    proof = await store.inclusion_proof(runtime.pool, index, tree_size)
    leaf = await store.leaf(runtime.pool, index)
    return {
        "index": index,
        "tree_size": tree_size,
        "leaf_hash": leaf.hex(),
        "root": (await store.root(runtime.pool, tree_size)).hex(),
        "proof": [h.hex() for h in proof],
    }


async def consistency(runtime: AuditRuntime, first: int, second: int) -> dict[str, Any]:
    current = await store.tree_size(runtime.pool)
    if first > second or first > current:
        # Not a client error: whoever saw a tree of `first` entries now finds fewer. The log
        # cannot prove a shorter tree extends a longer one; entries are missing.
        smaller = min(second, current)
        metrics.VERIFICATION_FAILURES.labels("truncated").inc()
        raise Problem(
            409,
            "Verification failed: the log is smaller than a tree already seen",
            f"a tree of {first} entries cannot be a prefix of one of {smaller}: "
            f"entries {smaller} to {first - 1} are missing (the log holds {current})",
            type=problem_type("log-truncated"),
            extensions={"missing_from": smaller, "missing_to": first - 1, "log_size": current},
        )
    await _check_size(runtime, "query.second", second)
    proof = await store.consistency_proof(runtime.pool, first, second)
    return {
        "first": first,
        "second": second,
        "first_root": (await store.root(runtime.pool, first)).hex(),
        "second_root": (await store.root(runtime.pool, second)).hex(),
        "proof": [h.hex() for h in proof],
    }
