"""The consent service as the kernel runs it: `homeroom serve consent`."""

from __future__ import annotations

from pathlib import Path

from homeroom.auth import DevIssuer
from homeroom.pseudonym import load_or_create_key
from homeroom.ratelimit import limiter
from homeroom.service import Runtime, ServiceSpec
from services.consent import linking
from services.consent.api import ROUTERS
from services.consent.application import start_expiry_checks, stop_expiry_checks
from services.consent.clients import RecordsDirectory
from services.consent.consumers import CONSUMERS
from services.consent.guardianship import CodeHasher
from services.consent.guardianship_api import router as guardianship_router
from services.consent.settings import ConsentSettings
from services.consent.transparency_api import router as transparency_router


def guardian_issuer(settings: ConsentSettings, runtime: Runtime) -> DevIssuer | None:
    """The key parent tokens are signed with: the configured one, else the development issuer."""
    if settings.guardian_key_file is not None:
        return DevIssuer(
            settings.guardian_key_file, issuer=settings.guardian_issuer, audience=settings.guardian_audience
        )
    return runtime.dev_issuer


async def on_start(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, ConsentSettings)
    if linking.STATE_KEY not in runtime.extras:  # tests inject theirs (records in process)
        runtime.extras[linking.STATE_KEY] = linking.GuardianshipState(
            directory=RecordsDirectory(settings.records_url, settings.records_timeout_s, runtime.peer("records")),
            limiter=limiter(settings.linking_rate_limit, "consent"),
            issuer=guardian_issuer(settings, runtime),
            hasher=CodeHasher(load_or_create_key(settings.linking_code_key_path)),
            token_ttl_s=settings.guardian_token_ttl_s,
        )
    await start_expiry_checks(runtime)


async def on_stop(runtime: Runtime) -> None:
    await stop_expiry_checks(runtime)
    found = runtime.extras.get(linking.STATE_KEY)
    if isinstance(found, linking.GuardianshipState) and isinstance(found.directory, RecordsDirectory):
        await found.directory.aclose()


SERVICE = ServiceSpec(
    name="consent",
    settings=ConsentSettings,
    routers=(*ROUTERS, guardianship_router, transparency_router),
    migrations=Path(__file__).parent / "migrations",
    consumers=(*CONSUMERS, linking.CONSUMER),
    sends_notices=True,
    description="Data-sharing agreements, parents' choices, guardianship links and the disclosure decision point.",
    uses_cipher=True,
    on_start=on_start,
    on_stop=on_stop,
    openapi_tags=(
        {"name": "agreements", "description": "The registry of data-sharing agreements and the Ed Law 2-d import."},
        {"name": "public", "description": "Read without signing in: the active agreements and what they receive."},
        {"name": "decisions", "description": "The decision point every disclosure passes."},
        {"name": "parents' choices", "description": "Directory opt-outs and written consents."},
        {"name": "guardianship", "description": "Linking codes, guardianship links and parents' tokens (issue 24)."},
        {"name": "transparency", "description": "A district's own answers to the 32 questions of seed 001."},
    ),
)
