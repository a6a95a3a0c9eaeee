"""Hostile input against every HTTP API of every service, running for real.

For each route in each service's OpenAPI document: forged, expired, `alg: none` and
missing tokens must be refused with 401 before anything else happens; then, with valid
tokens of every role, seeded random junk (path parameters with traversal and SQL
fragments, malformed and oversized JSON, wrong content types) must never produce a 5xx.
The number of requests tried is printed.
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from homeroom.auth import Role
from homeroom.registry import SERVICES, load_spec
from tests.harness import ServiceEnv, service_under_test

PUBLIC_PREFIXES = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc", "/v1/public/")
NASTY_SEGMENTS = [
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "' OR '1'='1",
    "d-100; DROP TABLE outbox;--",
    "%00",
    "x" * 5000,
    "😀",
    "-1",
    "99999999999999999999999",
    "stu_" + "a" * 32,
    "null",
]


def junk_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, 1.5e308, -0.0])
    if kind == 3:
        return rng.choice(NASTY_SEGMENTS)
    if kind == 4:
        return rng.choice(["2026-02-30", "9999-99-99", "", " ", "student.ssn", "123-45-6789"])
    if kind == 5:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 40)))
    if kind == 6:
        return [junk_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    keys = ["district_id", "student_key", "elements", "purpose", "records", "type", "action", "reason", "x"]
    return {rng.choice(keys): junk_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))}


def forged_tokens(env: ServiceEnv) -> dict[str, str]:
    good = env.token(Role.COMPLIANCE)
    header, payload, _ = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    none_header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    other_key = Ed25519PrivateKey.generate()
    expired = {**claims, "exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}
    real_key, jwk = env.issuer._key()  # the trusted key itself: only the expiry is wrong
    return {
        "alg_none": f"{none_header}.{payload}.",
        "wrong_key": jwt.encode(claims, other_key, algorithm="EdDSA", headers={"kid": jwk["kid"]}),
        "expired": jwt.encode(expired, real_key, algorithm="EdDSA", headers={"kid": jwk["kid"]}),
        "wrong_audience": jwt.encode(
            {**claims, "aud": "elsewhere"}, real_key, algorithm="EdDSA", headers={"kid": jwk["kid"]}
        ),
        "garbage": "not.a.token",
        "tampered": f"{header}.{payload[:-2]}xx.{good.split('.')[2]}",
    }


def role_headers(env: ServiceEnv) -> list[dict[str, str]]:
    return [
        env.auth(Role.DISTRICT_STAFF, district="d-100"),
        env.auth(Role.SCHOOL_STAFF, district="d-100", schools=["d-100-s1"]),
        env.auth(Role.VENDOR, agreement="agr-x", organization="Mallory Apps"),
        env.auth(Role.PARENT, students=["stu_" + "b" * 32]),
        env.auth(Role.COMPLIANCE),
        env.auth(Role.OPERATOR),
        env.auth(Role.SERVICE),
    ]


def fill_path(path: str, rng: random.Random) -> str:
    out = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            out.append(rng.choice(NASTY_SEGMENTS).replace("/", "%2F"))
        else:
            out.append(part)
    return "/".join(out)


@pytest.mark.parametrize("service", list(SERVICES))
async def test_no_route_accepts_a_forged_token_or_fails_on_junk(service: str, service_env: ServiceEnv) -> None:
    spec = load_spec(service)
    rng = random.Random(f"hostile-{service}")
    tried = 0
    async with service_under_test(spec, service_env, start_consumers=False) as svc:
        openapi = (await svc.client.get("/openapi.json")).json()
        routes = [
            (p, m) for p, ops in openapi["paths"].items() for m in ops if m in ("get", "post", "put", "patch", "delete")
        ]
        tokens = forged_tokens(service_env)
        roles = role_headers(service_env)
        for path, method in routes:
            protected = not path.startswith(PUBLIC_PREFIXES)
            # A plain value, so the route matches and the token is what is judged.
            concrete = re.sub(r"\{[^}]+\}", "probe-1", path)
            if protected:
                for name, token in [("missing", None), *tokens.items()]:
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    response = await svc.client.request(method, concrete, headers=headers, json={})
                    tried += 1
                    assert response.status_code == 401, (
                        f"{method.upper()} {path} with {name} token: {response.status_code}"
                    )
                    assert response.headers["content-type"].startswith("application/problem+json")
            for _ in range(12):
                headers = dict(rng.choice(roles))
                concrete = fill_path(path, rng)
                choice = rng.randrange(4)
                kwargs: dict[str, Any]
                if choice == 0:
                    kwargs = {"json": junk_value(rng)}
                elif choice == 1:
                    kwargs = {
                        "content": b"{" * rng.randrange(1, 5000),
                        "headers": {**headers, "content-type": "application/json"},
                    }
                elif choice == 2:
                    kwargs = {
                        "content": bytes(rng.randrange(256) for _ in range(200)),
                        "headers": {**headers, "content-type": "application/xml"},
                    }
                else:
                    kwargs = {
                        "params": {"limit": rng.choice(["-1", "1e9", "abc"]), "filter": rng.choice(NASTY_SEGMENTS)}
                    }
                kwargs.setdefault("headers", headers)
                response = await svc.client.request(method, concrete, **kwargs)
                tried += 1
                # 503 is the designed fail-closed answer when a peer (consent) is not reachable; any
                # other 5xx is a crash.
                crashed = response.status_code >= 500 and response.status_code != 503
                assert not crashed, f"{method.upper()} {concrete[:120]} → {response.status_code}: {response.text[:300]}"
    print(f"\n{service}: {len(routes)} routes, {tried} hostile requests, no crash, every forged token refused")
    assert tried >= len(routes) * 12
