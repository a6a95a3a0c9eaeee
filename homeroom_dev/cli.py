"""The development CLI (`./run ...`, or `python -m homeroom_dev`): every production `homeroom`
command plus the development ones: the embedded stack, the demo, the synthetic-data generator
and development tokens. Not a console script, so the production image has no dead entry."""

from __future__ import annotations

from pathlib import Path

import typer

from homeroom.cli import app as production
from homeroom_dev.auth_cli import app as token_app

app = typer.Typer(
    help="Homeroom for development: every `homeroom` command, plus the embedded stack, the demo, "
    "synthetic districts and development tokens.",
    no_args_is_help=True,
    add_completion=False,
)
# The production commands, unchanged (serve, migrate, witness, each service's own groups).
app.registered_commands.extend(production.registered_commands)
app.registered_groups.extend(production.registered_groups)
app.add_typer(token_app, name="token")


@app.command()
def stack() -> None:
    """Run the whole stack on embedded PostgreSQL and Kafka until Ctrl-C."""
    from homeroom_dev.demo import run_stack

    run_stack()


@app.command()
def demo(keep_running: bool = typer.Option(False, "--keep-running", help="Leave the stack up afterwards.")) -> None:
    """Bring up the whole stack on embedded defaults and play the demo scenario."""
    from homeroom_dev.demo import run_demo

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
    from homeroom_dev.generate import generate_world, write_world

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
    app(prog_name="./run")


if __name__ == "__main__":
    main()
