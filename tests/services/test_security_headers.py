"""Issue 17, item 11: answers with personal data could be cached (no Cache-Control), and
consent's public HTML had no Content-Security-Policy. Every service's answers now carry
`Cache-Control: no-store` (the kernel's plain ASGI middleware), HTML a strict CSP."""

from __future__ import annotations

from homeroom.http_headers import CONTENT_SECURITY_POLICY
from services.audit.service import SERVICE as AUDIT
from services.consent.service import SERVICE as CONSENT
from tests.harness import ServiceEnv, service_under_test


async def test_personal_data_is_never_cached_and_public_html_has_a_policy(service_env: ServiceEnv) -> None:
    async with service_under_test(AUDIT, service_env, start_consumers=False) as audit:
        export = await audit.client.get("/v1/export", headers=service_env.auth("compliance"))
        assert export.status_code == 200
        refused = await audit.client.get("/v1/export", headers=service_env.auth("operator"))
        for response in (export, refused):
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" not in export.headers  # JSON Lines, not HTML
    async with service_under_test(CONSENT, service_env, start_consumers=False) as consent:
        page = await consent.client.get("/v1/public/agreements.html")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "script-src" not in CONTENT_SECURITY_POLICY and "default-src 'none'" in CONTENT_SECURITY_POLICY
        assert page.headers["cache-control"] == "no-store"
