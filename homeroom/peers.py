"""Where one service finds another: each service's conventional port, and the settings field
that holds a peer's base URL.

Every service that calls another declares the peer's address as `peer_url("consent")`: read
from HOMEROOM_CONSENT_URL (the stack sets HOMEROOM_<NAME>_URL for every service,
`homeroom_dev/stack.py`) or `consent_url`, and by default the peer's conventional address on
this machine.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field

# Service name → its conventional port: the default address peers use, and where the
# development stack and `homeroom serve` listen.
PORTS: dict[str, int] = {
    "ingest": 8001,
    "records": 8002,
    "consent": 8003,
    "transfer": 8004,
    "audit": 8005,
    "portal": 8006,
    "incidents": 8008,
    "reports": 8009,
}


def local_url(name: str) -> str:
    """The service's conventional address on this machine."""
    return f"http://127.0.0.1:{PORTS[name]}"


def peer_url(name: str, *, local_default: bool = True) -> Any:
    """A settings field with the base URL of service `name` (HOMEROOM_<NAME>_URL or <name>_url).

    Its default is the service's conventional local address, or "" (not configured) when
    `local_default` is false, for a caller that fails closed without the peer.
    """
    return Field(
        default=local_url(name) if local_default else "",
        validation_alias=AliasChoices(f"HOMEROOM_{name.upper()}_URL", f"{name}_url"),
    )
