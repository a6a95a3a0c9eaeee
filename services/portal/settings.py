"""Settings of the portal (environment prefix HOMEROOM_PORTAL_).

The portal keeps no data: it needs the other services' addresses (the stack sets
HOMEROOM_<NAME>_URL for every service), how people sign in, and how its cookie is sent.
"""

from __future__ import annotations

from pathlib import Path

from homeroom.config import ServiceSettings
from homeroom.peers import peer_url


class PortalSettings(ServiceSettings):
    service_name: str = "portal"  # HOMEROOM_PORTAL_ and its conventional port (ServiceSettings)

    # The services whose APIs the pages read, always with the signed-in person's token.
    ingest_url: str = peer_url("ingest")
    records_url: str = peer_url("records")
    consent_url: str = peer_url("consent")
    transfer_url: str = peer_url("transfer")
    audit_url: str = peer_url("audit")
    incidents_url: str = peer_url("incidents")
    reports_url: str = peer_url("reports")
    peer_timeout_s: float = 15.0

    # Development sign-in: a form that mints a token with the stack's development issuer.
    # Offered only outside production and only while the services trust that issuer.
    dev_sign_in: bool = True

    # Production sign-in: OpenID Connect authorization code flow with PKCE. The access
    # token the provider issues is the bearer token the services verify, so it must carry
    # Homeroom's claims (role and scope, see homeroom/auth.py).
    oidc_issuer: str = ""  # discovery at <issuer>/.well-known/openid-configuration
    oidc_client_id: str = ""
    oidc_client_secret_file: Path | None = None
    oidc_redirect_uri: str = ""  # https://portal.example.org/sign-in/oidc/callback
    oidc_scopes: str = "openid"
    # Where the provider sends the person after signing out there (RP-initiated logout);
    # default: the portal's own front page, from the redirect URI's origin.
    oidc_post_logout_redirect_uri: str = ""

    # Pin the audit log's public key (PEM) for checking proofs; empty: the key the audit service serves.
    audit_public_key_file: Path | None = None

    # Sign-in attempts per client address (homeroom/ratelimit.py); "" switches the limit off.
    sign_in_rate_limit: str = "20/minute"
    session_cookie: str = "homeroom_session"
    session_max_age_s: float = 8 * 3600  # a session ends after this, whatever its tokens say
    # Secure cookies (HTTPS only) everywhere but development; None: decided by the environment.
    cookie_secure: bool | None = None

    @property
    def secure_cookies(self) -> bool:
        return self.cookie_secure if self.cookie_secure is not None else self.environment != "development"

    @property
    def post_logout_uri(self) -> str:
        if self.oidc_post_logout_redirect_uri:
            return self.oidc_post_logout_redirect_uri
        parts = self.oidc_redirect_uri.split("/")
        return "/".join(parts[:3]) + "/?signed_out=1"

    @property
    def oidc_configured(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id and self.oidc_redirect_uri)

    def require_production_secrets(self) -> None:
        """The portal holds no pseudonym key or keyring; in production it needs a real sign-in."""
        if self.environment != "production":
            return
        if not self.oidc_configured or self.oidc_client_secret_file is None:
            raise ValueError(
                "production start refused: set HOMEROOM_PORTAL_OIDC_ISSUER, HOMEROOM_PORTAL_OIDC_CLIENT_ID, "
                "HOMEROOM_PORTAL_OIDC_CLIENT_SECRET_FILE and HOMEROOM_PORTAL_OIDC_REDIRECT_URI "
                "(development sign-in is never offered in production)"
            )
        if not self.oidc_issuer.startswith("https://") or not self.oidc_redirect_uri.startswith("https://"):
            raise ValueError("production start refused: the OIDC issuer and redirect URL must be https")
