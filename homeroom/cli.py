"""The production `homeroom` command: serve a service, migrate its databases, run the
witness, and each service's own operator commands (consent imports, audit verification ...).

Sub-commands that belong to one part of the system live next to it and are registered
here by import path, so this file stays an index rather than a pile of commands. The
development commands (stack, demo, generate, token) are `./run ...` (homeroom_dev/cli.py),
which offers these as well.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="Homeroom: the student-data exchange.", no_args_is_help=True, add_completion=False)

# (command group name, "module:attribute" of a typer.Typer). Each is imported lazily-safe:
# a group whose module does not exist yet is simply not offered.
SUBCOMMANDS: list[tuple[str, str]] = [
    ("consent", "services.consent.cli:app"),
    ("audit", "services.audit.cli:app"),
    ("ingest", "services.ingest.cli:app"),
    ("incidents", "services.incidents.cli:app"),
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
def serve(
    name: str = typer.Argument(..., help="ingest, records, consent, transfer, audit, incidents, reports or portal"),
) -> None:
    """Run one service: its HTTP API, bus consumers and outbox relay (settings from the environment)."""
    import uvicorn

    from homeroom.registry import load_spec
    from homeroom.service import configure, create_app

    try:
        spec = load_spec(name)
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(2) from None
    settings = spec.settings()
    configure(spec, settings)
    service_app = create_app(spec, settings, freeze_once_started=True)  # one service per process
    uvicorn.run(service_app, host=settings.host, port=settings.port, log_config=None)


@app.command()
def migrate(
    names: list[str] = typer.Argument(None, help="services to migrate (default: every one with a database)"),
) -> None:
    """Create and migrate service databases as the owner role (HOMEROOM_MIGRATION_DATABASE_URL),
    granting each service's login role (HOMEROOM_DATABASE_URL's server, user homeroom_<name>)."""
    import asyncio

    from homeroom.registry import SERVICES, load_spec
    from homeroom.service import prepare_databases
    from homeroom.storage import login_role, with_user

    async def run() -> None:
        for name in names or [n for n in SERVICES if n != "portal"]:
            spec = load_spec(name)
            settings = spec.settings()
            if not settings.migration_database_url:
                raise typer.BadParameter("set HOMEROOM_MIGRATION_DATABASE_URL (the owner role's server URL)")
            if settings.server_url:  # each service's own login on the shared server
                login = login_role(name)
                settings.database_url = with_user(settings.database_url, login)
                settings.keys_database_url = with_user(settings.keys_database_url, login)
            await prepare_databases(spec, settings)
            typer.echo(f"{name}: migrated; login {settings.database_url.split('@')[0].rsplit('/', 1)[-1]}")

    asyncio.run(run())


witness_app = typer.Typer(help="The transparency-log witness (c2sp.org/tlog-witness).", no_args_is_help=True)
app.add_typer(witness_app, name="witness")


@witness_app.command("serve")
def witness_serve() -> None:
    """Run the witness (settings HOMEROOM_WITNESS_*): cosigns the audit log's checkpoints."""
    import uvicorn

    from homeroom.witness import WitnessSettings, create_app

    settings = WitnessSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


@witness_app.command("key")
def witness_key() -> None:
    """Print the witness's name and public key (PEM), for verifiers and the audit service to pin."""
    from cryptography.hazmat.primitives import serialization

    from homeroom.witness import WitnessSettings, load_private_key

    settings = WitnessSettings()
    key = load_private_key(settings.key_file, create=settings.environment != "production").public_key()
    typer.echo(settings.name)
    typer.echo(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
