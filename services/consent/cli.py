"""`homeroom consent ...`: tools for the agreement registry.

`import-2d` writes straight to the consent service's database (settings from the
environment, as `homeroom serve consent` reads them), in the same transactions the API
uses: the drafts and their `agreement_signed` events are committed together, and the
events sit in the service's outbox until the consent service's relay publishes them.
It needs no running service and no token, only the database: it is an administrator's
tool, like a migration. Remote districts use `POST /v1/agreements/import-2d` instead.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from homeroom.storage import create_pool, ensure_database, migrate
from services.consent.application.importing import ImportSummary, import_page
from services.consent.import_2d import read_2d_file
from services.consent.settings import ConsentSettings

app = typer.Typer(help="The consent service's agreement registry.", no_args_is_help=True, add_completion=False)


@app.callback()
def _group() -> None:
    """The consent service's agreement registry (a group, so commands keep their names)."""


async def _import(path: Path, districts: tuple[str, ...], recorded_by: str, settings: ConsentSettings) -> ImportSummary:
    if not settings.database_url:
        raise typer.BadParameter("no database: set HOMEROOM_DATABASE_URL or HOMEROOM_CONSENT_DATABASE_URL")
    if settings.create_database:
        await ensure_database(settings.database_url)
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        from services.consent.service import SERVICE

        await migrate(pool, SERVICE.name, SERVICE.migrations)
        return await import_page(
            pool,
            read_2d_file(path),
            source_name=path.name,
            districts=districts,
            recorded_by=recorded_by,
            now=datetime.now(UTC),
        )
    finally:
        await pool.close()


@app.command("import-2d")
def import_2d(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The disclosure page text")],
    district: Annotated[
        list[str] | None, typer.Option("--district", "-d", help="District the agreements cover (repeatable)")
    ] = None,
    recorded_by: Annotated[str | None, typer.Option(help="Who is importing (default: cli:<user>)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole summary as JSON")] = False,
) -> None:
    """Import a published Ed Law 2-d page: every entry becomes a draft agreement that releases nothing
    until its data elements are set and it is activated. Problems are reported by entry."""
    who = recorded_by or f"cli:{getpass.getuser()}"
    summary = asyncio.run(_import(file, tuple(district or ()), who, ConsentSettings()))
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
        return
    typer.echo(
        f"{file.name}: {len(summary.agreements)} entries; {len(summary.created)} new drafts, "
        f"{len(summary.new_versions)} new draft versions, {len(summary.unchanged)} unchanged"
    )
    for item in summary.agreements:
        term = f"{item['start_date'] or '?'} to {item['end_date'] or '?'}"
        typer.echo(f"  #{item['entry']:>3} {item['outcome']:<11} {item['agreement_id']}  [{item['category']}] {term}")
    if summary.problems:
        typer.echo(f"{len(summary.problems)} problems need a person:")
        for problem in summary.problems:
            where = f"entry {problem['entry']}" if problem["entry"] is not None else "file"
            typer.echo(f"  {where} ({problem['organization'] or '-'}) {problem['field']}: {problem['message']}")
