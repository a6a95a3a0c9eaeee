"""The OpenID Connect sign-in against a small but real provider (a FastAPI app on a local
port): discovery, the redirect with state and PKCE, the code exchange with the client
secret, and the access token becoming the session; a wrong state or verifier is refused."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from homeroom.auth import AuthSettings, DevIssuer
from services.portal.app import create_portal_app
from services.portal.settings import PortalSettings
from tests.services.transfer.peers import serve

CLIENT_ID, CLIENT_SECRET = "homeroom-portal", "s3cret-from-the-provider"
REDIRECT = "http://portal.test/sign-in/oidc/callback"
CHILD = "stu_oidcchild"


def provider(issuer: DevIssuer, codes: dict[str, str], base: list[str]) -> FastAPI:
    """Authorization codes in `codes` (code → PKCE challenge) stand for a person who signed in."""
    app = FastAPI()

    @app.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        return {
            "issuer": base[0],
            "authorization_endpoint": f"{base[0]}/authorize",
            "token_endpoint": f"{base[0]}/token",
        }

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (
            request.headers.get("authorization") != expected
            or form.get("grant_type") != "authorization_code"
            or form.get("redirect_uri") != REDIRECT
            or codes.pop(str(form.get("code")), None) != challenge
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        access = issuer.issue("parent", subject="oidc-parent", students=[CHILD], ttl_s=600)
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 600})

    return app


async def test_oidc_code_flow_signs_a_person_in(tmp_path: Path) -> None:
    dev_key = tmp_path / "issuer.pem"
    issuer = DevIssuer(dev_key)
    codes: dict[str, str] = {}
    base: list[str] = []
    secret = tmp_path / "client-secret"
    secret.write_text(CLIENT_SECRET + "\n")
    async with serve(provider(issuer, codes, base)) as url:
        base.append(url)
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
            codes["code-1"] = query["code_challenge"]
            forged = await client.get("/sign-in/oidc/callback", params={"code": "code-1", "state": "forged"})
            assert forged.status_code == 401 and "state mismatch" in forged.text
            # A code issued for another PKCE challenge is refused by the provider.
            codes["code-2"] = "another-challenge"
            stolen = await client.get("/sign-in/oidc/callback", params={"code": "code-2", "state": query["state"]})
            assert stolen.status_code == 401 and "refused the code" in stolen.text
            assert (await client.get("/")).status_code == 200  # still signed out

            done = await client.get("/sign-in/oidc/callback", params={"code": "code-1", "state": query["state"]})
            assert done.status_code == 200 and "Signed in" in done.text, done.text
            cookie = done.headers["set-cookie"].lower()
            assert "homeroom_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
            home = await client.get("/")
            assert home.status_code == 303 and home.headers["location"] == "/parent"
            denied = await client.get("/compliance")
            assert denied.status_code == 403 and "oidc-parent" in denied.text
