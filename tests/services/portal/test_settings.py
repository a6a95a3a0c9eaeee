"""Sign-in configuration without a stack: where development sign-in is refused, what
production needs, and the sign-in links `./run demo` prints."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from homeroom.auth import AuthSettings, DevIssuer
from homeroom_dev.demo import portal_sign_in_links
from homeroom_dev.scenario import Scenario
from services.portal.app import create_portal_app
from services.portal.session import SignIn
from services.portal.settings import PortalSettings


def test_production_refuses_to_start_without_oidc() -> None:
    with pytest.raises(ValueError, match="HOMEROOM_PORTAL_OIDC_ISSUER"):
        create_portal_app(PortalSettings(environment="production"))
    with pytest.raises(ValueError, match="https"):
        PortalSettings(
            environment="production",
            oidc_issuer="http://login.example.org",
            oidc_client_id="homeroom-portal",
            oidc_client_secret_file=Path("/run/secrets/x"),
            oidc_redirect_uri="https://portal.example.org/sign-in/oidc/callback",
        ).require_production_secrets()


def test_development_sign_in_only_where_the_services_trust_the_dev_issuer(tmp_path: Path) -> None:
    dev_key = tmp_path / "dev-issuer.pem"
    assert SignIn(PortalSettings(), AuthSettings(dev_key_file=dev_key)).dev_issuer is not None
    assert SignIn(PortalSettings(dev_sign_in=False), AuthSettings(dev_key_file=dev_key)).dev_issuer is None
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(DevIssuer(tmp_path / "other.pem").jwks()))
    real_issuer = AuthSettings(dev_key_file=dev_key, issuer="https://login.example.org", jwks_file=jwks)
    assert SignIn(PortalSettings(), real_issuer).dev_issuer is None
    assert SignIn(PortalSettings(environment="test"), AuthSettings(dev_key_file=dev_key, environment="test")).dev_issuer


def test_demo_prints_a_sign_in_link_per_role(tmp_path: Path) -> None:
    scenario = Scenario({}, tmp_path)
    scenario.facts["agreement_id"] = "agr-1"
    links = portal_sign_in_links("http://127.0.0.1:8006", scenario)
    assert set(links) == {"parent", "compliance", "district staff", "vendor"}
    parent = parse_qs(urlsplit(links["parent"]).query)
    assert urlsplit(links["parent"]).path == "/sign-in"
    assert parent["role"] == ["parent"] and parent["students"] == [scenario.mover_key]
    assert parse_qs(urlsplit(links["district staff"]).query)["district"] == [scenario.district_b.id]
