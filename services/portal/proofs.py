"""Checking one log entry the way an auditor would, without trusting the page's data source.

The audit service answers an entry with the latest signed tree head and an inclusion
proof (the entry's receipt; entries appended before issue 19 also carry a signed receipt
of their own). Here the portal recomputes the entry's leaf hash from its content, checks
the head's Ed25519 signature (and an old receipt's), and folds the proof up to the head's
root, using the audit service's own pure verifiers (RFC 9162), so a page that
says "verified" means the arithmetic was done, not that a service said so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from homeroom.tlog.canonical import canonical_json
from homeroom.tlog.merkle import leaf_hash, verify_inclusion
from homeroom.tlog.signing import EntryReceipt, SignedTreeHead, load_public_key, verify_head, verify_receipt


@dataclass
class ProofCheck:
    leaf_matches: bool = False
    receipt_valid: bool = False
    head_valid: bool = False
    included: bool = False
    problems: list[str] = field(default_factory=list)

    has_receipt: bool = False  # only entries appended before issue 19 carry a signed receipt

    @property
    def verified(self) -> bool:
        receipt_ok = self.receipt_valid or not self.has_receipt
        return self.leaf_matches and receipt_ok and self.head_valid and self.included


def _key(keys: Mapping[str, str], key_id: str) -> Ed25519PublicKey | None:
    pem = keys.get(key_id)
    try:
        return load_public_key(pem.encode()) if pem else None
    except ValueError:
        return None


def check_entry(answer: dict[str, Any], keys: Mapping[str, str]) -> ProofCheck:
    """`answer` is audit's GET /v1/entries/{seq}; `keys` the log's public keys (PEM) by key id:
    each receipt and head is checked with the key it names, so rotated keys still verify."""
    check = ProofCheck()
    try:
        entry = dict(answer["entry"])
        stated_leaf = bytes.fromhex(entry.pop("leaf_hash"))
        raw_receipt = entry.pop("receipt", None)
        receipt = None if raw_receipt is None else EntryReceipt.from_dict(raw_receipt)
    except (KeyError, ValueError, TypeError) as exc:
        check.problems.append(f"the entry could not be read: {exc}")
        return check
    computed = leaf_hash(canonical_json(entry))
    check.leaf_matches = computed == stated_leaf and (receipt is None or computed == receipt.leaf_hash)
    if not check.leaf_matches:
        check.problems.append("the entry's content does not hash to its leaf")
    if receipt is not None:  # an entry appended before issue 19: its own signed receipt is checked too
        check.has_receipt = True
        receipt_key = _key(keys, receipt.key_id)
        if receipt_key is None:
            check.problems.append(f"no public key with the id {receipt.key_id!r} signed receipts of this log")
        check.receipt_valid = (
            receipt_key is not None and verify_receipt(receipt, receipt_key) and receipt.index == entry.get("seq")
        )
        if not check.receipt_valid:
            check.problems.append("the receipt's signature does not verify with the log's key")
    index = entry.get("seq")
    if not isinstance(index, int):
        check.problems.append("the entry has no index")
        return check
    raw_head, proof = answer.get("tree_head"), answer.get("inclusion_proof")
    if not isinstance(raw_head, dict):
        check.problems.append("the log has no signed tree head yet")
        return check
    try:
        head = SignedTreeHead.from_dict(raw_head)
    except ValueError as exc:
        check.problems.append(f"the tree head could not be read: {exc}")
        return check
    head_key = _key(keys, head.key_id)
    if head_key is None:
        check.problems.append(f"no public key with the id {head.key_id!r} signed heads of this log")
    check.head_valid = head_key is not None and verify_head(head, head_key)
    if not check.head_valid:
        check.problems.append("the tree head's signature does not verify with the log's key")
    if proof is None:
        check.problems.append("no signed tree head covers this entry yet; it will after the next one")
        return check
    try:
        path = [bytes.fromhex(h) for h in proof]
    except (TypeError, ValueError):
        check.problems.append("the inclusion proof is not a list of hashes")
        return check
    check.included = verify_inclusion(computed, index, head.head.size, path, head.head.root)
    if not check.included:
        check.problems.append("the inclusion proof does not lead to the signed root")
    return check
