"""Pages anyone may open: the start page, sign-in and sign-out, and the Ed Law 2-d agreements page."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from homeroom.auth import AuthenticationError, Role
from homeroom.contracts.answers import raw_all
from homeroom.data_dictionary import dictionary, never_collected
from services.portal.clients import UpstreamError
from services.portal.session import dev_token
from services.portal.web import (
    HOME,
    CurrentSession,
    OptionalSession,
    PageError,
    PortalDep,
    SignInAttempt,
    checked_form,
    form_fields,
    render,
)

router = APIRouter(include_in_schema=False)

DEV_ROLES = [
    (Role.PARENT, "Parent (give your children's student keys)"),
    (Role.COMPLIANCE, "Compliance staff"),
    (Role.DISTRICT_STAFF, "District data office (give the district)"),
    (Role.VENDOR, "Vendor (give the agreement)"),
]


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another one."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/")
async def home(request: Request, session: OptionalSession) -> Response:
    if session is not None and session.principal.role in HOME:
        return RedirectResponse(HOME[session.principal.role], status_code=303)
    return render(request, "home.html", session)


# What a sign-in link may fill in on the development sign-in form (the demo's links), by query name.
PREFILL = ("role", "subject", "students", "district", "agreement", "organization")


@router.get("/sign-in")
async def sign_in_page(
    request: Request,
    portal: PortalDep,
    session: OptionalSession,
    next: str | None = None,
    expired: bool = False,
) -> Response:
    return render(
        request,
        "sign_in.html",
        session,
        next=_safe_next(next),
        expired=expired,
        roles=DEV_ROLES,
        form={name: request.query_params.get(name, "") for name in PREFILL},
        oidc=portal.settings.oidc_configured,
        error=None,
    )


@router.post("/sign-in/dev", dependencies=[SignInAttempt])
async def dev_sign_in(request: Request, portal: PortalDep) -> Response:
    issuer = portal.sign_in.dev_issuer
    if issuer is None:
        raise PageError(
            404, "No development sign-in", "This portal signs people in through the district's identity provider."
        )
    form = await form_fields(request)
    try:
        token = dev_token(issuer, form)
    except ValueError as exc:
        return render(
            request,
            "sign_in.html",
            None,
            status=422,
            next=_safe_next(form.get("next")),
            expired=False,
            roles=DEV_ROLES,
            form=form,
            oidc=portal.settings.oidc_configured,
            error=str(exc),
        )
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    portal.sign_in.start_session(response, token)
    return response


@router.get("/sign-in/oidc", dependencies=[SignInAttempt])
async def oidc_start(portal: PortalDep) -> Response:
    if not portal.settings.oidc_configured:
        raise PageError(404, "No identity provider", "No OpenID Connect provider is configured for this portal.")
    response = RedirectResponse("/", status_code=303)
    async with httpx.AsyncClient(timeout=portal.settings.peer_timeout_s) as client:
        try:
            response.headers["location"] = await portal.sign_in.authorization_redirect(client, response)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise PageError(503, "Identity provider unavailable", f"Sign-in could not start: {exc}") from None
    return response


@router.get("/sign-in/oidc/callback", dependencies=[SignInAttempt])
async def oidc_callback(
    request: Request,
    portal: PortalDep,
    code: Annotated[str, Query(max_length=4096)] = "",
    state: Annotated[str, Query(max_length=512)] = "",
    error: str = "",
) -> Response:
    if error or not code:
        raise PageError(401, "Sign-in did not finish", f"The identity provider answered: {error or 'no code'}.")
    async with httpx.AsyncClient(timeout=portal.settings.peer_timeout_s) as client:
        try:
            token, refresh_token, id_token, subject = await portal.sign_in.exchange_code(client, request, code, state)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise PageError(401, "Sign-in did not finish", str(exc)) from None
    # A page, not a redirect: a SameSite=Strict cookie set at the end of a cross-site
    # redirect chain is not sent on the next hop, so the person continues from here.
    response: Response = HTMLResponse(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signed in</title>'
        '<meta http-equiv="refresh" content="0;url=/"><link rel="stylesheet" href="/static/portal.css"></head>'
        '<body><main id="main"><h1>Signed in</h1><p><a href="/">Continue to Homeroom</a></p></main></body></html>'
    )
    try:  # in a thread: the first check may fetch the issuer's key set
        await run_in_threadpool(
            lambda: portal.sign_in.start_session(response, token, refresh_token=refresh_token, id_token=id_token)
        )
    except AuthenticationError as refused:
        # Not a Homeroom token (a family's identity carries no role): the person is who the ID
        # token says, and what they may see comes from their guardianship links (issue 24).
        if subject is None:
            raise PageError(
                401, "Sign-in refused", f"The identity provider's token is not accepted: {refused}"
            ) from None
        try:
            guardian = await portal.sign_in.guardian_token(subject)
        except UpstreamError as exc:
            raise PageError(503, "Sign-in could not finish", f"Your links could not be read: {exc.detail}") from None
        portal.sign_in.start_session(response, guardian, id_token=id_token, guardian_subject=subject)
    except Exception as exc:  # the token the provider gave is one the services would refuse
        raise PageError(401, "Sign-in refused", f"The identity provider's token is not accepted: {exc}") from None
    response.delete_cookie("homeroom_oidc_flow", path="/sign-in/oidc")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, portal: PortalDep, session: CurrentSession) -> Response:
    await checked_form(request, session)
    response = RedirectResponse("/?signed_out=1", status_code=303)
    # Ended on the server: the old cookie opens nothing, and was never a bearer token.
    ended = portal.sign_in.end_session(response, request)
    try:  # and at the identity provider, when it offers RP-initiated logout
        provider_logout = await portal.sign_in.logout_url(ended, portal.settings.post_logout_uri)
    except (httpx.HTTPError, ValueError, KeyError):
        provider_logout = None
    if provider_logout is not None:
        response.headers["location"] = provider_logout
    return response


@router.get("/agreements")
async def agreements(request: Request, portal: PortalDep, session: OptionalSession) -> Response:
    found = await portal.services.consent.public_agreements()
    try:  # breach notices districts chose to publish (the incidents service); the page stands without them
        breaches = (await portal.services.incidents.public_breach_notices()).notices
    except UpstreamError:
        breaches = []
    items, waiting = raw_all(found.agreements), found.awaiting_certification
    return render(request, "agreements.html", session, agreements=items, awaiting=waiting, breaches=breaches)


async def _in_force(portal: PortalDep) -> list[dict[str, Any]]:
    return raw_all((await portal.services.consent.public_agreements()).agreements)


@router.get("/data-dictionary")
async def data_dictionary_page(request: Request, portal: PortalDep, session: OptionalSession) -> Response:
    """Every data element Homeroom keeps, from the catalogue, with who may receive it (issue 24)."""
    entries = dictionary(await _in_force(portal))
    groups: dict[str, list[Any]] = {}
    for entry in entries:
        groups.setdefault(entry.group, []).append(entry)
    return render(request, "data_dictionary.html", session, groups=groups, refused=never_collected())


@router.get("/data-dictionary.json")
async def data_dictionary_json(portal: PortalDep) -> dict[str, Any]:
    entries = dictionary(await _in_force(portal))
    return {"elements": [e.as_dict() for e in entries], "never_collected": never_collected()}
