"""Who is signed in: a server-side session, named by an opaque id in a cookie.

The cookie holds only a random session id (HttpOnly, SameSite=Strict, Secure outside
development); the bearer token the services' APIs take stays in the portal's session
store, so a copied cookie is no bearer token at any API, and signing out ends the session
on the server: the old cookie opens nothing afterwards (issue 17, item 9). Each request
checks the stored token with the kernel's verifier and forwards it unchanged: the services
decide what the person may see.

Sign-in in production is OpenID Connect (authorization code with PKCE) through Authlib's
OAuth 2 client, which builds the authorization request and exchanges and refreshes tokens;
the ID token is checked with joserfc (signature against the provider's published keys,
issuer, audience, expiry and the nonce this sign-in sent), the state against the flow
cookie. An access token near its end is refreshed with the refresh token; signing out
ends the provider's session too (RP-initiated logout at `end_session_endpoint`).

Forms that change something carry a CSRF token derived from the session id (an HMAC keyed
by it), so only a page rendered for this session can produce it; POSTs must also come from
the portal's own origin when the browser says where they come from.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from fastapi import Request
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from homeroom.auth import DEV_ISSUER, AuthenticationError, AuthSettings, DevIssuer, Principal, Role, TokenVerifier
from services.portal.settings import PortalSettings

OIDC_FLOW_COOKIE = "homeroom_oidc_flow"
REFRESH_AHEAD_S = 60  # refresh an access token this close to its end


@dataclass(frozen=True, slots=True)
class Session:
    token: str  # the access token forwarded to the services
    principal: Principal
    sid: str = ""  # the opaque id in the cookie

    @property
    def csrf(self) -> str:
        return csrf_token(self.sid or self.token)


def csrf_token(session_key: str) -> str:
    return hmac.new(session_key.encode(), b"homeroom-portal-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(session.csrf, submitted)


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin (Origin, else Referer)."""
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if not claimed or claimed == "null":
        return claimed is None
    parts = urlsplit(claimed)
    return parts.netloc == request.headers.get("host", "")


# --- the session store ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredSession:
    access_token: str
    expires_at: float  # when the access token ends (POSIX seconds)
    created_at: float
    refresh_token: str | None = None
    id_token: str | None = None
    # A parent signed in with an identity the provider vouches for but that carries no Homeroom
    # role: their token comes from consent's guardianship links, minted again when it nears its end.
    guardian_subject: str | None = None


class SessionStore(Protocol):
    """Where sessions live. In memory per portal process (run one portal, or route a person to
    the same one); a shared store implements the same four calls."""

    def create(self, session: StoredSession) -> str: ...
    def get(self, sid: str) -> StoredSession | None: ...
    def put(self, sid: str, session: StoredSession) -> None: ...
    def delete(self, sid: str) -> None: ...


class MemorySessionStore:
    def __init__(self, max_age_s: float, clock: Any = time.time) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._sessions: dict[str, StoredSession] = {}

    def create(self, session: StoredSession) -> str:
        self._sweep()
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = session
        return sid

    def get(self, sid: str) -> StoredSession | None:
        found = self._sessions.get(sid)
        if found is not None and self._clock() - found.created_at > self.max_age_s:
            self.delete(sid)
            return None
        return found

    def put(self, sid: str, session: StoredSession) -> None:
        if sid in self._sessions:
            self._sessions[sid] = session

    def delete(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _sweep(self) -> None:
        now = self._clock()
        for sid in [k for k, v in self._sessions.items() if now - v.created_at > self.max_age_s]:
            del self._sessions[sid]


class SignIn:
    """Verifies sessions; mints development tokens; runs the OIDC code flow; signs out."""

    def __init__(self, settings: PortalSettings, auth: AuthSettings, store: SessionStore | None = None) -> None:
        self.settings = settings
        self.verifier: TokenVerifier = auth.build_verifier("portal")
        self.store: SessionStore = store or MemorySessionStore(settings.session_max_age_s)
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
        self._auth = auth
        # Set by the app's lifespan: a parent token for a person, from consent's guardianship links.
        self.guardian_minter: Callable[[str], Awaitable[str]] | None = None
        self._discovery: dict[str, Any] | None = None
        self._provider_keys: KeySet | None = None
        self._refreshing: dict[str, asyncio.Lock] = {}

    # --- sessions ---------------------------------------------------------------------------

    async def session(self, request: Request) -> Session | None:
        """The signed-in person, or None (no cookie, an ended session, or a token the issuer
        no longer vouches for and that could not be refreshed)."""
        sid = request.cookies.get(self.settings.session_cookie)
        if not sid:
            return None
        stored = self.store.get(sid)
        if stored is None:
            return None
        if stored.guardian_subject and stored.expires_at - time.time() < REFRESH_AHEAD_S:
            stored = await self.renew_guardian(sid)
            if stored is None:
                return None
        elif stored.refresh_token and stored.expires_at - time.time() < REFRESH_AHEAD_S:
            stored = await self._refresh(sid, stored)
            if stored is None:
                return None
        try:
            return Session(stored.access_token, self.verifier.verify(stored.access_token), sid)
        except AuthenticationError:
            self.store.delete(sid)
            return None

    def start_session(
        self,
        response: Response,
        token: str,
        *,
        refresh_token: str | None = None,
        id_token: str | None = None,
        guardian_subject: str | None = None,
    ) -> str:
        """Store the session (never a token the services would refuse) and set its cookie."""
        principal = self.verifier.verify(token)
        del principal
        claims = _unverified_claims(token)
        now = time.time()
        expires = float(claims.get("exp", now + 3600))
        sid = self.store.create(StoredSession(token, expires, now, refresh_token, id_token, guardian_subject))
        response.set_cookie(
            self.settings.session_cookie,
            sid,
            httponly=True,
            samesite="strict",
            secure=self.settings.secure_cookies,
            path="/",
            max_age=int(self.settings.session_max_age_s),
        )
        return sid

    # --- parents linked by guardianship (issue 24) ---------------------------------------------

    def service_token(self) -> str:
        """The portal's own token for consent's guardianship token route: from
        HOMEROOM_SERVICE_TOKEN_FILE in production, else minted by the development issuer."""
        if self.settings.service_token_file is not None:
            return self.settings.service_token_file.read_text().strip()
        if self._auth.environment == "production" or self._auth.jwks_url or self._auth.jwks_file:
            raise RuntimeError("no service token for the portal: set HOMEROOM_SERVICE_TOKEN_FILE")
        return self._auth.dev_issuer().issue(Role.SERVICE, subject="homeroom-portal", ttl_s=300, services=["consent"])

    async def guardian_token(self, subject: str) -> str:
        if self.guardian_minter is None:
            raise RuntimeError("the portal's lifespan sets guardian_minter")
        return await self.guardian_minter(subject)

    async def renew_guardian(self, sid: str) -> StoredSession | None:
        """A fresh parent token from the person's current links (after a redemption, or near
        its end); None (session ended) when consent cannot give one."""
        current = self.store.get(sid)
        if current is None or current.guardian_subject is None:
            return current
        try:
            token = await self.guardian_token(current.guardian_subject)
            self.verifier.verify(token)
        except Exception:  # consent unreachable or the token refused: the person signs in again
            self.store.delete(sid)
            return None
        renewed = replace(
            current, access_token=token, expires_at=float(_unverified_claims(token).get("exp", time.time() + 60))
        )
        self.store.put(sid, renewed)
        return renewed

    def end_session(self, response: Response, request: Request | None = None) -> StoredSession | None:
        """Forget the session on the server (the cookie opens nothing afterwards) and clear it."""
        ended: StoredSession | None = None
        if request is not None:
            sid = request.cookies.get(self.settings.session_cookie)
            if sid:
                ended = self.store.get(sid)
                self.store.delete(sid)
        response.delete_cookie(
            self.settings.session_cookie, httponly=True, samesite="strict", secure=self.settings.secure_cookies
        )
        return ended

    # --- OpenID Connect ---------------------------------------------------------------------

    def _client(self, http: httpx.AsyncClient | None = None, **extra: Any) -> AsyncOAuth2Client:
        secret_file = self.settings.oidc_client_secret_file
        return AsyncOAuth2Client(
            client_id=self.settings.oidc_client_id,
            client_secret=secret_file.read_text().strip() if secret_file is not None else None,
            redirect_uri=self.settings.oidc_redirect_uri,
            scope=self.settings.oidc_scopes,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 (a method name, not a secret)
            timeout=self.settings.peer_timeout_s,
            **extra,
        )

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

    async def _keys(self, client: httpx.AsyncClient, provider: dict[str, Any]) -> KeySet:
        if self._provider_keys is None:
            response = await client.get(provider["jwks_uri"])
            response.raise_for_status()
            self._provider_keys = KeySet.import_key_set(response.json())
        return self._provider_keys

    async def authorization_redirect(self, client: httpx.AsyncClient, response: Response) -> str:
        """The provider's authorization URL; state, nonce and the PKCE verifier go in a short-lived cookie."""
        provider = await self._provider(client)
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        async with self._client() as oauth:
            url, _ = oauth.create_authorization_url(
                provider["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
            )
        # Lax, not Strict: the provider's redirect back is a cross-site navigation.
        response.set_cookie(
            OIDC_FLOW_COOKIE,
            f"{state}.{nonce}.{verifier}",
            max_age=600,
            httponly=True,
            samesite="lax",
            secure=self.settings.secure_cookies,
            path="/sign-in/oidc",
        )
        return str(url)

    async def exchange_code(
        self, client: httpx.AsyncClient, request: Request, code: str, state: str
    ) -> tuple[str, str | None, str | None, str | None]:
        """(access token, refresh token, ID token, the ID token's verified subject) for an
        authorization code; ValueError naming what did not match: the state, the provider's
        answer, the ID token or its nonce."""
        flow = request.cookies.get(OIDC_FLOW_COOKIE, "")
        expected_state, _, rest = flow.partition(".")
        nonce, _, verifier = rest.partition(".")
        if not expected_state or not hmac.compare_digest(expected_state, state):
            raise ValueError("the sign-in answer does not belong to a sign-in started here (state mismatch)")
        provider = await self._provider(client)
        async with self._client() as oauth:
            try:
                token = await oauth.fetch_token(
                    provider["token_endpoint"], grant_type="authorization_code", code=code, code_verifier=verifier
                )
            except Exception as exc:  # Authlib raises OAuthError and httpx errors
                raise ValueError(f"the identity provider refused the code ({type(exc).__name__})") from None
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise ValueError("the identity provider answered without an access token")
        id_token = token.get("id_token")
        subject: str | None = None
        if "openid" in self.settings.oidc_scopes.split():
            if not isinstance(id_token, str):
                raise ValueError("the identity provider answered without an ID token")
            subject = await self._check_id_token(client, provider, id_token, nonce)
        refresh = token.get("refresh_token")
        return (
            access,
            refresh if isinstance(refresh, str) else None,
            id_token if isinstance(id_token, str) else None,
            subject,
        )

    async def _check_id_token(
        self, client: httpx.AsyncClient, provider: dict[str, Any], id_token: str, nonce: str
    ) -> str:
        """The ID token's subject, once its signature, issuer, audience, expiry and nonce check out."""
        keys = await self._keys(client, provider)
        try:
            decoded = jose_jwt.decode(id_token, keys, algorithms=["EdDSA", "ES256", "RS256"])
            jose_jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": provider["issuer"]},
                aud={"essential": True, "value": self.settings.oidc_client_id},
                sub={"essential": True},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
                leeway=30,
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise ValueError(f"the ID token is not valid for this sign-in ({type(exc).__name__}: {exc})") from None
        return str(decoded.claims["sub"])

    async def _refresh(self, sid: str, stored: StoredSession) -> StoredSession | None:
        """A fresh access token from the refresh token; None (session ended) when refused."""
        lock = self._refreshing.setdefault(sid, asyncio.Lock())
        async with lock:
            current = self.store.get(sid)
            if current is None:
                return None
            if current.expires_at - time.time() >= REFRESH_AHEAD_S:  # refreshed meanwhile
                return current
            try:
                async with httpx.AsyncClient(timeout=self.settings.peer_timeout_s) as client:
                    provider = await self._provider(client)
                async with self._client() as oauth:
                    token = await oauth.refresh_token(provider["token_endpoint"], refresh_token=current.refresh_token)
                access = str(token["access_token"])
                await run_in_threadpool(self.verifier.verify, access)
            except Exception:  # refused or unreachable: the person signs in again
                self.store.delete(sid)
                return None
            finally:
                self._refreshing.pop(sid, None)
            renewed = replace(
                current,
                access_token=access,
                expires_at=float(_unverified_claims(access).get("exp", time.time() + 300)),
                refresh_token=str(token.get("refresh_token") or current.refresh_token),
            )
            self.store.put(sid, renewed)
            return renewed

    async def logout_url(self, ended: StoredSession | None, post_logout: str) -> str | None:
        """The provider's end-session URL (OIDC RP-initiated logout), when it has one."""
        if not self.settings.oidc_configured or ended is None or ended.id_token is None:
            return None
        async with httpx.AsyncClient(timeout=self.settings.peer_timeout_s) as client:
            provider = await self._provider(client)
        endpoint = provider.get("end_session_endpoint")
        if not endpoint:
            return None
        query = {
            "id_token_hint": ended.id_token,
            "client_id": self.settings.oidc_client_id,
            "post_logout_redirect_uri": post_logout,
        }
        return f"{endpoint}?{urlencode(query)}"


def _unverified_claims(token: str) -> dict[str, Any]:
    import jwt

    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


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
