"""The consent service as the kernel runs it: `homeroom serve consent`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from homeroom.auth import DevIssuer
from homeroom.gc_tuning import young_threshold
from homeroom.pseudonym import load_or_create_key
from homeroom.ratelimit import limiter
from homeroom.service import ServiceSpec
from services.consent import api, guardianship_api, transparency_api
from services.consent.application.ending import expiry_checks
from services.consent.clients import RecordsDirectory
from services.consent.consumers import CONSUMERS
from services.consent.facts import DecisionLog
from services.consent.guardianship import CodeHasher
from services.consent.settings import ConsentSettings
from services.consent.state import ConsentRuntime, ConsentState


def guardian_issuer(runtime: ConsentRuntime) -> DevIssuer | None:
    """The key parent tokens are signed with: the configured one, else the development issuer."""
    settings = runtime.settings
    if settings.guardian_key_file is not None:
        return DevIssuer(
            settings.guardian_key_file, issuer=settings.guardian_issuer, audience=settings.guardian_audience
        )
    return runtime.dev_issuer


@contextlib.asynccontextmanager
async def lifecycle(runtime: ConsentRuntime) -> AsyncIterator[ConsentState]:
    """The collector's young-generation threshold, the decision point's facts and log, records'
    directory (tests: their records in process, `peers={"records": ...}`), the linking-code
    hasher, the redemption limit, the parent-token issuer; the expiry check and the gauges.
    Stopped in reverse on the way out."""
    settings = runtime.settings
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(young_threshold(settings.gc_young_threshold))
        directory = RecordsDirectory(
            settings.records_url, settings.records_timeout_s, transport=runtime.peer("records")
        )
        stack.push_async_callback(directory.aclose)
        decisions = DecisionLog(runtime.pool)
        await decisions.start()
        stack.push_async_callback(decisions.stop)
        state = ConsentState(
            decisions=decisions,
            directory=directory,
            hasher=CodeHasher(load_or_create_key(settings.linking_code_key_path)),
            limiter=limiter(settings.linking_rate_limit, "consent"),
            issuer=guardian_issuer(runtime),
            token_ttl_s=settings.guardian_token_ttl_s,
        )
        await stack.enter_async_context(expiry_checks(runtime))
        yield state


SERVICE = ServiceSpec(
    settings=ConsentSettings,
    routers=(*api.ROUTERS, guardianship_api.router, transparency_api.router),
    consumers=CONSUMERS,
    sends_notices=True,
    description="Data-sharing agreements, parents' choices, guardianship links and the disclosure decision point.",
    uses_cipher=True,
    lifecycle=lifecycle,
    openapi_tags={**api.TAGS, **guardianship_api.TAGS, **transparency_api.TAGS},
)
