"""`./run token`: mint development tokens and show the key set services trust.

The key lives in HOMEROOM_AUTH_DEV_KEY_FILE (default .homeroom/dev-issuer.pem) and is
created on first use; services started in development trust it through the same
settings. Example:

    ./run token issue --role school_staff --subject alice --district d-001 --school s-12
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from homeroom.auth import AuthSettings, DevIssuer, Role

app = typer.Typer(help="Development tokens from the local dev issuer, and its JWKS.", no_args_is_help=True)

KeyFile = Annotated[
    Path | None,
    typer.Option("--key-file", help="Dev issuer key (default: HOMEROOM_AUTH_DEV_KEY_FILE or .homeroom/dev-issuer.pem)"),
]


def _issuer(key_file: Path | None) -> DevIssuer:
    # Settings are read when the command runs, so environment variables apply.
    settings = AuthSettings()
    return DevIssuer(key_file or settings.dev_key_file, settings.issuer, settings.audience)


@app.command()
def issue(
    role: Annotated[Role, typer.Option("--role", help="Role the token grants.", case_sensitive=False)],
    subject: Annotated[str, typer.Option("--subject", help="Who the token is for (user or client id).")],
    district: Annotated[str | None, typer.Option("--district", help="District id (district and school staff).")] = None,
    school: Annotated[list[str] | None, typer.Option("--school", help="School id (school staff); repeatable.")] = None,
    agreement: Annotated[str | None, typer.Option("--agreement", help="Data-sharing agreement id (vendor).")] = None,
    org: Annotated[str | None, typer.Option("--org", help="Vendor organisation.")] = None,
    student: Annotated[
        list[str] | None, typer.Option("--student", help="Pseudonymous student key (parent); repeatable.")
    ] = None,
    client_id: Annotated[str | None, typer.Option("--client-id", help="OAuth client id to record.")] = None,
    ttl: Annotated[int, typer.Option("--ttl", min=1, help="Lifetime in seconds.")] = 3600,
    service: Annotated[
        list[str] | None,
        typer.Option("--service", help="Service the token is for (its audience); repeatable. Default: every one."),
    ] = None,
    key_file: KeyFile = None,
) -> None:
    """Print a signed bearer token for ROLE."""
    try:
        token = _issuer(key_file).issue(
            role,
            subject=subject,
            district=district,
            schools=school or (),
            agreement=agreement,
            organization=org,
            students=student or (),
            client_id=client_id,
            ttl_s=ttl,
            services=service or None,
        )
    except ValueError as exc:  # the scope does not fit the role: say which claim is wrong
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(token)


@app.command()
def jwks(key_file: KeyFile = None) -> None:
    """Print the dev issuer's public key set (JWKS) as JSON."""
    typer.echo(json.dumps(_issuer(key_file).jwks(), indent=2))
