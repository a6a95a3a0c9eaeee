"""Who is signed in: the bearer token in a cookie, checked on every request.

The cookie holds the same token the services' APIs take (HttpOnly, so page scripts never
read it; SameSite=Strict, so no other site's page sends it; Secure outside development).
The portal verifies it with the kernel's verifier to know whom to greet and which pages
to offer, and forwards it unchanged: the services decide what the person may see.

Forms that change something carry a CSRF token derived from the session token (an HMAC
keyed by it), so only a page rendered for this session can produce it; POSTs must also
come from the portal's own origin when the browser says where they come from.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import Request
from starlette.responses import Response

from homeroom.auth import DEV_ISSUER, AuthenticationError, AuthSettings, DevIssuer, Principal, TokenVerifier
from services.portal.settings import PortalSettings

OIDC_FLOW_COOKIE = "homeroom_oidc_flow"


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    principal: Principal

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)


def csrf_token(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"homeroom-portal-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(session.csrf, submitted)


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin (Origin, else Referer)."""
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if not claimed or claimed == "null":
        return claimed is None
    parts = urlsplit(claimed)
    return parts.netloc == request.headers.get("host", "")


class SignIn:
    """Verifies sessions; mints development tokens; runs the OIDC code flow."""

    def __init__(self, settings: PortalSettings, auth: AuthSettings) -> None:
        self.settings = settings
        self.verifier: TokenVerifier = auth.build_verifier("portal")
        # Development sign-in only where the services trust the development issuer.
        trusts_dev_issuer = not (auth.jwks_url or auth.jwks_file) and auth.issuer == DEV_ISSUER
        self.dev_issuer: DevIssuer | None = (
            auth.dev_issuer()
            if settings.dev_sign_in
            and auth.environment != "production"
            and settings.environment != "production"
            and trusts_dev_issuer
            else None
        )
        self._discovery: dict[str, Any] | None = None

    # --- sessions ---------------------------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        """The signed-in person, or None (no cookie, or a token the issuer no longer vouches for)."""
        token = request.cookies.get(self.settings.session_cookie)
        if not token:
            return None
        try:
            return Session(token, self.verifier.verify(token))
        except AuthenticationError:
            return None

    def start_session(self, response: Response, token: str) -> None:
        self.verifier.verify(token)  # never store a token the services would refuse
        response.set_cookie(
            self.settings.session_cookie,
            token,
            httponly=True,
            samesite="strict",
            secure=self.settings.secure_cookies,
            path="/",
        )

    def end_session(self, response: Response) -> None:
        response.delete_cookie(
            self.settings.session_cookie, httponly=True, samesite="strict", secure=self.settings.secure_cookies
        )

    # --- OpenID Connect ---------------------------------------------------------------------

    async def _provider(self, client: httpx.AsyncClient) -> dict[str, Any]:
        if self._discovery is None:
            url = self.settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
            response = await client.get(url)
            response.raise_for_status()
            found = response.json()
            if not isinstance(found, dict) or found.get("issuer", "").rstrip("/") != self.settings.oidc_issuer.rstrip(
                "/"
            ):
                raise ValueError("the OIDC discovery document names another issuer")
            self._discovery = found
        return self._discovery

    async def authorization_redirect(self, client: httpx.AsyncClient, response: Response) -> str:
        """The provider's authorization URL; state and the PKCE verifier go in a short-lived cookie."""
        provider = await self._provider(client)
        state, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        # Lax, not Strict: the provider's redirect back is a cross-site navigation.
        response.set_cookie(
            OIDC_FLOW_COOKIE,
            f"{state}.{verifier}",
            max_age=600,
            httponly=True,
            samesite="lax",
            secure=self.settings.secure_cookies,
            path="/sign-in/oidc",
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.oidc_client_id,
                "redirect_uri": self.settings.oidc_redirect_uri,
                "scope": self.settings.oidc_scopes,
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{provider['authorization_endpoint']}?{query}"

    async def exchange_code(self, client: httpx.AsyncClient, request: Request, code: str, state: str) -> str:
        """The access token for an authorization code; ValueError naming what did not match."""
        flow = request.cookies.get(OIDC_FLOW_COOKIE, "")
        expected_state, _, verifier = flow.partition(".")
        if not expected_state or not hmac.compare_digest(expected_state, state):
            raise ValueError("the sign-in answer does not belong to a sign-in started here (state mismatch)")
        provider = await self._provider(client)
        secret_file = self.settings.oidc_client_secret_file
        secret = secret_file.read_text().strip() if secret_file is not None else ""
        answer = await client.post(
            provider["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.settings.oidc_redirect_uri,
                "code_verifier": verifier,
            },
            auth=(self.settings.oidc_client_id, secret),
        )
        if answer.status_code != 200:
            raise ValueError(f"the identity provider refused the code ({answer.status_code})")
        token = answer.json().get("access_token")
        if not isinstance(token, str) or not token:
            raise ValueError("the identity provider answered without an access token")
        return token


def _ids(form: dict[str, str], name: str) -> list[str]:
    return form.get(name, "").replace(",", " ").split()


def dev_token(issuer: DevIssuer, form: dict[str, str], ttl_s: int = 8 * 3600) -> str:
    """A development token from the sign-in form; ValueError (naming the claim) if the scope does not fit the role."""
    role = form.get("role", "")
    if role == "service":  # a person never signs in as a service (issue 17, item 12)
        raise ValueError("the development sign-in never mints the service role")
    return issuer.issue(
        role,
        subject=form.get("subject", "").strip() or f"dev-{role}",
        district=form.get("district", "").strip() or None,
        schools=_ids(form, "schools"),
        agreement=form.get("agreement", "").strip() or None,
        organization=form.get("organization", "").strip() or None,
        students=_ids(form, "students"),
        ttl_s=ttl_s,
    )
