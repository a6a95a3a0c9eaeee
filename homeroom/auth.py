"""Who is calling, and what they may act for: bearer tokens to a `Principal`.

Every Homeroom service accepts OAuth 2 bearer JWTs from one configured issuer. A token
names a role and the scope that role acts within (a district, schools, an agreement,
a parent's children); a token whose scope does not fit its role is refused rather than
guessed at, because a district must never see another district's students and a vendor
must never act outside its agreement.

Verification trusts only asymmetric signatures (EdDSA, ES256, RS256) by keys the
issuer publishes: `alg: none`, HMAC (the key-confusion attack, where an attacker signs
with the issuer's *public* key as an HMAC secret) and any other algorithm are refused
before a key is touched. Each refusal is an `AuthenticationError` whose message names
the reason, and which renders as a 401 problem through `homeroom.problems`.

Development and tests use `DevIssuer` (the `./run token` command): an Ed25519 key
kept in a 0600 file, whose JWKS a service's verifier trusts. Production points
`HOMEROOM_AUTH_JWKS_URL` at the real issuer, and refuses to start without it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from fastapi import Depends, Request
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.concurrency import run_in_threadpool

from homeroom.config import Environment
from homeroom.entry_text import text_problem
from homeroom.problems import Problem, problem_type

ALGORITHMS: tuple[str, ...] = ("EdDSA", "ES256", "RS256")
DEV_ISSUER = "homeroom-dev"
DEV_AUDIENCE = "homeroom"
# Every service takes only tokens whose `aud` names it: "<audience>/<service>" (a token for
# records is refused at audit). A token may name several; the development issuer names all
# by default, a real issuer what each client may call. Checked against homeroom.registry.SERVICES.
AUDIENCE_SERVICES: tuple[str, ...] = (
    "ingest",
    "records",
    "consent",
    "transfer",
    "audit",
    "incidents",
    "reports",
    "portal",
)


def service_audience(audience: str, service: str) -> str:
    """The `aud` value that names one service, e.g. ``homeroom/records``. A service outside
    AUDIENCE_SERVICES (a test's own spec) takes the bare audience, which dev tokens also carry."""
    return f"{audience}/{service}" if service in AUDIENCE_SERVICES else audience


# Claims every token must carry; `nbf` is checked when present.
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti")
MAX_TOKEN_LENGTH = 16_384  # far above any real token; refuses parsing megabytes of junk
_MIN_RSA_BITS = 2048
_REALM = "homeroom"


class Role(StrEnum):
    DISTRICT_STAFF = "district_staff"  # acts for one district
    SCHOOL_STAFF = "school_staff"  # acts for some schools of one district
    VENDOR = "vendor"  # a third party, only under one data-sharing agreement
    COMPLIANCE = "compliance"  # queries and verifies the disclosure log
    PARENT = "parent"  # parent or eligible student: sees the children its `students` claim names
    # (none: signed in but linked to no child yet, so it sees no student's data)
    OPERATOR = "operator"  # runs the system: metrics and health, never student data
    SERVICE = "service"  # another Homeroom service calling on its own behalf


# --- errors ------------------------------------------------------------------------------


def _auth_param(text: str, limit: int = 200) -> str:
    # RFC 6750 §3: error_description allows only %x20-21 / %x23-5B / %x5D-7E, so quotes,
    # backslashes and anything outside printable ASCII (and CR/LF) cannot reach the header.
    out = "".join(c if (" " <= c <= "~" and c not in '"\\') else "'" if c == '"' else "?" for c in text)
    return out[:limit]


class AuthenticationError(Problem):
    """The bearer token was missing or refused; `reason` is a machine id for the cause.

    Reasons: missing_token, malformed, algorithm_refused, unknown_key, bad_key,
    bad_signature, wrong_issuer, wrong_audience, expired, not_yet_valid, missing_claim,
    malformed_claim, unknown_role, scope, issuer_unavailable.
    """

    def __init__(self, reason: str, message: str) -> None:
        if reason == "missing_token":  # RFC 6750 §3.1: no error code when no credentials were sent
            challenge = f'Bearer realm="{_REALM}"'
        else:
            challenge = f'Bearer realm="{_REALM}", error="invalid_token", error_description="{_auth_param(message)}"'
        super().__init__(
            401,
            "Not authenticated",
            message,
            type=problem_type("invalid-token"),
            headers={"WWW-Authenticate": challenge},
            extensions={"reason": reason},
        )
        self.reason = reason


class IssuerUnavailable(AuthenticationError):
    """The issuer's keys could not be fetched: a 503 the client may retry, not their fault."""

    def __init__(self, message: str) -> None:
        super().__init__("issuer_unavailable", message)
        self.status = 503
        self.title = "Identity issuer unavailable"
        self.type = problem_type("issuer-unavailable")
        self.headers = {"Retry-After": "30"}


class Forbidden(Problem):
    """Authenticated, but this principal may not act here (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(403, "Forbidden", message, type=problem_type("forbidden"))


# --- principal ---------------------------------------------------------------------------

# Which scope fields each role carries. A field outside its role is refused: a vendor
# token carrying a district would invite code that checks `district_id` alone.
_SCOPE_FIELDS: dict[Role, frozenset[str]] = {
    Role.DISTRICT_STAFF: frozenset({"district"}),
    Role.SCHOOL_STAFF: frozenset({"district", "schools"}),
    Role.VENDOR: frozenset({"agreement", "org"}),
    Role.PARENT: frozenset({"students"}),
    Role.COMPLIANCE: frozenset(),
    Role.OPERATOR: frozenset(),
    Role.SERVICE: frozenset(),
}


def _scope_error(
    role: Role,
    district: str | None,
    schools: frozenset[str],
    agreement: str | None,
    org: str | None,
    students: frozenset[str],
) -> str | None:
    """Why this scope does not fit the role (named by token claim), or None if it does."""
    present = {
        name
        for name, value in (
            ("district", district),
            ("schools", schools),
            ("agreement", agreement),
            ("org", org),
            ("students", students),
        )
        if value
    }
    for name, value in (("district", district), ("agreement", agreement), ("org", org)):
        if value is not None and not value:
            return f"claim '{name}' is empty"
    if "" in schools or "" in students:
        return "claims 'schools' and 'students' may not contain empty ids"
    stray = sorted(present - _SCOPE_FIELDS[role])
    if stray:
        return f"role {role.value} may not carry the claim(s) {', '.join(map(repr, stray))}"
    if role in (Role.DISTRICT_STAFF, Role.SCHOOL_STAFF) and not district:
        return f"role {role.value} needs the district it acts for (claim 'district')"
    if role is Role.SCHOOL_STAFF and not schools:
        return "role school_staff needs at least one school (claim 'schools')"
    if role is Role.VENDOR and not agreement:
        return "role vendor needs the agreement it acts under (claim 'agreement')"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """The verified caller. Construction enforces the scope rules of its role."""

    subject: str
    role: Role
    token_id: str
    district_id: str | None = None  # district_staff, school_staff
    school_ids: frozenset[str] = field(default_factory=frozenset)  # school_staff
    agreement_id: str | None = None  # vendor
    organization: str | None = None  # vendor
    student_keys: frozenset[str] = field(default_factory=frozenset)  # parent: pseudonymous keys
    client_id: str | None = None
    # parent, from consent's guardianship issuer (issue 24): (student key, district) of each
    # active link. Empty: the token names students only, in every district (development tokens).
    guardianships: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        # Accept plain strings and any iterables from callers; store the canonical types.
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "school_ids", frozenset(self.school_ids))
        object.__setattr__(self, "student_keys", frozenset(self.student_keys))
        object.__setattr__(self, "guardianships", frozenset((str(k), str(d)) for k, d in self.guardianships))
        if self.guardianships and self.role is not Role.PARENT:
            raise ValueError(f"role {self.role.value} may not carry the claim 'guardianships'")
        if any(not d or k not in self.student_keys for k, d in self.guardianships):
            raise ValueError("claim 'guardianships' names a student the token's 'students' does not, or no district")
        if not self.subject:
            raise ValueError("a principal needs a subject")
        if not self.token_id:
            raise ValueError("a principal needs a token id")
        problem = _scope_error(
            self.role, self.district_id, self.school_ids, self.agreement_id, self.organization, self.student_keys
        )
        if problem:
            raise ValueError(problem)

    # Checks services call. The `is_`/`can_` forms answer; the `require_` forms raise
    # Forbidden (403) with a message that says what the caller lacks.

    def is_staff_of(self, district_id: str) -> bool:
        """District or school staff of this district (school staff: some of its schools)."""
        return self.role in (Role.DISTRICT_STAFF, Role.SCHOOL_STAFF) and self.district_id == district_id

    def can_act_for_district(self, district_id: str) -> bool:
        return self.role is Role.DISTRICT_STAFF and self.district_id == district_id

    def can_act_for_school(self, district_id: str, school_id: str) -> bool:
        if self.can_act_for_district(district_id):  # a district's staff act for all its schools
            return True
        return self.role is Role.SCHOOL_STAFF and self.district_id == district_id and school_id in self.school_ids

    def is_parent_of(self, student_key: str) -> bool:
        return self.role is Role.PARENT and student_key in self.student_keys

    def is_parent_in(self, student_key: str, district_id: str) -> bool:
        """A parent of the student who may act for them in this district: a token with a
        `guardianships` claim (consent's) names the districts of each student's active links; a
        token without one names students only, in every district (consent's decision point still
        checks its registry for the people it knows)."""
        if not self.is_parent_of(student_key):
            return False
        return not self.guardianships or (student_key, district_id) in self.guardianships

    def acts_under(self, agreement_id: str) -> bool:
        return self.role is Role.VENDOR and self.agreement_id == agreement_id

    def require_district(self, district_id: str) -> None:
        if self.can_act_for_district(district_id):
            return
        if self.role is Role.SCHOOL_STAFF and self.district_id == district_id:
            raise Forbidden("school staff act only for their own schools; this needs district staff")
        raise Forbidden(f"only staff of district {district_id!r} may do this")

    def require_school(self, district_id: str, school_id: str) -> None:
        if not self.can_act_for_school(district_id, school_id):
            raise Forbidden(f"only staff of school {school_id!r} in district {district_id!r} may do this")

    def require_parent_of(self, student_key: str) -> None:
        if not self.is_parent_of(student_key):
            raise Forbidden("only a parent of this student may do this")

    def require_agreement(self, agreement_id: str) -> None:
        if not self.acts_under(agreement_id):
            raise Forbidden(f"only a vendor acting under agreement {agreement_id!r} may do this")


# --- keys --------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint: a key id that follows from the key itself."""
    members = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
    names = members.get(str(jwk.get("kty")))
    if names is None:
        raise ValueError(f"no thumbprint for key type {jwk.get('kty')!r}")
    canonical = json.dumps({n: jwk[n] for n in names}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def public_jwk(key: Any, kid: str | None = None) -> dict[str, Any]:
    """The JWK of a public key Homeroom accepts: Ed25519, P-256 or RSA ≥ 2048 bits."""
    jwk: dict[str, Any]
    if isinstance(key, Ed25519PublicKey):
        jwk, alg = dict(OKPAlgorithm.to_jwk(key, as_dict=True)), "EdDSA"
    elif isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1):
        jwk, alg = dict(ECAlgorithm.to_jwk(key, as_dict=True)), "ES256"
    elif isinstance(key, RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits refused: at least {_MIN_RSA_BITS} needed")
        jwk, alg = dict(RSAAlgorithm.to_jwk(key, as_dict=True)), "RS256"
    else:
        raise ValueError(f"unsupported public key {type(key).__name__}: use Ed25519, P-256 or RSA")
    jwk.update(alg=alg, use="sig", kid=kid or jwk_thumbprint(jwk))
    return jwk


class KeySource(Protocol):
    """Where a verifier finds the issuer's public key for a token's `kid`."""

    @property
    def blocking(self) -> bool:
        """True when `key_for` may do network I/O (async callers then use a thread)."""
        ...

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        """The key for `kid`; raises AuthenticationError when there is none."""
        ...


def _pick(keys: Mapping[str, jwt.PyJWK], kid: str | None) -> jwt.PyJWK:
    if kid is None:
        if len(keys) == 1:  # an issuer with one key need not name it
            return next(iter(keys.values()))
        raise AuthenticationError("unknown_key", "token names no key id (kid) and the issuer has several keys")
    try:
        return keys[kid]
    except KeyError:
        raise AuthenticationError("unknown_key", f"no issuer key has the id {kid[:64]!r}") from None


class StaticKeys:
    """Keys configured up front: a JWKS document or file, or PEM public keys."""

    blocking = False

    def __init__(self, keys: Iterable[Mapping[str, Any]]) -> None:
        usable: dict[str, jwt.PyJWK] = {}
        for jwk in keys:
            if jwk.get("use", "sig") != "sig":
                continue  # encryption keys share JWKS documents; they never sign tokens
            try:
                key = jwt.PyJWK(dict(jwk))
            except jwt.PyJWTError as exc:
                raise ValueError(f"unusable key {jwk.get('kid')!r} in the key set: {exc}") from exc
            if key.algorithm_name not in ALGORITHMS:
                raise ValueError(f"key {jwk.get('kid')!r} uses {key.algorithm_name}; allowed: {', '.join(ALGORITHMS)}")
            kid = key.key_id or jwk_thumbprint(jwk)
            usable[kid] = key
        if not usable:
            raise ValueError("the key set holds no signing keys")
        self._keys = usable

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> StaticKeys:
        keys = jwks.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
            raise ValueError("a JWKS document is an object with a 'keys' list of JWK objects")
        return cls(keys)

    @classmethod
    def from_jwks_file(cls, path: Path) -> StaticKeys:
        return cls.from_jwks(json.loads(Path(path).read_text()))

    @classmethod
    def from_pem(cls, *pems: str | bytes, kid: str | None = None) -> StaticKeys:
        """PEM public keys or certificates. `kid` (one key only) names the id the issuer
        puts in its tokens; by default each key's id is its RFC 7638 thumbprint."""
        if kid is not None and len(pems) != 1:
            raise ValueError("kid= names exactly one PEM key")
        jwks = [public_jwk(_load_public_pem(pem), kid) for pem in pems]
        return cls(jwks)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        return _pick(self._keys, kid)


def _load_public_pem(pem: str | bytes) -> Any:
    data = pem.encode() if isinstance(pem, str) else pem
    if b"PRIVATE KEY" in data:
        raise ValueError("a private key was given where the issuer's public key belongs")
    if b"BEGIN CERTIFICATE" in data:
        return x509.load_pem_x509_certificate(data).public_key()
    return serialization.load_pem_public_key(data)


class JwksUrlKeys:
    """A production issuer's JWKS endpoint, cached; an unknown kid triggers one refetch
    (rate-limited by PyJWT) so key rotation needs no restart."""

    blocking = True

    def __init__(self, url: str, *, cache_s: float = 300, timeout_s: float = 5, refetch_cooldown_s: float = 30) -> None:
        self.url = url
        self._client = jwt.PyJWKClient(
            url, cache_jwk_set=True, lifespan=cache_s, timeout=timeout_s, cooldown_duration=refetch_cooldown_s
        )

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        try:
            keys = {k.key_id or "": k for k in self._client.get_signing_keys()}  # cached
        except jwt.PyJWKClientConnectionError as exc:
            raise IssuerUnavailable(f"the issuer's keys could not be fetched from {self.url}") from exc
        except (jwt.PyJWTError, ValueError) as exc:
            raise IssuerUnavailable(f"the issuer's key set at {self.url} is unusable: {exc}") from exc
        if kid is None or kid in keys:
            return _pick(keys, kid)
        try:  # perhaps a rotated key: PyJWT refetches, at most once per cooldown
            return self._client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            raise IssuerUnavailable(f"the issuer's keys could not be fetched from {self.url}") from exc
        except jwt.PyJWTError:
            raise AuthenticationError("unknown_key", f"no issuer key has the id {kid[:64]!r}") from None


# --- verification ------------------------------------------------------------------------


def _refuse_algorithm(header: Mapping[str, Any]) -> None:
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise AuthenticationError("malformed", "token header names no signing algorithm")
    if alg.lower() == "none":
        raise AuthenticationError("algorithm_refused", "unsigned token (alg 'none') refused")
    if alg.upper().startswith("HS"):
        raise AuthenticationError(
            "algorithm_refused",
            f"symmetric algorithm {alg[:16]!r} refused: only issuer signatures ({', '.join(ALGORITHMS)}) are accepted",
        )
    if alg not in ALGORITHMS:
        raise AuthenticationError(
            "algorithm_refused", f"algorithm {alg[:16]!r} is not allowed (allowed: {', '.join(ALGORITHMS)})"
        )


def _optional_str(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None or isinstance(value, str):
        return value
    raise AuthenticationError("malformed_claim", f"claim {name!r} must be a string")


def _str_set(claims: Mapping[str, Any], name: str) -> frozenset[str]:
    value = claims.get(name)
    if value is None:
        return frozenset()
    # A bare string is refused, not split into characters or taken as a one-item list.
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise AuthenticationError("malformed_claim", f"claim {name!r} must be a list of strings")


_ROLE_NAMES = frozenset(r.value for r in Role)


def _guardianships(claims: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    """The `guardianships` claim, `{student key: [district, ...]}`, as (student, district) pairs."""
    value = claims.get("guardianships")
    if value is None:
        return frozenset()
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(d, str) and d for d in v)
        for k, v in value.items()
    ):
        raise AuthenticationError("malformed_claim", "claim 'guardianships' must map student keys to district ids")
    if any(text_problem(d) for v in value.values() for d in v):
        raise AuthenticationError("malformed_claim", "claim 'guardianships' holds an unprintable or long id")
    return frozenset((k, d) for k, v in value.items() for d in v)


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """The principal a verified token's claims describe; AuthenticationError if they don't fit."""
    role_claim = claims.get("role")
    if role_claim is None:
        raise AuthenticationError("missing_claim", "token lacks the required claim 'role'")
    if not isinstance(role_claim, str) or role_claim not in _ROLE_NAMES:
        raise AuthenticationError("unknown_role", f"role {str(role_claim)[:32]!r} is not a Homeroom role")
    subject, token_id = claims.get("sub"), claims.get("jti")
    if not isinstance(subject, str) or not subject:
        raise AuthenticationError("malformed_claim", "claim 'sub' must be a non-empty string")
    if not isinstance(token_id, str) or not token_id:
        raise AuthenticationError("malformed_claim", "claim 'jti' must be a non-empty string")
    # Whatever a token names reaches the disclosure log (requester and recipient): it must
    # keep the log's text rules (homeroom.entry_text), or a release would have no record.
    for name in ("sub", "org", "client_id", "district", "agreement"):
        value = claims.get(name)
        problem = text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise AuthenticationError("malformed_claim", f"claim {name!r} {problem[1]}")
    for name in ("schools", "students"):
        values = claims.get(name)
        if isinstance(values, list) and any(isinstance(v, str) and text_problem(v) for v in values):
            raise AuthenticationError(
                "malformed_claim", f"claim {name!r} holds an id that is too long or not printable"
            )
    try:
        return Principal(
            subject=subject,
            role=Role(role_claim),
            token_id=token_id,
            district_id=_optional_str(claims, "district"),
            school_ids=_str_set(claims, "schools"),
            agreement_id=_optional_str(claims, "agreement"),
            organization=_optional_str(claims, "org"),
            student_keys=_str_set(claims, "students"),
            client_id=_optional_str(claims, "client_id"),
            guardianships=_guardianships(claims),
        )
    except ValueError as exc:
        raise AuthenticationError("scope", str(exc)) from None


# How PyJWT's refusals read to the caller, first match wins: order matters, as several of
# these subclass one another. The messages are formatted with the verifier's issuer and
# audience, the missing claim and the error itself.
_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str, str], ...] = (
    (jwt.ExpiredSignatureError, "expired", "token has expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "token is not valid yet (nbf or iat is in the future)"),
    (jwt.InvalidIssuerError, "wrong_issuer", "token was not issued by the trusted issuer {issuer!r}"),
    (jwt.InvalidAudienceError, "wrong_audience", "token is not meant for the audience {audience!r}"),
    (jwt.MissingRequiredClaimError, "missing_claim", "token lacks the required claim {claim!r}"),
    (jwt.InvalidSignatureError, "bad_signature", "signature does not verify with the issuer's key"),
    (jwt.InvalidAlgorithmError, "algorithm_refused", "algorithm refused: {exc}"),
    (jwt.InvalidKeyError, "bad_key", "issuer key refused: {exc}"),
    (jwt.DecodeError, "malformed", "token is malformed"),
)


@dataclass(eq=False)
class TokenVerifier:
    """Checks a bearer token against one issuer and audience and returns its Principal.

    A verified token is remembered (by its exact text) until its `exp`, so a caller that
    presents the same token again, as services and portals do for minutes, costs a dict
    lookup instead of a signature check. The leeway is not extended to cached tokens, and
    anything else (another byte, an expired token) is verified in full. A key withdrawn from
    the issuer's key set stops new tokens at once; tokens it already verified run out at
    their `exp`, as they would at any service that verified them a moment earlier."""

    CACHE_SIZE: ClassVar[int] = 4096

    issuer: str
    audience: str
    key_source: KeySource
    leeway_s: float = 30
    clock: Callable[[], float] = time.time
    # Consent's guardianship issuer (issue 24), trusted for parent tokens only: a family's
    # identity provider knows no children, so consent signs the token naming them.
    guardian: TokenVerifier | None = None
    # Each verified token's principal and `exp`, oldest first.
    _verified: dict[str | bytes, tuple[Principal, float]] = field(default_factory=dict, init=False, repr=False)

    def cached(self, token: str | bytes) -> Principal | None:
        """The principal of a token verified before and not expired yet, else None."""
        known = self._verified.get(token)
        if known is None:
            return None
        if self.clock() < known[1]:
            return known[0]
        self._verified.pop(token, None)
        return None

    @property
    def may_block(self) -> bool:
        return self.key_source.blocking

    def verify(self, token: str | bytes) -> Principal:
        """The token's principal; AuthenticationError naming the reason otherwise."""
        known = self.cached(token)
        if known is not None:
            return known
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthenticationError("malformed", "token is too long")
        if self.guardian is not None and self._issued_by(token) == self.guardian.issuer:
            principal = self.guardian.verify(token)
            if principal.role is not Role.PARENT:
                raise AuthenticationError("scope", "the guardianship issuer vouches for parents only")
            return principal
        try:
            header = jwt.get_unverified_header(token)
            _refuse_algorithm(header)
            key = self.key_source.key_for(header.get("kid"))
            claims = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": list(REQUIRED_CLAIMS), "enforce_minimum_key_length": True},
            )
        except AuthenticationError:
            raise
        except jwt.PyJWTError as exc:
            raise self._refusal(exc) from None
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            # Whatever junk arrives, the caller sees a refusal, never a 500.
            raise AuthenticationError("malformed", f"token is malformed ({type(exc).__name__})") from None
        principal = principal_from_claims(claims)
        self._verified[token] = (principal, float(claims["exp"]))
        while len(self._verified) > self.CACHE_SIZE:  # verify may run in threads: tolerate a race
            with contextlib.suppress(KeyError, StopIteration, RuntimeError):
                self._verified.pop(next(iter(self._verified)))
        return principal

    @staticmethod
    def _issued_by(token: str | bytes) -> object:
        """The unverified `iss`, only to pick the issuer whose keys then verify everything."""
        try:
            return jwt.decode(token, options={"verify_signature": False}).get("iss")
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError):
            return None

    def _refusal(self, exc: jwt.PyJWTError) -> AuthenticationError:
        code, message = next(
            ((code, message) for kind, code, message in _REFUSALS if isinstance(exc, kind)),
            ("malformed_claim", "token refused: {exc}"),
        )
        claim = getattr(exc, "claim", None)
        return AuthenticationError(
            code, message.format(issuer=self.issuer, audience=self.audience, claim=claim, exc=exc)
        )


# --- development issuer ------------------------------------------------------------------


def _load_or_create_key(path: Path) -> Ed25519PrivateKey:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # Write a private temp file (mkstemp creates it 0600), then link it into place:
        # two processes starting together never see a half-written key, and the loser
        # of the race uses the winner's key.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".dev-issuer-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(f"dev issuer key {path} is readable by others (mode {mode:o}); chmod 600 it")
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"dev issuer key {path} is not an Ed25519 private key")
    return loaded


class DevIssuer:
    """A local token issuer for development, tests and the demo. Never trusted in production."""

    def __init__(self, key_path: Path, issuer: str = DEV_ISSUER, audience: str = DEV_AUDIENCE) -> None:
        self.key_path = Path(key_path)
        self.issuer = issuer
        self.audience = audience
        self._loaded: tuple[Ed25519PrivateKey, dict[str, Any]] | None = None

    def _key(self) -> tuple[Ed25519PrivateKey, dict[str, Any]]:
        """The signing key and its public JWK, generated on first use, not on construction."""
        if self._loaded is None:
            key = _load_or_create_key(self.key_path)
            self._loaded = (key, public_jwk(key.public_key()))
        return self._loaded

    @property
    def kid(self) -> str:
        return str(self._key()[1]["kid"])

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._key()[1])]}

    def verifier(self, leeway_s: float = 30, service: str | None = None) -> TokenVerifier:
        """A verifier of this issuer's tokens; for ``service``, only tokens whose audience names it."""
        audience = service_audience(self.audience, service) if service else self.audience
        return TokenVerifier(self.issuer, audience, StaticKeys.from_jwks(self.jwks()), leeway_s)

    def issue(
        self,
        role: Role | str,
        *,
        subject: str,
        district: str | None = None,
        schools: Iterable[str] = (),
        agreement: str | None = None,
        organization: str | None = None,
        students: Iterable[str] = (),
        client_id: str | None = None,
        ttl_s: int = 3600,
        services: Iterable[str] | None = None,
        guardianships: Iterable[tuple[str, str]] = (),
    ) -> str:
        """A signed token; ValueError if the scope does not fit the role (the same rules
        the verifier applies, so it never mints a token services would refuse). Its audience
        names ``services`` (default: every service, and the bare audience for tools)."""
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        principal = Principal(
            subject=subject,
            role=Role(role),
            token_id=uuid.uuid4().hex,
            district_id=district,
            school_ids=frozenset(schools),
            agreement_id=agreement,
            organization=organization,
            student_keys=frozenset(students),
            client_id=client_id,
            guardianships=frozenset(guardianships),
        )
        now = int(time.time())
        named = list(AUDIENCE_SERVICES) if services is None else list(services)
        if not named:
            raise ValueError("a token names at least one service in its audience")
        unknown = sorted(set(named) - set(AUDIENCE_SERVICES))
        if unknown:
            raise ValueError(f"no service named {', '.join(unknown)} (known: {', '.join(AUDIENCE_SERVICES)})")
        audiences = [service_audience(self.audience, s) for s in named]
        if services is None:
            audiences.append(self.audience)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audiences,
            "sub": principal.subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": principal.token_id,
            "role": principal.role.value,
        }
        optional = {
            "district": principal.district_id,
            "schools": sorted(principal.school_ids),
            "agreement": principal.agreement_id,
            "org": principal.organization,
            "students": sorted(principal.student_keys),
            "client_id": principal.client_id,
        }
        claims.update({k: v for k, v in optional.items() if v})
        if principal.guardianships:
            districts: dict[str, list[str]] = {}
            for student_key, district_id in sorted(principal.guardianships):
                districts.setdefault(student_key, []).append(district_id)
            claims["guardianships"] = districts
        signing_key, jwk = self._key()
        return jwt.encode(claims, signing_key, algorithm="EdDSA", headers={"kid": jwk["kid"]})


# --- settings ----------------------------------------------------------------------------


class AuthSettings(BaseSettings):
    """Which issuer the services trust (HOMEROOM_AUTH_*)."""

    model_config = SettingsConfigDict(env_prefix="HOMEROOM_AUTH_", extra="ignore")

    issuer: str = DEV_ISSUER
    audience: str = DEV_AUDIENCE
    jwks_url: str | None = None  # production: the issuer's published key set
    jwks_file: Path | None = None  # a key set kept on disk (air-gapped installs, tests)
    dev_key_file: Path = Path(".homeroom/dev-issuer.pem")
    # Consent's guardianship issuer (HOMEROOM_CONSENT_GUARDIAN_KEY_FILE's public half), trusted
    # for role parent only. Unset in development, where consent signs with the dev issuer.
    guardian_issuer: str = "homeroom-guardianship"
    guardian_jwks_file: Path | None = None
    leeway_s: float = 30
    environment: Environment = Field(
        default="development", validation_alias=AliasChoices("HOMEROOM_ENVIRONMENT", "environment")
    )

    def dev_issuer(self) -> DevIssuer:
        return DevIssuer(self.dev_key_file, self.issuer, self.audience)

    def build_verifier(self, service: str | None = None) -> TokenVerifier:
        """The verifier for this deployment; ValueError at start on unsafe configuration. For
        ``service``, only tokens whose `aud` names ``<audience>/<service>`` are accepted."""
        if self.jwks_url and self.jwks_file:
            raise ValueError("set HOMEROOM_AUTH_JWKS_URL or HOMEROOM_AUTH_JWKS_FILE, not both")
        production = self.environment == "production"
        if production:
            if not (self.jwks_url or self.jwks_file):
                raise ValueError(
                    "production start refused: set HOMEROOM_AUTH_JWKS_URL (or HOMEROOM_AUTH_JWKS_FILE); "
                    "the development token issuer is never trusted in production"
                )
            if self.issuer == DEV_ISSUER:
                raise ValueError("production start refused: set HOMEROOM_AUTH_ISSUER to the real issuer")
            if self.jwks_url and not self.jwks_url.startswith("https://"):
                raise ValueError("production start refused: HOMEROOM_AUTH_JWKS_URL must be https")
        keys: KeySource
        if self.jwks_url:
            keys = JwksUrlKeys(self.jwks_url)
        elif self.jwks_file:
            keys = StaticKeys.from_jwks_file(self.jwks_file)
        else:
            return self.dev_issuer().verifier(self.leeway_s, service)
        audience = service_audience(self.audience, service) if service else self.audience
        guardian = None
        if self.guardian_jwks_file is not None:
            guardian = TokenVerifier(
                self.guardian_issuer, audience, StaticKeys.from_jwks_file(self.guardian_jwks_file), self.leeway_s
            )
        return TokenVerifier(self.issuer, audience, keys, self.leeway_s, guardian=guardian)


# --- FastAPI -----------------------------------------------------------------------------


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("missing_token", "a bearer token is required (Authorization: Bearer <token>)")
    return token


def remembered_principal(request: Request) -> Principal | None:
    """The caller, when its bearer token was verified before and has not expired: a dict
    lookup (no signature check, no thread, no rate limit). None in every other case (no
    verifier yet, no bearer token, a token not seen), where `current_principal` decides."""
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        return None
    try:
        token = _bearer_token(request)
    except AuthenticationError:
        return None
    return verifier.cached(token)


async def current_principal(request: Request) -> Principal:
    """The verified caller, from the bearer token and the app's `state.token_verifier`."""
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:  # a wiring bug, not the caller's: a 500, logged
        raise RuntimeError("app.state.token_verifier is not set; the app factory builds it in the lifespan")
    token = _bearer_token(request)
    principal = verifier.cached(token)
    if principal is None:
        principal = await run_in_threadpool(verifier.verify, token) if verifier.may_block else verifier.verify(token)
    request.state.principal = principal  # for access logs and audit, which run outside the handler
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None and principal.role is not Role.SERVICE:  # homeroom.ratelimit
        await limiter.check(f"{principal.role.value}:{principal.subject}", "principal")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: Role | str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that admits only these roles (403 for others) and yields the principal:
    `principal: Annotated[Principal, Depends(require_roles(Role.COMPLIANCE))]`."""
    allowed = frozenset(Role(r) for r in roles)
    if not allowed:
        raise ValueError("require_roles needs at least one role")
    names = ", ".join(sorted(allowed))

    async def principal_with_role(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(f"this needs the role {names}; the token's role is {principal.role.value}")
        return principal

    return principal_with_role
