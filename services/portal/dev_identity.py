"""A development OpenID Connect provider inside the portal, for the demo and the tests (issue 24).

Families sign in with whatever identity the district's provider accepts (Login.gov, a Google or
Microsoft account); that identity says who the person is and nothing about their children. This
provider plays that part on a development stack: anyone may type a name, and it vouches for
exactly that as the ID token's `sub`, with no Homeroom role or scope. The portal then runs its
real OIDC code flow against it (discovery, state, nonce, PKCE S256, the code exchange, the ID
token's signature, issuer, audience and nonce), so a parent reaches their child only through a
linking code, never through the development sign-in. Mounted only where the development
sign-in is offered (never in production); its signing key lives in memory.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Depends, Form, Query, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from homeroom.auth import public_jwk
from services.portal.web import PageError, PortalDep, render

PREFIX = "/dev-identity"
CODE_TTL_S = 120

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@dataclass
class DevProvider:
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    # code -> (subject, nonce, PKCE challenge, redirect URI, issued at)
    codes: dict[str, tuple[str, str, str, str, float]] = field(default_factory=dict)

    @property
    def jwk(self) -> dict[str, Any]:
        return public_jwk(self.key.public_key())


def _offered(portal: Any) -> None:
    if portal.sign_in.dev_issuer is None or not portal.settings.oidc_issuer.endswith(PREFIX):
        raise PageError(404, "Not here", "This portal has no development identity provider.")


def _provider(request: Request) -> DevProvider:
    found = getattr(request.app.state, "dev_identity", None)
    if not isinstance(found, DevProvider):
        found = request.app.state.dev_identity = DevProvider()
    return found


Provider = Annotated[DevProvider, Depends(_provider)]


@router.get("/.well-known/openid-configuration")
async def discovery(portal: PortalDep) -> dict[str, Any]:
    _offered(portal)
    issuer = portal.settings.oidc_issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "code_challenge_methods_supported": ["S256"],
    }


@router.get("/jwks")
async def jwks(portal: PortalDep, provider: Provider) -> dict[str, Any]:
    _offered(portal)
    return {"keys": [provider.jwk]}


@router.get("/authorize")
async def authorize_page(
    request: Request,
    portal: PortalDep,
    client_id: Annotated[str, Query(max_length=200)] = "",
    redirect_uri: Annotated[str, Query(max_length=2000)] = "",
    state: Annotated[str, Query(max_length=512)] = "",
    nonce: Annotated[str, Query(max_length=512)] = "",
    code_challenge: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    _offered(portal)
    _check_client(portal, client_id, redirect_uri)
    flow = {"redirect_uri": redirect_uri, "state": state, "nonce": nonce, "code_challenge": code_challenge}
    return render(request, "dev_identity.html", None, flow=flow)


@router.post("/authorize")
async def authorize(
    portal: PortalDep,
    provider: Provider,
    subject: Annotated[str, Form(min_length=1, max_length=200)],
    redirect_uri: Annotated[str, Form(max_length=2000)],
    state: Annotated[str, Form(max_length=512)],
    nonce: Annotated[str, Form(max_length=512)],
    code_challenge: Annotated[str, Form(max_length=200)],
) -> Response:
    _offered(portal)
    _check_client(portal, portal.settings.oidc_client_id, redirect_uri)
    code = secrets.token_urlsafe(24)
    provider.codes[code] = (subject.strip(), nonce, code_challenge, redirect_uri, time.time())
    return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}", status_code=303)


@router.post("/token")
async def token(request: Request, portal: PortalDep, provider: Provider) -> Response:
    _offered(portal)
    form = await request.form()
    issued = provider.codes.pop(str(form.get("code", "")), None)
    verifier = str(form.get("code_verifier", ""))
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    if (
        issued is None
        or form.get("grant_type") != "authorization_code"
        or issued[2] != challenge
        or issued[3] != form.get("redirect_uri")
        or time.time() - issued[4] > CODE_TTL_S
    ):
        return JSONResponse({"error": "invalid_grant"}, status_code=400)
    subject, nonce = issued[0], issued[1]
    now = int(time.time())
    claims = {
        "iss": portal.settings.oidc_issuer,
        "aud": portal.settings.oidc_client_id,
        "sub": subject,
        "iat": now,
        "exp": now + 600,
        "nonce": nonce,
    }
    id_token = jwt.encode(claims, provider.key, algorithm="EdDSA", headers={"kid": provider.jwk["kid"]})
    # The access token is the provider's own, opaque to Homeroom: it names no role, no child.
    return JSONResponse(
        {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 600, "id_token": id_token}
    )


def _check_client(portal: Any, client_id: str, redirect_uri: str) -> None:
    if client_id != portal.settings.oidc_client_id or redirect_uri != portal.settings.oidc_redirect_uri:
        raise PageError(400, "Unknown client", "This provider answers only the portal's own sign-in.")
