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


@app.command()
def serve(name: str = typer.Argument(..., help="ingest, records, consent, transfer or audit")) -> None:
    """Run one service: its HTTP API, bus consumers and outbox relay (settings from the environment)."""
    import uvicorn

    from homeroom.service import configure, create_app
    from homeroom.stack import load_spec

    try:
        spec = load_spec(name)
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(2) from None
    settings = spec.settings()
    configure(spec, settings)
    uvicorn.run(create_app(spec, settings), host=settings.host, port=settings.port, log_config=None)


@app.command()
def stack() -> None:
    """Run the whole stack on embedded PostgreSQL and Kafka until Ctrl-C."""
    from homeroom.demo import run_stack

    run_stack()


@app.command()
def demo(keep_running: bool = typer.Option(False, "--keep-running", help="Leave the stack up afterwards.")) -> None:
    """Bring up the whole stack on embedded defaults and play the demo scenario."""
    from homeroom.demo import run_demo

    raise typer.Exit(run_demo(keep_running=keep_running))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
