"""The portal's FastAPI app: pages, the stylesheet, health, and how errors look.

Built by `create_portal_app` (the `app_factory` of the portal's ServiceSpec) instead of
the kernel's database-and-bus runtime: the portal keeps nothing, so it has no database,
no bus and no outbox. It reuses the kernel's HTTP metrics, health routes and logging.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from homeroom.auth import AuthSettings
from homeroom.clock import Clock, system_clock
from homeroom.ratelimit import limiter
from homeroom.telemetry import SERVICE_UP, health_router, instrument_http
from services.portal import (
    compliance,
    dev_identity,
    district,
    incidents,
    linking,
    notices,
    parent,
    public,
    statistics,
    transparency,
    vendor,
)
from services.portal.clients import Services, UpstreamError
from services.portal.session import SignIn
from services.portal.settings import PortalSettings
from services.portal.web import PageError, Portal, SignInRequired, render

# No scripts at all; styles and images from the portal only; forms post only to the portal.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def create_portal_app(
    settings: PortalSettings, auth: AuthSettings | None = None, clock: Clock = system_clock
) -> FastAPI:
    """`clock`: now, for what a page says about time (tests move it)."""
    settings.require_production_secrets()
    sign_in = SignIn(settings, auth or AuthSettings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services(settings)

        async def guardian_token(subject: str) -> str:
            return await services.consent.guardian_token(subject, service_token=sign_in.service_token())

        sign_in.guardian_minter = guardian_token
        app.state.portal = Portal(settings, services, sign_in, clock)
        SERVICE_UP.labels("portal").set(1)
        try:
            yield
        finally:
            SERVICE_UP.labels("portal").set(0)
            await services.aclose()

    app = FastAPI(title="Homeroom portal", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.sign_in_limiter = limiter(settings.sign_in_rate_limit, "portal")
    instrument_http(app, "portal")
    _security_headers(app)
    _error_pages(app)
    # The portal is ready when it runs: a service it calls being down shows on the page that needs it.
    app.include_router(health_router("portal", {}, settings.instance_id))
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    routers = (
        public.router,
        parent.router,
        compliance.router,
        linking.router,
        transparency.router,
        district.router,
        incidents.router,
        notices.router,
        statistics.router,
        vendor.router,
    )
    for router in (*routers, dev_identity.router):  # dev_identity answers 404 unless offered
        app.include_router(router)
    return app


def _security_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"  # pages hold a child's data: never cached
        return response


def _error_pages(app: FastAPI) -> None:
    def page(request: Request, status: int, title: str, message: str) -> Response:
        session = getattr(request.state, "session", None)
        return render(request, "error.html", session, status=status, title=title, message=message)

    async def on_page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return page(request, exc.status, exc.title, exc.message)

    async def on_sign_in_required(request: Request, exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/sign-in?next={quote(target, safe='')}", status_code=303)

    async def on_upstream(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UpstreamError)
        if exc.status == 401:  # the token expired or was refused: sign in again
            response = RedirectResponse("/sign-in?expired=1", status_code=303)
            request.app.state.portal.sign_in.end_session(response, request)
            return response
        titles = {
            403: "Not allowed",
            404: "Not found, or not yours to see",
            409: "Not possible now",
            410: "Destroyed",
            422: "Not accepted",
        }
        title = titles.get(exc.status, "Service unavailable")
        return page(request, exc.status, title, f"The {exc.service} service answered: {exc.detail}")

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        titles = {404: "Page not found", 405: "Not allowed here", 422: "Not accepted"}
        return page(request, exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail))

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors())
        return page(request, 422, "Not accepted", f"This address is not one the portal knows how to read ({where}).")

    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(PageError, on_page_error)
    app.add_exception_handler(SignInRequired, on_sign_in_required)
    app.add_exception_handler(UpstreamError, on_upstream)
    app.add_exception_handler(StarletteHTTPException, on_http)
