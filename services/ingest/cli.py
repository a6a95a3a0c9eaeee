"""`homeroom ingest publish FILE --district D`: upload a file to the ingest service with a progress bar,
wait for the submission to finish, and print its report. `homeroom ingest check FILE...`: what
Homeroom would make of an export, without taking it (offline, or `--url` for the service's dry
run with the district's registry and records).

    homeroom ingest publish roster.zip --district d-100
    homeroom ingest publish batch.json --district d-100 --idempotency-key nightly-2024-10-01
    homeroom ingest publish students.json --district d-100 --edfi-resource students
    homeroom ingest publish interchange.xml --district d-100 --url http://ingest:8001 --token "$TOKEN"

The format follows the file name (``.zip`` OneRoster, ``.xml`` Ed-Fi XML, ``.json`` Homeroom batch
unless ``--edfi-resource`` names an Ed-Fi resource). Without ``--token`` (or HOMEROOM_TOKEN) a
development token is minted from the local dev issuer. Exit status: 0 completed with no refused
records, 1 completed with refused records, 2 failed, 3 held for confirmation.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

app = typer.Typer(help="Publish district data to Homeroom's ingest service.", no_args_is_help=True)

EXIT = {"completed": 0, "failed": 2, "held": 3}


@app.callback()
def main() -> None:
    """Publish district data to Homeroom's ingest service."""


def route_for(path: Path, edfi_resource: str | None) -> str:
    from services.ingest.check import format_of

    if edfi_resource:
        return f"edfi/{edfi_resource}"
    try:
        return format_of(path)
    except ValueError as exc:
        raise typer.BadParameter(f"{exc} (or --edfi-resource)") from None


async def _chunks(path: Path, on_bytes: Callable[[int], None], size: int = 1 << 20) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            on_bytes(len(chunk))
            yield chunk


async def publish(
    client: httpx.AsyncClient,
    path: Path,
    *,
    district: str,
    headers: dict[str, str],
    edfi_resource: str | None = None,
    idempotency_key: str | None = None,
    on_upload: Callable[[int], None] = lambda _n: None,
    on_progress: Callable[[float, dict[str, Any]], None] = lambda _p, _r: None,
    timeout_s: float = 24 * 3600,
    poll_s: float = 0.5,
) -> dict[str, Any]:
    """Upload, then poll the report until the submission is completed, failed or held."""
    extra = dict(headers)
    if idempotency_key:
        extra["Idempotency-Key"] = idempotency_key
    r = await client.post(
        f"/v1/districts/{district}/submissions/{route_for(path, edfi_resource)}",
        params={"file": path.name},
        content=_chunks(path, on_upload),
        headers=extra,
    )
    if r.status_code not in (200, 202):
        raise RuntimeError(f"upload refused ({r.status_code}): {r.text}")
    report: dict[str, Any] = r.json()
    deadline = time.monotonic() + timeout_s
    while report["status"] not in EXIT:
        if time.monotonic() > deadline:
            raise TimeoutError(f"submission {report['id']} is still {report['status']}")
        await asyncio.sleep(poll_s)
        got = await client.get(f"/v1/submissions/{report['id']}", headers=headers)
        got.raise_for_status()
        report = got.json()
        on_progress(float(report["progress"]), report)
    return report


def _print_report(console: Console, report: dict[str, Any], problems: list[dict[str, Any]]) -> None:
    c = report["counts"]
    console.print(f"submission {report['id']}: [bold]{report['status']}[/bold]")
    console.print(
        f"  read {c['records_read']}  accepted {c['accepted']}  rejected {c['rejected']}  warned {c['warned']}  "
        f"unchanged {c['unchanged']}  events {c['events']}"
    )
    for rule, n in sorted(report.get("problems_by_rule", {}).items(), key=lambda kv: -kv[1]):
        console.print(f"  {n:>7}  {rule}")
    for p in problems:
        console.print(f"  {p['severity']:<7} {p['file']}:{p['line']} {p['field']} [{p['rule']}] {p['message']}")
    if report.get("held"):
        for s in report["held"]["schools"]:
            console.print(f"  held: school {s['school_id']} would lose {s['withdrawn']} of {s['enrolled']} students")
        console.print(f"  confirm with: POST {report['held']['confirm']}")
    if report.get("error"):
        console.print(f"  error: {report['error']}")


@app.command("publish")
def publish_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="File to upload")],
    district: Annotated[str, typer.Option("--district", help="District id the data belongs to")],
    url: Annotated[str, typer.Option("--url", envvar="HOMEROOM_INGEST_URL")] = "http://127.0.0.1:8001",
    token: Annotated[str | None, typer.Option("--token", envvar="HOMEROOM_TOKEN")] = None,
    edfi_resource: Annotated[
        str | None, typer.Option("--edfi-resource", help="students, studentSchoolAssociations, ...")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    show_problems: Annotated[int, typer.Option("--problems", help="How many problems to print")] = 20,
) -> None:
    """Upload FILE, show progress, print the report."""
    if token is None:
        from homeroom.auth import AuthSettings, Role

        token = AuthSettings().dev_issuer().issue(Role.DISTRICT_STAFF, subject="homeroom-cli", district=district)
    headers = {"Authorization": f"Bearer {token}"}
    console = Console(stderr=True)

    async def run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(300.0)) as client:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=console,
            ) as bar:
                upload = bar.add_task("upload", total=os.path.getsize(file))
                work = bar.add_task("process", total=1000)
                report = await publish(
                    client,
                    file,
                    district=district,
                    headers=headers,
                    edfi_resource=edfi_resource,
                    idempotency_key=idempotency_key,
                    on_upload=lambda n: bar.advance(upload, n),
                    on_progress=lambda p, _r: bar.update(work, completed=int(p * 1000)),
                )
                bar.update(work, completed=1000)
            problems: list[dict[str, Any]] = []
            if show_problems > 0:
                r = await client.get(
                    f"/v1/submissions/{report['id']}/problems", params={"limit": show_problems}, headers=headers
                )
                if r.status_code == 200:
                    problems = r.json()["problems"]
            return report, problems

    report, problems = asyncio.run(run())
    _print_report(console, report, problems)
    code = EXIT.get(report["status"], 2)
    if code == 0 and report["counts"]["rejected"]:
        code = 1
    raise typer.Exit(code)


def _print_check(console: Console, report: dict[str, Any], show_problems: int) -> None:
    c = report["counts"]
    console.print(
        f"[bold]{report['file']}[/bold]: read {c['records_read']}  accepted {c['accepted']}  "
        f"refused {c['rejected']}  warned {c['warned']}  skipped {c['skipped']}"
    )
    errors = [p for p in report["problems"] if p["severity"] == "error"]
    for p in errors[:show_problems]:
        console.print(f"  refused {p['file']}:{p['line']} {p['field']} [{p['rule']}] {p['message']}", markup=False)
    if len(errors) > show_problems:
        console.print(f"  ... and {len(errors) - show_problems} more refused")
    for item in report["not_collected"]:
        what = "dropped" if item["kind"] == "element" else "skipped"
        console.print(f"  {what} {item['name']}: {item['count']} (not collected by Homeroom)")


@app.command("check")
def check_command(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True, help="Files, in order")],
    district: Annotated[str, typer.Option("--district", help="District id the data belongs to")] = "district",
    url: Annotated[
        str | None, typer.Option("--url", help="Ask the ingest service's dry run instead of checking offline")
    ] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="HOMEROOM_TOKEN")] = None,
    edfi_resource: Annotated[str | None, typer.Option("--edfi-resource")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON")] = False,
    show_problems: Annotated[int, typer.Option("--problems", help="How many refusals to print per file")] = 20,
) -> None:
    """Parse and validate FILES as one district's uploads, in the order given; nothing is stored or sent.
    Exit status 0 when no record is refused, 1 otherwise."""
    import json

    from services.ingest.check import check_files

    console = Console()
    if url is None:
        reports: list[dict[str, Any]] = [
            r.as_dict() for r in check_files(files, district=district, edfi_resource=edfi_resource)
        ]
    else:
        if token is None:
            from homeroom.auth import AuthSettings, Role

            token = AuthSettings().dev_issuer().issue(Role.DISTRICT_STAFF, subject="homeroom-cli", district=district)
        headers = {"Authorization": f"Bearer {token}"}

        async def run() -> list[dict[str, Any]]:
            out = []
            async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(600.0)) as client:
                for path in files:
                    r = await client.post(
                        f"/v1/districts/{district}/submissions/{route_for(path, edfi_resource)}",
                        params={"file": path.name, "dry_run": "true"},
                        content=path.read_bytes(),
                        headers=headers,
                    )
                    r.raise_for_status()
                    out.append(r.json())
            return out

        reports = asyncio.run(run())
    if as_json:
        print(json.dumps(reports, indent=1, default=str))
    else:
        for r in reports:
            _print_check(console, r, show_problems)
    raise typer.Exit(1 if any(r["counts"]["rejected"] for r in reports) else 0)
