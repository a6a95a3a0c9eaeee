"""`homeroom incidents verify-scope`: check a frozen breach scope offline, trusting nothing Homeroom says.

    homeroom incidents verify-scope inc-1-scope-v1.jsonl.gz \\
        --log-keys audit-keys.json --witness-key witness.pub.pem \\
        [--incidents-key incidents.pub.pem] [--export audit-log.jsonl] [--json]

Pin the disclosure log's keys (a saved `GET /v1/keys` answer of audit, or a PEM), the witness's
key, and optionally the incidents service's key: the command checks the tree head's signature
and the witness's cosignature, every entry's leaf, the multiproof against the signed root,
the selection rule for every entry, the students and totals recomputed from the proven
entries, and the bundle's own signature; with `--export` (the whole log, `homeroom audit
verify` checks it) also that no disclosure the rule selects is missing. Exit 0 when all of it
holds, 1 naming what fails, 2 when a file cannot be read.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from homeroom.checkpoint import COSIGNATURE_V1, ED25519, NoteError, Verifier, public_key_from_pem
from homeroom.tlog.signing import Keyring
from services.incidents.scope import ScopeReport, TrustAnchors, verify_bundle

app = typer.Typer(help="Breach incidents: check a frozen scope offline.", no_args_is_help=True)
console = Console(highlight=False)


@app.callback()
def main() -> None:
    """Breach incidents: check a frozen scope offline."""


def _log_keys(path: Path) -> Keyring:
    text = path.read_text()
    if text.lstrip().startswith("-----BEGIN"):
        return Keyring.from_pems([text.encode()])
    raw = json.loads(text)
    pems = raw.get("keys", raw) if isinstance(raw, dict) else {}
    return Keyring.from_pems(str(p).encode() for p in pems.values())


def anchors(
    log_keys: Path | None, witness_key: Path | None, witness_name: str, incidents_key: Path | None, incidents_name: str
) -> TrustAnchors:
    return TrustAnchors(
        log_keys=_log_keys(log_keys) if log_keys else None,
        witness=Verifier(witness_name, COSIGNATURE_V1, public_key_from_pem(witness_key.read_bytes()))
        if witness_key
        else None,
        incidents=Verifier(incidents_name, ED25519, public_key_from_pem(incidents_key.read_bytes()))
        if incidents_key
        else None,
    )


@app.command("verify-scope")
def verify_scope(
    bundle: Annotated[Path, typer.Argument(help="the scope bundle (.jsonl.gz) as downloaded")],
    log_keys: Annotated[Path | None, typer.Option(help="the audit log's keys: GET /v1/keys saved, or a PEM")] = None,
    witness_key: Annotated[Path | None, typer.Option(help="the witness's public key (PEM)")] = None,
    witness_name: Annotated[str, typer.Option(help="the witness's key name")] = "witness.homeroom.local/w1",
    incidents_key: Annotated[Path | None, typer.Option(help="the incidents service's public key (PEM)")] = None,
    incidents_name: Annotated[str, typer.Option(help="its signer name")] = "homeroom.local/incidents",
    export: Annotated[Path | None, typer.Option(help="the whole log (JSON Lines export): check completeness")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    try:
        trust = anchors(log_keys, witness_key, witness_name, incidents_key, incidents_name)
        with gzip.open(bundle, "rb") as lines:
            if export is not None:
                with export.open("rb") as log:
                    report = verify_bundle(lines, trust, export_lines=log)
            else:
                report = verify_bundle(lines, trust)
    except (OSError, ValueError, NoteError, EOFError) as exc:
        console.print(f"[red]cannot read:[/] {exc}")
        raise typer.Exit(2) from None
    _print(report, as_json)
    raise typer.Exit(0 if report.ok else 1)


def _print(report: ScopeReport, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(report.as_dict()))
        return
    totals = report.totals
    console.print(
        f"incident {report.incident_id}, scope version {report.version}: {report.entries:,} entries proven by "
        f"{report.proof_hashes:,} hashes against the signed tree head of size {report.tree_size:,}"
        f"{' (witnessed)' if report.witnessed else ''}"
    )
    if totals:
        console.print(
            f"  {totals.get('students', 0):,} students whose data the recipient could read, "
            f"{totals.get('students_unreadable_only', 0):,} whose data was shredded before the exposure, "
            f"{totals.get('disclosures', 0):,} disclosures"
        )
    if report.complete is not None:
        console.print(f"  complete against the whole log: {'yes' if report.complete else 'NO'}")
    for note in report.notes:
        console.print(f"  [yellow]note:[/] {note}")
    for finding in report.findings:
        console.print(f"  [red]FAILED:[/] {finding}")
    console.print("[green]verified[/]" if report.ok else "[red]not verified[/]")
