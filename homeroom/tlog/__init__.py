"""The transparency log's library: what the audit service, the portal, incidents and the CLI
share to build, sign and check the disclosure log (pure: no database, no HTTP).

- `merkle`: the RFC 9162 Merkle tree, its proofs and multiproofs, and their verifiers.
- `signing`: signed tree heads and entry receipts (Ed25519), keyrings, the signing key file.
- `verify`: the offline verifier of a whole exported log (entries, receipts, heads).
- `export`: the export format (JSON Lines) and its reader, for the offline verifier.
- `canonical`: the one encoding of an entry's JSON object (the bytes its leaf hash covers).

C2SP checkpoints and witness cosignatures are `homeroom/checkpoint.py`; the audit service's
use of all of this (signing heads, witnessing, proofs) is `services/audit/application/`.
"""
