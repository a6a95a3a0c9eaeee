"""Container health check: GET /healthz of the service this container runs.

The image serves any of the five services (`homeroom serve <name>`), so the port is read
from the command line of PID 1 and HOMEROOM_<NAME>_PORT, falling back to the service's
conventional port. Standard library only: it runs every few seconds.
"""

from __future__ import annotations

import os
import sys
import urllib.request

PORTS = {
    "ingest": 8001,
    "records": 8002,
    "consent": 8003,
    "transfer": 8004,
    "audit": 8005,
    "incidents": 8008,
    "portal": 8006,
}


def served_service() -> str | None:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        return None
    if "serve" in argv:
        i = argv.index("serve")
        if i + 1 < len(argv) and argv[i + 1] in PORTS:
            return argv[i + 1]
    return None


def main() -> int:
    name = served_service()
    if name is None:
        return 0  # not serving (e.g. a one-off `homeroom audit verify`): nothing to check
    port = int(os.environ.get(f"HOMEROOM_{name.upper()}_PORT", PORTS[name]))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
