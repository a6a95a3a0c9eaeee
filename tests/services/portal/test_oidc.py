"""The OpenID Connect sign-in against a small but real provider (a FastAPI app on a local
port): discovery, the redirect with state, nonce and PKCE, the code exchange with the client
secret, the ID token checked (signature, issuer, audience, nonce), the access token kept in
a server-side session, refreshed before it ends, and signing out ending the session here
and at the provider; a wrong state, verifier or nonce is refused."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from homeroom.auth import AuthenticationError, AuthSettings, DevIssuer
from services.portal.app import create_portal_app
from services.portal.session import csrf_token
from services.portal.settings import PortalSettings
from tests.services.transfer.peers import serve

CLIENT_ID, CLIENT_SECRET = "homeroom-portal", "s3cret-from-the-provider"
REDIRECT = "http://portal.test/sign-in/oidc/callback"
CHILD = "stu_oidcchild"


@dataclass
class Provider:
    """What the provider knows: codes (code → (PKCE challenge, nonce)), refresh tokens, logouts."""

    codes: dict[str, tuple[str, str]] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    logouts: list[dict[str, str]] = field(default_factory=list)
    access_ttl_s: int = 600
    base: list[str] = field(default_factory=list)


def provider(issuer: DevIssuer, state: Provider) -> FastAPI:
    app = FastAPI()
    key, jwk = issuer._key()

    def id_token(nonce: str, audience: str = CLIENT_ID) -> str:
        now = int(time.time())
        claims = {"iss": state.base[0], "aud": audience, "sub": "oidc-parent", "iat": now, "exp": now + 600}
        return jwt.encode({**claims, "nonce": nonce}, key, algorithm="EdDSA", headers={"kid": jwk["kid"]})

    app.state.id_token = id_token

    @app.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        base = state.base[0]
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/jwks",
            "end_session_endpoint": f"{base}/logout",
        }

    @app.get("/jwks")
    async def jwks() -> dict[str, Any]:
        return issuer.jwks()

    @app.get("/logout")
    async def logout(request: Request) -> dict[str, str]:
        state.logouts.append(dict(request.query_params))
        return {"signed_out": "yes"}

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        access = issuer.issue("parent", subject="oidc-parent", students=[CHILD], ttl_s=state.access_ttl_s)
        refresh = secrets.token_urlsafe(16)
        if form.get("grant_type") == "refresh_token":
            if str(form.get("refresh_token")) not in state.refresh_tokens:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            state.refresh_tokens.add(refresh)
            return JSONResponse({"access_token": access, "token_type": "Bearer", "refresh_token": refresh})
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        issued = state.codes.pop(str(form.get("code")), None)
        if (
            form.get("grant_type") != "authorization_code"
            or form.get("redirect_uri") != REDIRECT
            or issued is None
            or issued[0] != challenge
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        state.refresh_tokens.add(refresh)
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": state.access_ttl_s,
                "refresh_token": refresh,
                "id_token": id_token(issued[1]),
            }
        )

    return app


async def test_oidc_code_flow_signs_a_person_in(tmp_path: Path) -> None:
    dev_key = tmp_path / "issuer.pem"
    issuer = DevIssuer(dev_key)
    known = Provider()
    codes = known.codes
    secret = tmp_path / "client-secret"
    secret.write_text(CLIENT_SECRET + "\n")
    async with serve(provider(issuer, known)) as url:
        known.base.append(url)
        settings = PortalSettings(
            oidc_issuer=url,
            oidc_client_id=CLIENT_ID,
            oidc_client_secret_file=secret,
            oidc_redirect_uri=REDIRECT,
            dev_sign_in=False,
        )
        app = create_portal_app(settings, AuthSettings(dev_key_file=dev_key))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal.test") as client,
        ):
            page = await client.get("/sign-in")
            assert 'href="/sign-in/oidc"' in page.text and "Development sign-in" not in page.text
            assert (await client.post("/sign-in/dev", data={"role": "compliance"})).status_code == 404

            start = await client.get("/sign-in/oidc")
            assert start.status_code == 303
            location = urlsplit(start.headers["location"])
            assert f"{location.scheme}://{location.netloc}{location.path}" == f"{url}/authorize"
            query = {k: v[0] for k, v in parse_qs(location.query).items()}
            assert query["client_id"] == CLIENT_ID and query["redirect_uri"] == REDIRECT
            assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
            assert "samesite=lax" in start.headers["set-cookie"].lower()

            # The provider's answer must belong to this sign-in.
            assert query["nonce"] and query["state"] != query["nonce"]
            codes["code-1"] = (query["code_challenge"], query["nonce"])
            forged = await client.get("/sign-in/oidc/callback", params={"code": "code-1", "state": "forged"})
            assert forged.status_code == 401 and "state mismatch" in forged.text
            # A code issued for another PKCE challenge is refused by the provider.
            codes["code-2"] = ("another-challenge", query["nonce"])
            stolen = await client.get("/sign-in/oidc/callback", params={"code": "code-2", "state": query["state"]})
            assert stolen.status_code == 401 and "refused the code" in stolen.text
            assert (await client.get("/")).status_code == 200  # still signed out

            # An ID token minted for another sign-in (its nonce) is refused.
            codes["code-3"] = (query["code_challenge"], "a-nonce-of-another-sign-in")
            replayed = await client.get("/sign-in/oidc/callback", params={"code": "code-3", "state": query["state"]})
            assert replayed.status_code == 401 and "ID token is not valid" in replayed.text, replayed.text

            known.access_ttl_s = 30  # shorter than the refresh margin: every request refreshes it
            done = await client.get("/sign-in/oidc/callback", params={"code": "code-1", "state": query["state"]})
            assert done.status_code == 200 and "Signed in" in done.text, done.text
            cookie = done.headers["set-cookie"].lower()
            assert "homeroom_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
            home = await client.get("/")
            assert home.status_code == 303 and home.headers["location"] == "/parent"
            denied = await client.get("/compliance")
            assert denied.status_code == 403 and "oidc-parent" in denied.text

            # The cookie is an opaque session id, never the bearer token the APIs take.
            sid = client.cookies["homeroom_session"]
            assert sid.count(".") == 0
            verifier = issuer.verifier(service="records")
            with pytest.raises(AuthenticationError):
                verifier.verify(sid)
            store = app.state.portal.sign_in.store
            assert len(store) == 1 and len(known.refresh_tokens) >= 2  # refreshed, with the refresh token

            # Signing out ends the session on the server and at the provider.
            out = await client.post(
                "/sign-out", data={"csrf": csrf_token(sid)}, headers={"origin": "http://portal.test"}
            )
            assert out.status_code == 303 and out.headers["location"].startswith(f"{url}/logout?"), out.headers
            logout = {k: v[0] for k, v in parse_qs(urlsplit(out.headers["location"]).query).items()}
            assert logout["client_id"] == CLIENT_ID and logout["id_token_hint"].count(".") == 2
            assert len(store) == 0
            # Issue 17, item 9: the old cookie still opened pages for 8 hours. Not any more.
            client.cookies.set("homeroom_session", sid)
            again = await client.get("/parent")
            assert again.status_code == 303 and again.headers["location"].startswith("/sign-in")
