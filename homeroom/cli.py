"""The single `homeroom` command: serve a service, run the stack or the demo, and tools.

Sub-commands that belong to one part of the system live next to it and are registered
here by import path, so this file stays an index rather than a pile of commands.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="Homeroom: the student-data exchange.", no_args_is_help=True, add_completion=False)

# (command group name, "module:attribute" of a typer.Typer). Each is imported lazily-safe:
# a group whose module does not exist yet is simply not offered.
SUBCOMMANDS: list[tuple[str, str]] = [
    ("token", "homeroom.auth_cli:app"),
    ("infra", "homeroom.infra.cli:app"),
    ("consent", "services.consent.cli:app"),
    ("audit", "services.audit.cli:app"),
]


def _register() -> None:
    for name, target in SUBCOMMANDS:
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        app.add_typer(getattr(module, attr), name=name)


_register()


def main() -> None:
    app()
