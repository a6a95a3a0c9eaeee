"""The single `homeroom` command: serve a service, run the stack or the demo, and tools.

Sub-commands that belong to one part of the system live next to it and are registered
here by import path, so this file stays an index rather than a pile of commands.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import typer

app = typer.Typer(help="Homeroom: the student-data exchange.", no_args_is_help=True, add_completion=False)

# (command group name, "module:attribute" of a typer.Typer). Each is imported lazily-safe:
# a group whose module does not exist yet is simply not offered.
SUBCOMMANDS: list[tuple[str, str]] = [
    ("token", "homeroom.auth_cli:app"),
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
    name: str = typer.Argument(..., help="ingest, records, consent, transfer, audit, incidents or portal"),
) -> None:
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
def migrate(
    names: list[str] = typer.Argument(None, help="services to migrate (default: every one with a database)"),
) -> None:
    """Create and migrate service databases as the owner role (HOMEROOM_MIGRATION_DATABASE_URL),
    granting each service's login role (HOMEROOM_DATABASE_URL's server, user homeroom_<name>)."""
    import asyncio

    from homeroom.service import prepare_databases
    from homeroom.stack import SERVICES, load_spec
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


@app.command()
def generate(
    out: Path = typer.Option(Path("generated"), "--out", help="Directory to write into."),
    seed: int = typer.Option(7, "--seed", help="Same seed, same files."),
    districts: int = typer.Option(2, "--districts", min=1),
    schools: int = typer.Option(2, "--schools", min=1, help="Schools per district."),
    students: int = typer.Option(50, "--students", min=1, help="Students per district."),
    days: int = typer.Option(5, "--days", min=1, help="School days of attendance."),
    transfers: int = typer.Option(1, "--transfers", min=0),
    formats: list[str] = typer.Option(
        ["json", "oneroster"],
        "--format",
        help="json, oneroster, oneroster-ext (OneRoster with metadata.*/ext_* and credential columns, BOM, "
        "quoted newlines) and edfi-xml (Ed-Fi DS 5.2 interchanges with optional elements); repeatable.",
    ),
) -> None:
    """Write synthetic districts (JSON batches, OneRoster 1.2 zips, Ed-Fi XML), deterministic from a seed."""
    from homeroom.generate import generate_world, write_world

    unknown = sorted(set(formats) - {"json", "oneroster", "oneroster-ext", "edfi-xml"})
    if unknown:
        typer.echo(f"error: unknown format {', '.join(unknown)} (json, oneroster, oneroster-ext, edfi-xml)", err=True)
        raise typer.Exit(2)
    world = generate_world(
        seed=seed,
        districts=districts,
        schools_per_district=schools,
        students_per_district=students,
        days=days,
        transfers=transfers,
    )
    for path in write_world(world, out, tuple(formats)):
        typer.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
