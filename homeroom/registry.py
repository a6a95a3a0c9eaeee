"""Which services Homeroom runs: each one's `ServiceSpec` by name, and its conventional port.

Production (`homeroom serve NAME`, `homeroom migrate`) and the development stack
(`homeroom_dev/stack.py`) read the same list.
"""

from __future__ import annotations

import importlib

from homeroom.service import ServiceSpec

# Service name → (import path of its ServiceSpec, conventional port). The order is the
# start order: consent first, because records and transfer ask it for decisions.
SERVICES: dict[str, tuple[str, int]] = {
    "consent": ("services.consent.service:SERVICE", 8003),
    "audit": ("services.audit.service:SERVICE", 8005),
    "records": ("services.records.service:SERVICE", 8002),
    "transfer": ("services.transfer.service:SERVICE", 8004),
    "ingest": ("services.ingest.service:SERVICE", 8001),
    # Breach response: reads the log through audit, asks consent and records (issue 21).
    "incidents": ("services.incidents.service:SERVICE", 8008),
    # Statewide comparisons from pseudonymised events (issue 22): no key, no sealed value.
    "reports": ("services.reports.service:SERVICE", 8009),
    # Last: the web pages call the others' APIs with the signed-in person's token.
    "portal": ("services.portal.service:SERVICE", 8006),
}


def load_spec(name: str) -> ServiceSpec:
    if name not in SERVICES:
        raise KeyError(f"no service named {name!r}; known: {', '.join(sorted(SERVICES))}")
    module_name, attr = SERVICES[name][0].split(":")
    spec: ServiceSpec = getattr(importlib.import_module(module_name), attr)
    return spec
