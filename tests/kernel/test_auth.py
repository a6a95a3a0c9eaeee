"""Bearer-token authentication and role scopes, with real keys and real signatures.

Tokens are signed by PyJWT with freshly generated Ed25519, P-256 and RSA keys (an
"external" issuer, as production would have) or by the DevIssuer; attack tokens are
built byte by byte, as an attacker would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from homeroom.auth import (
    AuthenticationError,
    AuthSettings,
    CurrentPrincipal,
    DevIssuer,
    Forbidden,
    IssuerUnavailable,
    JwksUrlKeys,
    Principal,
    Role,
    StaticKeys,
    TokenVerifier,
    public_jwk,
    require_roles,
)
from homeroom.problems import install_problem_handlers
from homeroom_dev.auth_cli import app as token_cli

ISSUER = "https://id.district.test"
AUDIENCE = "homeroom"

ED_KEY = Ed25519PrivateKey.generate()
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_ED_KEY = Ed25519PrivateKey.generate()  # an attacker's key
PRIVATE_KEYS: dict[str, Any] = {"EdDSA": ED_KEY, "ES256": EC_KEY, "RS256": RSA_KEY}
KIDS = {"EdDSA": "ed-1", "ES256": "ec-1", "RS256": "rsa-1"}


def external_jwks() -> dict[str, Any]:
    return {"keys": [public_jwk(PRIVATE_KEYS[alg].public_key(), KIDS[alg]) for alg in PRIVATE_KEYS]}


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(ISSUER, AUDIENCE, StaticKeys.from_jwks(external_jwks()))


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "staff-7",
        "iat": now,
        "exp": now + 600,
        "jti": "tok-1",
        "role": "district_staff",
        "district": "d-001",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(
    payload: dict[str, Any], alg: str = "EdDSA", *, key: Any = None, kid: str | None = None, with_kid: bool = True
) -> str:
    """A real signature by the external issuer's key for `alg` (or `key`), under `kid`."""
    headers = {"kid": kid or KIDS[alg]} if with_kid else {}
    return jwt.encode(payload, key or PRIVATE_KEYS[alg], algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"


def refusal(verifier: TokenVerifier, token: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(token)
    return caught.value


# --- accepted tokens ---------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_each_allowed_algorithm_verifies_to_the_principal(verifier: TokenVerifier, alg: str) -> None:
    principal = verifier.verify(sign(claims(client_id="sis-sync"), alg))
    assert principal == Principal(
        subject="staff-7", role=Role.DISTRICT_STAFF, token_id="tok-1", district_id="d-001", client_id="sis-sync"
    )


def test_a_token_expired_within_the_leeway_is_still_accepted(verifier: TokenVerifier) -> None:
    # Clocks between issuer and service drift; 30 s of leeway absorbs it.
    assert verifier.verify(sign(claims(exp=int(time.time()) - 10))).subject == "staff-7"


def test_a_verified_token_is_remembered_until_its_expiry_and_no_longer() -> None:
    now = [time.time()]
    verifier = TokenVerifier(ISSUER, AUDIENCE, StaticKeys.from_jwks(external_jwks()), clock=lambda: now[0])
    token = sign(claims(exp=int(now[0]) + 600))
    assert verifier.cached(token) is None
    principal = verifier.verify(token)
    assert verifier.cached(token) is principal  # the next request costs a lookup
    # Only the exact text is remembered: one byte more or less is verified (and refused).
    assert refusal(verifier, token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]).reason == "bad_signature"
    assert refusal(verifier, token + ".x").reason == "malformed"
    now[0] += 599
    assert verifier.cached(token) is principal
    now[0] += 1  # at exp: never answered from memory again, whatever the leeway
    assert verifier.cached(token) is None
    # An expired token the cache forgot is checked in full, and refused.
    expired = sign(claims(exp=int(time.time()) - 120, jti="tok-2"))
    assert refusal(verifier, expired).reason == "expired"
    assert verifier.cached(expired) is None


def test_a_single_key_issuer_need_not_name_the_key() -> None:
    only_ed = TokenVerifier(ISSUER, AUDIENCE, StaticKeys.from_jwks({"keys": [external_jwks()["keys"][0]]}))
    assert only_ed.verify(sign(claims(), with_kid=False)).role is Role.DISTRICT_STAFF


# --- refused tokens ----------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_tokens_are_refused(verifier: TokenVerifier, alg: str) -> None:
    error = refusal(verifier, forge({"alg": alg, "typ": "JWT", "kid": "ed-1"}, claims()))
    assert error.reason == "algorithm_refused"
    assert "unsigned" in str(error)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_hmac_signed_with_the_issuer_public_key_is_refused(alg: str) -> None:
    # The key-confusion attack: the attacker knows the public key, so signs with it as an
    # HMAC secret and hopes the verifier lets the token's header pick the algorithm.
    public_pem = (
        PRIVATE_KEYS[alg]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    pem_verifier = TokenVerifier(ISSUER, AUDIENCE, StaticKeys.from_pem(public_pem, kid="k"))
    assert pem_verifier.verify(sign(claims(), alg, kid="k")).subject == "staff-7"  # the real key works

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k"}).encode())
    body = b64(json.dumps(claims(role="compliance", district=None)).encode())
    mac = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    error = refusal(pem_verifier, f"{header}.{body}.{b64(mac)}")
    assert error.reason == "algorithm_refused"
    assert "HS256" in str(error)


def test_an_algorithm_outside_the_allow_list_is_refused(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), RSA_KEY, algorithm="PS256", headers={"kid": "rsa-1"})
    error = refusal(verifier, token)
    assert error.reason == "algorithm_refused"
    assert "PS256" in str(error)


def test_a_token_whose_algorithm_differs_from_its_key_is_refused(verifier: TokenVerifier) -> None:
    # Signed with the P-256 key but pointing at the Ed25519 key's id.
    error = refusal(verifier, sign(claims(), "ES256", kid="ed-1"))
    assert error.reason == "algorithm_refused"


def test_a_token_signed_by_another_key_under_a_trusted_kid_is_refused(verifier: TokenVerifier) -> None:
    error = refusal(verifier, sign(claims(), "EdDSA", key=OTHER_ED_KEY, kid="ed-1"))
    assert error.reason == "bad_signature"


def test_a_tampered_payload_is_refused(verifier: TokenVerifier) -> None:
    header, _, signature = sign(claims()).split(".")
    raised = b64(json.dumps(claims(role="compliance", district=None)).encode())
    assert refusal(verifier, f"{header}.{raised}.{signature}").reason == "bad_signature"


def test_an_unknown_key_id_is_refused(verifier: TokenVerifier) -> None:
    error = refusal(verifier, sign(claims(), kid="rotated-away"))
    assert error.reason == "unknown_key"
    assert "rotated-away" in str(error)


def test_a_token_without_kid_is_refused_when_the_issuer_has_several_keys(verifier: TokenVerifier) -> None:
    assert refusal(verifier, sign(claims(), with_kid=False)).reason == "unknown_key"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.test"}, "wrong_issuer"),
        ({"aud": "another-app"}, "wrong_audience"),
        # Times are taken when the test runs, not when it is collected: a slow suite once ran
        # this more than 600 s after collection, and the "future" nbf had become the past.
        ({"exp": lambda: int(time.time()) - 120}, "expired"),
        ({"nbf": lambda: int(time.time()) + 600}, "not_yet_valid"),
        ({"iat": lambda: int(time.time()) + 600}, "not_yet_valid"),
        ({"role": None}, "missing_claim"),
        ({"role": "superuser"}, "unknown_role"),
        ({"role": ["district_staff"]}, "unknown_role"),
        ({"district": 17}, "malformed_claim"),
        ({"sub": ""}, "malformed_claim"),
    ],
)
def test_claims_that_fail_are_refused_with_the_reason(
    verifier: TokenVerifier, overrides: dict[str, Any], reason: str
) -> None:
    values = {name: value() if callable(value) else value for name, value in overrides.items()}
    assert refusal(verifier, sign(claims(**values))).reason == reason


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "exp", "iat", "jti"])
def test_each_required_claim_is_required(verifier: TokenVerifier, claim: str) -> None:
    payload = claims()
    del payload[claim]
    error = refusal(verifier, sign(payload))
    assert error.reason == "missing_claim"
    assert repr(claim) in str(error)


def test_a_refusal_message_names_the_reason(verifier: TokenVerifier) -> None:
    assert "expired" in str(refusal(verifier, sign(claims(exp=int(time.time()) - 120))))
    assert ISSUER in str(refusal(verifier, sign(claims(iss="https://evil.test"))))


# --- role scopes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "fields"),
    [
        ({"role": "district_staff", "district": "d-1"}, {"district_id": "d-1"}),
        (
            {"role": "school_staff", "district": "d-1", "schools": ["s-1", "s-2"]},
            {"district_id": "d-1", "school_ids": frozenset({"s-1", "s-2"})},
        ),
        (
            {"role": "vendor", "agreement": "dsa-9", "org": "Readwell"},
            {"agreement_id": "dsa-9", "organization": "Readwell"},
        ),
        ({"role": "parent", "students": ["pk-a", "pk-b"]}, {"student_keys": frozenset({"pk-a", "pk-b"})}),
        ({"role": "compliance"}, {}),
        ({"role": "operator"}, {}),
        ({"role": "service", "client_id": "transfer"}, {"client_id": "transfer"}),
    ],
)
def test_each_role_with_its_scope_is_accepted(
    verifier: TokenVerifier, scope: dict[str, Any], fields: dict[str, Any]
) -> None:
    principal = verifier.verify(sign(claims(district=None) | scope))
    assert principal.role == scope["role"]
    for name, value in fields.items():
        assert getattr(principal, name) == value


@pytest.mark.parametrize(
    ("scope", "names"),
    [
        ({"role": "district_staff"}, "district"),
        ({"role": "district_staff", "district": ""}, "district"),
        ({"role": "school_staff", "district": "d-1"}, "school"),
        ({"role": "school_staff", "schools": ["s-1"]}, "district"),
        ({"role": "school_staff", "district": "d-1", "schools": "s-1"}, "schools"),
        ({"role": "vendor", "org": "Readwell"}, "agreement"),
        ({"role": "vendor", "agreement": "dsa-9", "district": "d-1"}, "district"),
        ({"role": "parent", "students": [""]}, "students"),
        ({"role": "compliance", "district": "d-1"}, "district"),
        ({"role": "operator", "students": ["pk-a"]}, "students"),
        ({"role": "district_staff", "district": "d-1", "schools": ["s-1"]}, "schools"),
    ],
)
def test_a_scope_that_does_not_fit_the_role_is_refused(
    verifier: TokenVerifier, scope: dict[str, Any], names: str
) -> None:
    error = refusal(verifier, sign(claims(district=None) | scope))
    assert error.reason in ("scope", "malformed_claim")
    assert names in str(error)


def school_staff() -> Principal:
    return Principal(
        subject="t", role=Role.SCHOOL_STAFF, token_id="j", district_id="d-1", school_ids=frozenset({"s-1"})
    )


def test_district_staff_act_for_their_district_and_its_schools_only() -> None:
    staff = Principal(subject="s", role=Role.DISTRICT_STAFF, token_id="j", district_id="d-1")
    staff.require_district("d-1")
    staff.require_school("d-1", "any-school")
    with pytest.raises(Forbidden) as other:
        staff.require_district("d-2")
    assert other.value.status == 403
    with pytest.raises(Forbidden):
        staff.require_school("d-2", "s-1")


def test_school_staff_act_for_their_schools_not_the_district() -> None:
    teacher = school_staff()
    teacher.require_school("d-1", "s-1")
    assert teacher.is_staff_of("d-1")
    with pytest.raises(Forbidden, match="own schools"):
        teacher.require_district("d-1")
    with pytest.raises(Forbidden):
        teacher.require_school("d-1", "s-2")
    with pytest.raises(Forbidden):
        teacher.require_school("d-2", "s-1")  # the same school id in another district


def test_a_parent_linked_to_no_child_yet_is_signed_in_but_sees_no_student() -> None:
    # Issue 24: a parent signs in before redeeming a linking code; their token names no student.
    unlinked = Principal(subject="p", role=Role.PARENT, token_id="j")
    assert unlinked.student_keys == frozenset() and not unlinked.is_parent_of("pk-a")
    with pytest.raises(Forbidden):
        unlinked.require_parent_of("pk-a")


def test_a_parent_sees_only_their_children() -> None:
    parent = Principal(subject="p", role=Role.PARENT, token_id="j", student_keys=frozenset({"pk-a"}))
    assert parent.is_parent_of("pk-a")
    assert not parent.is_parent_of("pk-b")
    with pytest.raises(Forbidden):
        parent.require_parent_of("pk-b")
    with pytest.raises(Forbidden):
        parent.require_district("d-1")


def test_a_vendor_acts_under_its_agreement_only() -> None:
    vendor = Principal(subject="v", role=Role.VENDOR, token_id="j", agreement_id="dsa-9")
    vendor.require_agreement("dsa-9")
    with pytest.raises(Forbidden):
        vendor.require_agreement("dsa-10")
    assert not vendor.is_staff_of("d-1")


def test_services_and_compliance_are_not_district_staff() -> None:
    for role in (Role.SERVICE, Role.COMPLIANCE, Role.OPERATOR):
        with pytest.raises(Forbidden):
            Principal(subject="x", role=role, token_id="j").require_district("d-1")


def test_a_principal_cannot_be_built_outside_its_scope_rules() -> None:
    # Tests of other services build principals directly; they get the same rules.
    with pytest.raises(ValueError, match="district"):
        Principal(subject="s", role=Role.DISTRICT_STAFF, token_id="j")
    assert Principal(subject="s", role="parent", token_id="j", student_keys={"pk"}).role is Role.PARENT  # type: ignore[arg-type]


# --- key sources -------------------------------------------------------------------------


def test_a_jwks_file_is_a_key_source(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(external_jwks()))
    file_verifier = TokenVerifier(ISSUER, AUDIENCE, StaticKeys.from_jwks_file(path))
    assert file_verifier.verify(sign(claims(), "ES256")).district_id == "d-001"


def test_a_key_set_with_a_symmetric_key_is_refused_at_load() -> None:
    secret = {"kty": "oct", "k": b64(b"s" * 32), "kid": "hs", "alg": "HS256"}
    with pytest.raises(ValueError, match="HS256"):
        StaticKeys.from_jwks({"keys": [*external_jwks()["keys"], secret]})


def test_encryption_keys_in_a_key_set_are_ignored() -> None:
    enc = public_jwk(EC_KEY.public_key(), "enc-1") | {"use": "enc"}
    keys = StaticKeys.from_jwks({"keys": [external_jwks()["keys"][0], enc]})
    assert keys.kids == {"ed-1"}


def test_weak_and_private_keys_are_refused_as_issuer_keys() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 -- weak on purpose
    weak_pem = weak.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="1024"):
        StaticKeys.from_pem(weak_pem)
    private_pem = ED_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="private key"):
        StaticKeys.from_pem(private_pem)


class _JwksServer:
    """A real HTTP endpoint serving a JWKS document that the test can change."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                body = json.dumps(server.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server() -> Iterator[_JwksServer]:
    server = _JwksServer()
    yield server
    server.close()


def test_jwks_url_keys_fetch_once_and_pick_up_a_rotated_key(jwks_server: _JwksServer) -> None:
    jwks_server.document = {"keys": [public_jwk(ED_KEY.public_key(), "ed-1")]}
    url_verifier = TokenVerifier(ISSUER, AUDIENCE, JwksUrlKeys(jwks_server.url, refetch_cooldown_s=0))
    assert url_verifier.may_block  # so the FastAPI dependency verifies in a thread
    assert url_verifier.verify(sign(claims())).subject == "staff-7"
    assert url_verifier.verify(sign(claims(jti="tok-2"))).token_id == "tok-2"
    assert jwks_server.fetches == 1  # the key set is cached

    jwks_server.document = external_jwks()  # the issuer adds keys
    assert url_verifier.verify(sign(claims(), "RS256")).subject == "staff-7"
    assert refusal(url_verifier, sign(claims(), kid="never-published")).reason == "unknown_key"


def test_an_unreachable_jwks_url_is_a_503_not_a_bad_token(jwks_server: _JwksServer) -> None:
    url = jwks_server.url
    jwks_server.close()
    url_verifier = TokenVerifier(ISSUER, AUDIENCE, JwksUrlKeys(url, timeout_s=2))
    error = refusal(url_verifier, sign(claims()))
    assert isinstance(error, IssuerUnavailable)
    assert error.status == 503


# --- the dev issuer ----------------------------------------------------------------------


def test_dev_issuer_key_is_created_private_and_reused(tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "dev-issuer.pem"
    first = DevIssuer(key_path)
    assert not key_path.exists()  # nothing is generated until first use
    token = first.issue(Role.COMPLIANCE, subject="officer-1")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600

    restarted = DevIssuer(key_path)
    assert restarted.verifier().verify(token).subject == "officer-1"
    assert restarted.jwks() == first.jwks()


def test_a_dev_issuer_with_another_key_does_not_accept_the_token(tmp_path: Path) -> None:
    token = DevIssuer(tmp_path / "a.pem").issue("operator", subject="op")
    assert refusal(DevIssuer(tmp_path / "b.pem").verifier(), token).reason == "unknown_key"


def test_dev_issuer_refuses_a_key_file_others_can_read(tmp_path: Path) -> None:
    key_path = tmp_path / "dev.pem"
    DevIssuer(key_path).jwks()
    key_path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        DevIssuer(key_path).jwks()


def test_dev_issuer_will_not_mint_a_token_services_would_refuse(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="agreement"):
        DevIssuer(tmp_path / "dev.pem").issue(Role.VENDOR, subject="v", organization="Readwell")


def test_dev_tokens_carry_every_scope_claim(tmp_path: Path) -> None:
    issuer = DevIssuer(tmp_path / "dev.pem")
    token = issuer.issue(Role.SCHOOL_STAFF, subject="t", district="d-1", schools=["s-2", "s-1"], ttl_s=60)
    principal = issuer.verifier().verify(token)
    assert (principal.district_id, principal.school_ids) == ("d-1", frozenset({"s-1", "s-2"}))
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["exp"] - payload["iat"] == 60
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"


# --- settings ----------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("ISSUER", "AUDIENCE", "JWKS_URL", "JWKS_FILE", "DEV_KEY_FILE", "LEEWAY_S"):
        monkeypatch.delenv(f"HOMEROOM_AUTH_{name}", raising=False)
    monkeypatch.delenv("HOMEROOM_ENVIRONMENT", raising=False)
    return monkeypatch


def test_development_settings_trust_the_dev_issuer_key(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("HOMEROOM_AUTH_DEV_KEY_FILE", str(tmp_path / "dev.pem"))
    verifier = AuthSettings().build_verifier()
    token = DevIssuer(tmp_path / "dev.pem").issue(Role.OPERATOR, subject="op")
    assert verifier.verify(token).role is Role.OPERATOR


def test_production_refuses_to_start_on_the_dev_issuer(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("HOMEROOM_ENVIRONMENT", "production")
    clean_env.setenv("HOMEROOM_AUTH_DEV_KEY_FILE", str(tmp_path / "dev.pem"))
    with pytest.raises(ValueError, match="HOMEROOM_AUTH_JWKS_URL"):
        AuthSettings().build_verifier()
    assert not (tmp_path / "dev.pem").exists()  # refused before any key was made

    clean_env.setenv("HOMEROOM_AUTH_JWKS_URL", "https://id.district.test/jwks.json")
    with pytest.raises(ValueError, match="HOMEROOM_AUTH_ISSUER"):
        AuthSettings().build_verifier()
    clean_env.setenv("HOMEROOM_AUTH_ISSUER", ISSUER)
    clean_env.setenv("HOMEROOM_AUTH_JWKS_URL", "http://id.district.test/jwks.json")
    with pytest.raises(ValueError, match="https"):
        AuthSettings().build_verifier()


def test_production_uses_the_configured_key_set(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(external_jwks()))
    clean_env.setenv("HOMEROOM_ENVIRONMENT", "production")
    clean_env.setenv("HOMEROOM_AUTH_ISSUER", ISSUER)
    clean_env.setenv("HOMEROOM_AUTH_JWKS_FILE", str(path))
    verifier = AuthSettings().build_verifier()
    assert verifier.verify(sign(claims(), "RS256")).district_id == "d-001"
    clean_env.setenv("HOMEROOM_AUTH_JWKS_URL", "https://id.district.test/jwks.json")
    with pytest.raises(ValueError, match="not both"):
        AuthSettings().build_verifier()


# --- FastAPI -----------------------------------------------------------------------------


def make_app(token_verifier: TokenVerifier | None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        if token_verifier is not None:
            app.state.token_verifier = token_verifier
        yield

    app = FastAPI(lifespan=lifespan)
    install_problem_handlers(app)

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, Any]:
        return {"subject": principal.subject, "role": principal.role}

    @app.get("/disclosures")
    async def disclosures(
        principal: Annotated[Principal, Depends(require_roles(Role.COMPLIANCE, Role.PARENT))],
    ) -> dict[str, str]:
        return {"role": principal.role}

    @app.get("/districts/{district_id}/students")
    async def students(district_id: str, principal: CurrentPrincipal) -> list[str]:
        principal.require_district(district_id)
        return []

    return app


@pytest.fixture
def dev(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path / "dev.pem")


@pytest.fixture
def client(dev: DevIssuer) -> Iterator[TestClient]:
    with TestClient(make_app(dev.verifier())) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_valid_token_reaches_the_handler(client: TestClient, dev: DevIssuer) -> None:
    response = client.get("/me", headers=bearer(dev.issue(Role.OPERATOR, subject="op-1")))
    assert response.status_code == 200
    assert response.json() == {"subject": "op-1", "role": "operator"}


@pytest.mark.parametrize("header", [None, "Basic b3A6cGFzcw==", "Bearer ", "Bearer"])
def test_no_bearer_token_is_a_401_challenge(client: TestClient, header: str | None) -> None:
    response = client.get("/me", headers={"Authorization": header} if header is not None else {})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == 'Bearer realm="homeroom"'
    assert response.json()["reason"] == "missing_token"


def test_a_refused_token_is_a_401_naming_the_reason(client: TestClient, tmp_path: Path) -> None:
    stranger = DevIssuer(tmp_path / "stranger.pem").issue(Role.COMPLIANCE, subject="x")
    response = client.get("/me", headers=bearer(stranger))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="homeroom", error="invalid_token", error_description="')
    body = response.json()
    assert body["type"] == "/problems/invalid-token"
    assert body["status"] == 401
    assert body["reason"] == "unknown_key"
    assert body["detail"] in challenge


def test_an_attacker_controlled_kid_cannot_break_the_challenge_header(client: TestClient) -> None:
    token = forge({"alg": "EdDSA", "kid": 'x", error="none\\'}, claims(), b"\x00" * 64)
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 401
    description = response.headers["www-authenticate"].split('error_description="', 1)[1]
    assert description.count('"') == 1 and description.endswith('"')  # only the closing quote
    assert "\\" not in description


def test_another_role_is_a_403_problem(client: TestClient, dev: DevIssuer) -> None:
    vendor = dev.issue(Role.VENDOR, subject="v", agreement="dsa-9")
    response = client.get("/disclosures", headers=bearer(vendor))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/forbidden"
    assert "vendor" in response.json()["detail"]
    parent = dev.issue(Role.PARENT, subject="p", students=["pk-a"])
    assert client.get("/disclosures", headers=bearer(parent)).json() == {"role": "parent"}


def test_district_staff_cannot_read_another_district(client: TestClient, dev: DevIssuer) -> None:
    staff = bearer(dev.issue(Role.DISTRICT_STAFF, subject="s", district="d-1"))
    assert client.get("/districts/d-1/students", headers=staff).status_code == 200
    response = client.get("/districts/d-2/students", headers=staff)
    assert response.status_code == 403
    assert "d-2" in response.json()["detail"]


def test_require_roles_without_roles_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        require_roles()
    with pytest.raises(ValueError):
        require_roles("superuser")


def test_an_app_without_a_verifier_fails_closed(dev: DevIssuer) -> None:
    with TestClient(make_app(None)) as c:
        response = c.get("/me", headers=bearer(dev.issue(Role.OPERATOR, subject="op")))
    assert response.status_code == 500
    assert "token_verifier" not in response.text  # the wiring detail goes to the log only


# --- CLI ---------------------------------------------------------------------------------


def test_cli_issues_a_token_the_verifier_accepts(tmp_path: Path) -> None:
    key_file = tmp_path / "dev.pem"
    args = ["issue", "--role", "school_staff", "--subject", "alice", "--district", "d-1"]
    args += ["--school", "s-1", "--school", "s-2", "--ttl", "120", "--key-file", str(key_file)]
    result = CliRunner().invoke(token_cli, args)
    assert result.exit_code == 0, result.output
    principal = DevIssuer(key_file).verifier().verify(result.stdout.strip())
    assert principal.school_ids == {"s-1", "s-2"}

    jwks = CliRunner().invoke(token_cli, ["jwks", "--key-file", str(key_file)])
    assert json.loads(jwks.stdout) == DevIssuer(key_file).jwks()


def test_cli_refuses_a_scope_that_does_not_fit(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        token_cli, ["issue", "--role", "vendor", "--subject", "v", "--key-file", str(tmp_path / "k.pem")]
    )
    assert result.exit_code == 2
    assert "agreement" in result.stderr
    assert result.stdout == ""


# --- fuzzing -----------------------------------------------------------------------------

_FUZZ_VERIFIER = TokenVerifier(ISSUER, AUDIENCE, StaticKeys.from_jwks(external_jwks()))
segment = st.binary(max_size=200).map(b64)
json_segment = st.dictionaries(
    st.sampled_from(["alg", "kid", "typ", "crit", "b64", "iss", "sub", "exp", "role"]),
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.lists(st.text())),
).map(lambda d: b64(json.dumps(d).encode()))
allowed_header = st.sampled_from(["EdDSA", "ES256", "RS256"]).flatmap(
    lambda alg: st.sampled_from([KIDS[alg], "ed-1", "nope"]).map(
        lambda kid: b64(json.dumps({"alg": alg, "kid": kid}).encode())
    )
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_random_bytes_never_verify(token: bytes | str) -> None:
    with pytest.raises(AuthenticationError):
        _FUZZ_VERIFIER.verify(token)


@settings(max_examples=300, deadline=None)
@given(st.one_of(segment, json_segment, allowed_header), st.one_of(segment, json_segment), segment)
def test_random_jwt_shaped_strings_never_verify(header: str, payload: str, signature: str) -> None:
    with pytest.raises(AuthenticationError):
        _FUZZ_VERIFIER.verify(f"{header}.{payload}.{signature}")


# --- one audience per service (issue 17, item 12) ------------------------------------------


def test_a_token_for_one_service_is_refused_by_every_other(tmp_path: Path) -> None:
    from homeroom.auth import AUDIENCE_SERVICES
    from homeroom.registry import SERVICES

    assert set(AUDIENCE_SERVICES) == set(SERVICES)
    issuer = DevIssuer(tmp_path / "dev.pem")
    for_records = issuer.issue("compliance", subject="c-1", services=["records"])
    assert issuer.verifier(service="records").verify(for_records).subject == "c-1"
    for service in set(AUDIENCE_SERVICES) - {"records"}:
        assert refusal(issuer.verifier(service=service), for_records).reason == "wrong_audience", service
    # Before: one audience for all; a token naming only the bare audience works nowhere now.
    bare = jwt.encode(
        {**jwt.decode(for_records, options={"verify_signature": False}), "aud": "homeroom"},
        issuer._key()[0],
        algorithm="EdDSA",
        headers={"kid": issuer.kid},
    )
    assert refusal(issuer.verifier(service="audit"), bare).reason == "wrong_audience"
    with pytest.raises(ValueError, match="no service named"):
        issuer.issue("compliance", subject="c-1", services=["payroll"])


def test_the_development_sign_in_never_mints_the_service_role(tmp_path: Path) -> None:
    from services.portal.session import dev_token

    issuer = DevIssuer(tmp_path / "dev.pem")
    with pytest.raises(ValueError, match="never mints the service role"):
        dev_token(issuer, {"role": "service", "subject": "homeroom-records"})
    assert issuer.verifier(service="portal").verify(dev_token(issuer, {"role": "compliance"})).role is Role.COMPLIANCE


def test_the_guardianship_issuer_is_trusted_for_parent_tokens_only(tmp_path: Path) -> None:
    """Issue 24: in production the services trust the district's issuer and, for parents only,
    consent's guardianship key (HOMEROOM_AUTH_GUARDIAN_JWKS_FILE)."""
    district_idp = DevIssuer(tmp_path / "idp.pem", issuer="https://login.example.org", audience="homeroom")
    guardianship = DevIssuer(tmp_path / "guardian.pem", issuer="homeroom-guardianship", audience="homeroom")
    (tmp_path / "idp.jwks").write_text(json.dumps(district_idp.jwks()))
    (tmp_path / "guardian.jwks").write_text(json.dumps(guardianship.jwks()))
    settings = AuthSettings(
        issuer="https://login.example.org",
        jwks_file=tmp_path / "idp.jwks",
        guardian_jwks_file=tmp_path / "guardian.jwks",
        environment="production",
    )
    verifier = settings.build_verifier("records")
    parent = verifier.verify(guardianship.issue(Role.PARENT, subject="mother", students=["pk-a"]))
    assert parent.is_parent_of("pk-a")
    staff = verifier.verify(district_idp.issue(Role.DISTRICT_STAFF, subject="registrar", district="d-1"))
    assert staff.can_act_for_district("d-1")
    with pytest.raises(AuthenticationError, match="parents only"):
        verifier.verify(guardianship.issue(Role.DISTRICT_STAFF, subject="mallory", district="d-1"))
    # A token claiming the guardianship issuer but signed by another key is refused.
    forged = DevIssuer(tmp_path / "forged.pem", issuer="homeroom-guardianship", audience="homeroom")
    with pytest.raises(AuthenticationError):
        verifier.verify(forged.issue(Role.PARENT, subject="mallory", students=["pk-a"]))
    # Without the setting, the guardianship key opens nothing.
    plain = AuthSettings(issuer="https://login.example.org", jwks_file=tmp_path / "idp.jwks").build_verifier("records")
    with pytest.raises(AuthenticationError):
        plain.verify(guardianship.issue(Role.PARENT, subject="mother", students=["pk-a"]))


def test_a_parent_tokens_guardianships_scope_each_child_to_districts(verifier: TokenVerifier) -> None:
    """Issue 24: consent's parent tokens name each child's districts; a token without the claim
    names children in every district; a malformed or stray claim is refused."""
    parent = claims(role="parent", district=None, students=["stu_a", "stu_b"], guardianships={"stu_a": ["d-1"]})
    principal = verifier.verify(sign(parent))
    assert principal.is_parent_in("stu_a", "d-1") and not principal.is_parent_in("stu_a", "d-2")
    assert not principal.is_parent_in("stu_b", "d-1")  # scoped token: a child with no active link nowhere
    unscoped = verifier.verify(sign(claims(role="parent", district=None, students=["stu_a"])))
    assert unscoped.is_parent_in("stu_a", "d-2")
    for bad in ({"stu_c": ["d-1"]}, {"stu_a": "d-1"}, {"stu_a": [""]}, ["stu_a"]):
        assert refusal(verifier, sign({**parent, "guardianships": bad})).reason in ("scope", "malformed_claim")
    staff = claims(guardianships={"stu_a": ["d-001"]})
    assert refusal(verifier, sign(staff)).reason == "scope"
