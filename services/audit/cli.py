"""`homeroom audit ...`: check the disclosure log offline.

    homeroom audit verify --export audit-log.jsonl [--public-key log.pub.pem]
    homeroom audit verify --url http://audit:8005 --token "$TOKEN" [--public-key log.pub.pem]
    homeroom audit rotate-key   (then restart the audit service)

Both recompute every leaf from the entries as exported, check every entry receipt there is and
every signed tree head (signature, root, consistency between successive heads), and
print what does not match: exit 0 when the log is intact, 1 naming the entries and
heads that fail, 2 when the export cannot be read at all. With ``--url`` the export
and the latest signed head are fetched first (to a temporary file; nothing is trusted
from the server but the bytes). Pin the log's public key with ``--public-key``: without
it the key in the export is used, which proves the log consistent with itself but not
that it is the log you meant: the command says so loudly. With ``--url`` it pins the keys
the service publishes (``/v1/keys``) by default; ``--keys-file`` (or
HOMEROOM_AUDIT_KEYS_FILE) pins a saved copy. ``--trusted-head FILE`` makes the verifier
remember: the log must still hold the head in FILE (a smaller log is named as truncated,
with the missing range), and after a clean run the newest head is written back to FILE.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from homeroom.checkpoint import ED25519, Checkpoint, Note, Verifier, verify_note
from homeroom.tlog.export import ExportFormatError, read_entries, read_header
from homeroom.tlog.signing import Keyring, SignedTreeHead, TreeHead, rotate_signing_key, verify_head
from homeroom.tlog.verify import VerificationReport, verify_log
from services.audit.settings import AuditSettings

app = typer.Typer(help="The disclosure log: verify an export or the live log.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """The disclosure log: verify an export or the live log."""


PROGRESS_FROM = 50_000  # entries: below this a run is too short for a progress bar


async def fetch_export(
    url: str, token: str, dest: Path, *, transport: httpx.AsyncBaseTransport | None = None, timeout_s: float = 600
) -> SignedTreeHead | None:
    """Download the export to ``dest``; returns the latest signed head (None if none yet)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=timeout_s, headers=headers) as client:
        async with client.stream("GET", "/v1/export", params={"format": "jsonl"}) as response:
            if response.status_code != 200:
                await response.aread()
                raise RuntimeError(f"export refused: HTTP {response.status_code}: {response.text[:300]}")
            with dest.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        latest = await client.get("/v1/tree-heads/latest")
        if latest.status_code == 404:
            return None
        if latest.status_code != 200:
            raise RuntimeError(f"latest tree head refused: HTTP {latest.status_code}: {latest.text[:300]}")
        return SignedTreeHead.from_dict(latest.json())


def verify_export(
    path: Path,
    *,
    public_key_pems: list[bytes] | None = None,
    extra_heads: list[SignedTreeHead] | None = None,
    trusted: list[TreeHead] | None = None,
    console: Console | None = None,
) -> VerificationReport:
    """Verify an export file (two passes: heads, then entries); raises ExportFormatError."""
    with path.open(encoding="utf-8") as lines:
        header = read_header(lines)
    keys = Keyring.from_pems(public_key_pems) if public_key_pems else header.keys
    if public_key_pems and keys.get(header.key_id) is None and console is not None:
        console.print(f"[yellow]the export names key {header.key_id}; verifying against the pinned keys {keys.ids()}")
    heads = list(header.heads)
    for extra in extra_heads or []:
        if extra not in heads:
            heads.append(extra)
    total = max(header.tree_size, max((h.head.size for h in heads), default=0))
    show = console is not None and total >= PROGRESS_FROM
    with path.open(encoding="utf-8") as lines:
        if not show:
            return verify_log(read_entries(lines), heads, keys, trusted=trusted or ())
        with Progress(
            TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
        ) as bar:
            task = bar.add_task("entries", total=total)
            return verify_log(
                read_entries(lines),
                heads,
                keys,
                progress=lambda n: bar.update(task, completed=n),
                progress_every=10_000,
                trusted=trusted or (),
            )


def read_trusted_head(path: Path, keys: Keyring) -> TreeHead:
    """A head verified before: a signed head as JSON (what this command writes), or a C2SP
    checkpoint note (``GET /v1/checkpoint``'s ``note``) signed by one of ``keys``."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        signed = SignedTreeHead.from_dict(json.loads(text))
        if not verify_head(signed, keys):
            raise ValueError(f"{path}: the trusted head's signature does not verify with the log's keys")
        return signed.head
    note = Note.parse(text)
    checkpoint = Checkpoint.from_text(note.text)
    public_keys = [k for k in (keys.get(kid) for kid in keys.ids()) if k is not None]
    verify_note(note, [Verifier(checkpoint.origin, ED25519, k) for k in public_keys])
    return TreeHead(checkpoint.size, checkpoint.root, 0)


def remember_head(path: Path, report_heads: list[SignedTreeHead]) -> SignedTreeHead | None:
    """Write the largest head just verified to ``path`` (atomically): the next run starts from it."""
    if not report_heads:
        return None
    newest = max(report_heads, key=lambda s: (s.head.size, s.head.timestamp_ms))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(newest.to_dict()) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return newest


async def fetch_keys(url: str, token: str, *, transport: httpx.AsyncBaseTransport | None = None) -> list[bytes]:
    """The log's public keys as the service publishes them (``GET /v1/keys``)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=30, headers=headers) as client:
        response = await client.get("/v1/keys")
        if response.status_code != 200:
            raise RuntimeError(f"public keys refused: HTTP {response.status_code}: {response.text[:300]}")
        return [pem.encode() for pem in response.json()["keys"].values()]


UNPINNED = (
    "WARNING: NO PINNED KEY. This run trusts the public key written inside the export itself, "
    "so it proves only that the log agrees with itself, not that it is the log you meant: whoever "
    "rewrote the log could have re-signed it with a key of their own. Pin the log's keys with "
    "--public-key, --keys-file or HOMEROOM_AUDIT_KEYS_FILE (the JSON of GET /v1/keys)."
)


def _pinned_keys(public_key: list[Path] | None, keys_file: Path | None) -> list[bytes] | None:
    if public_key:
        return [p.read_bytes() for p in public_key]
    if keys_file is not None:
        document = json.loads(keys_file.read_text(encoding="utf-8"))
        return [pem.encode() for pem in document["keys"].values()]
    return None


@app.command()
def verify(
    url: Annotated[str | None, typer.Option(help="base URL of the audit service (fetches its export)")] = None,
    export_file: Annotated[Path | None, typer.Option("--export", help="a JSON Lines export to check")] = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option(help="a public key (PEM) of the log to trust instead of the export's; repeat for retired keys"),
    ] = None,
    keys_file: Annotated[
        Path | None,
        typer.Option(envvar="HOMEROOM_AUDIT_KEYS_FILE", help="the log's keys as GET /v1/keys answered (JSON), pinned"),
    ] = None,
    trusted_head: Annotated[
        Path | None,
        typer.Option(
            help="a head verified before (JSON written by this command, or a C2SP checkpoint note): the log must "
            "still hold it; after a clean run the newest head is written back, so the next run starts from it"
        ),
    ] = None,
    token: Annotated[str, typer.Option(envvar="HOMEROOM_TOKEN", help="bearer token (role compliance)")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print the findings as JSON")] = False,
) -> None:
    """Recompute every leaf and root; check receipts, head signatures and consistency. Exit 0 intact, 1 not."""
    console = Console(stderr=True)
    if (url is None) == (export_file is None):
        console.print("give exactly one of --url or --export")
        raise typer.Exit(2)
    try:
        pems = _pinned_keys(public_key, keys_file)
        if pems is None and url is not None:
            # By default, the keys the service publishes (GET /v1/keys), not the export's own.
            pems = asyncio.run(fetch_keys(url, token))
            console.print(f"[yellow]using the log's keys from {url}/v1/keys; pin them with --keys-file for more")
        if pems is None:
            console.print(f"[bold red]{UNPINNED}")
        trusted: list[TreeHead] = []
        if trusted_head is not None and trusted_head.exists():
            if pems:
                ring = Keyring.from_pems(pems)
            else:
                assert export_file is not None  # with --url the service's keys were fetched above
                with export_file.open(encoding="utf-8") as lines:
                    ring = read_header(lines).keys
            trusted.append(read_trusted_head(trusted_head, ring))
        heads_seen: list[SignedTreeHead] = []
        if url is not None:
            fd, name = tempfile.mkstemp(prefix="homeroom-audit-", suffix=".jsonl")
            os.close(fd)
            path = Path(name)
            try:
                latest = asyncio.run(fetch_export(url, token, path))
                report = verify_export(
                    path,
                    public_key_pems=pems,
                    extra_heads=[latest] if latest else [],
                    trusted=trusted,
                    console=console,
                )
                with path.open(encoding="utf-8") as lines:
                    heads_seen = [*read_header(lines).heads, *([latest] if latest else [])]
            finally:
                path.unlink(missing_ok=True)
        else:
            assert export_file is not None
            report = verify_export(export_file, public_key_pems=pems, trusted=trusted, console=console)
            with export_file.open(encoding="utf-8") as lines:
                heads_seen = list(read_header(lines).heads)
    except (ExportFormatError, OSError, RuntimeError, httpx.HTTPError, ValueError, KeyError) as exc:
        console.print(f"cannot verify: {exc}")
        raise typer.Exit(2) from None
    if report.ok and trusted_head is not None:
        remembered = remember_head(trusted_head, heads_seen)
        if remembered is not None:
            console.print(f"remembered head size {remembered.head.size} in {trusted_head}")
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "pinned_key": pems is not None,
                    "entries_read": report.entries_read,
                    "log_size": report.log_size,
                    "failing_entries": report.entry_indices(),
                    "failing_heads": [{"size": h.size, "timestamp_ms": h.timestamp_ms} for h in report.heads()],
                    "findings": [{"kind": f.kind.value, "message": f.message} for f in report.findings],
                }
            )
        )
    else:
        for line in report.lines():
            typer.echo(line)
    raise typer.Exit(0 if report.ok else 1)


@app.command("rotate-key")
def rotate_key() -> None:
    """Retire the log's signing key and make a new one; restart the audit service to sign with it.

    The retired key's public half is kept (HOMEROOM_AUDIT_RETIRED_KEYS_DIR), so every head
    and receipt it signed still verifies, in the service and in exports."""
    settings = AuditSettings()
    old, new = rotate_signing_key(settings.signing_key_path, settings.retired_keys_path)
    typer.echo(f"retired signing key {old} (public key kept in {settings.retired_keys_path / (old + '.pem')})")
    typer.echo(f"new signing key {new} in {settings.signing_key_path}: restart the audit service to sign with it")
