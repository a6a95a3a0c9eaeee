"""Which services Homeroom runs: each one's `ServiceSpec` by name, and its conventional port.

Production (`homeroom serve NAME`, `homeroom migrate`) and the development stack
(`homeroom_dev/stack.py`) read the same list.
"""

from __future__ import annotations

import importlib

from homeroom.peers import PORTS
from homeroom.service import ServiceSpec

# The start order: consent first, because records and transfer ask it for decisions; incidents
# reads the log through audit and asks consent and records (issue 21); reports counts from
# pseudonymised events only (issue 22); the portal last, since its pages call the others' APIs
# with the signed-in person's token.
START_ORDER = ("consent", "audit", "records", "transfer", "ingest", "incidents", "reports", "portal")

# Service name → (import path of its ServiceSpec, conventional port from homeroom.peers).
SERVICES: dict[str, tuple[str, int]] = {name: (f"services.{name}.service:SERVICE", PORTS[name]) for name in START_ORDER}


def load_spec(name: str) -> ServiceSpec:
    if name not in SERVICES:
        raise KeyError(f"no service named {name!r}; known: {', '.join(sorted(SERVICES))}")
    module_name, attr = SERVICES[name][0].split(":")
    spec: ServiceSpec = getattr(importlib.import_module(module_name), attr)
    return spec
