"""What every page needs: the portal's shared objects, rendering, and the role checks.

Pages are server-rendered HTML (Jinja2, autoescaped) with one stylesheet and no scripts.
A page that needs a sign-in sends the person to /sign-in; a page for another role
answers 403 with a page saying whose it is.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from homeroom.auth import Role
from homeroom.catalogue import CATALOGUE
from homeroom.clock import Clock, system_clock
from homeroom.problems import Problem
from homeroom.ratelimit import RateLimiter
from services.portal.clients import Services, UpstreamError
from services.portal.session import Session, SignIn, csrf_ok, same_origin
from services.portal.settings import PortalSettings

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

# What each role finds in the navigation: (path, label). Roles not listed see only the public pages.
NAVIGATION: dict[Role, list[tuple[str, str]]] = {
    Role.PARENT: [("/parent", "My children"), ("/notices", "Notices")],
    Role.COMPLIANCE: [
        ("/compliance", "Overview"),
        ("/compliance/log", "Disclosure log"),
        ("/compliance/agreements", "Agreements to review"),
        ("/incidents", "Incidents"),
        ("/notices", "Notices"),
    ],
    Role.DISTRICT_STAFF: [
        ("/district", "Submissions and transfers"),
        ("/district/chronic-absence", "Chronic absence"),
        ("/district/statistics", "Our numbers and the public's"),
        ("/district/amendments", "Correction requests"),
        ("/district/linking", "Parents' linking codes"),
        ("/district/transparency", "Transparency page"),
        ("/incidents", "Incidents"),
        ("/notices", "Notices"),
    ],
    Role.VENDOR: [("/vendor", "Your agreement")],
}
ROLE_NAMES: dict[Role, str] = {
    Role.PARENT: "parent",
    Role.COMPLIANCE: "compliance staff",
    Role.DISTRICT_STAFF: "district data office",
    Role.SCHOOL_STAFF: "school staff",
    Role.VENDOR: "vendor",
    Role.OPERATOR: "operator",
    Role.SERVICE: "service",
}
HOME: dict[Role, str] = {
    Role.PARENT: "/parent",
    Role.COMPLIANCE: "/compliance",
    Role.DISTRICT_STAFF: "/district",
    Role.VENDOR: "/vendor",
}


@dataclass(eq=False)  # compared and hashed by identity, as exceptions are
class PageError(Exception):
    """Rendered as an error page with this status."""

    status: int
    title: str
    message: str

    def __str__(self) -> str:
        return self.message


class SignInRequired(Exception):
    pass


@dataclass
class Portal:
    settings: PortalSettings
    services: Services
    sign_in: SignIn
    clock: Clock = system_clock


def get_portal(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


PortalDep = Annotated[Portal, Depends(get_portal)]


def element_name(element: str) -> str:
    known = CATALOGUE.get(element)
    return known.name if known is not None else element


def humanise(value: object) -> str:
    return str(value or "").replace("_", " ")


def when(value: object) -> str:
    """An ISO 8601 time as people write it ("23 November 2026, 02:51 UTC"); other text as it is."""
    text = str(value or "")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None:
        return text
    return moment.astimezone(UTC).strftime("%-d %B %Y, %H:%M UTC")


TEMPLATES.env.filters["element_name"] = element_name
TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["humanise"] = humanise
TEMPLATES.env.filters["epoch"] = lambda seconds: when(datetime.fromtimestamp(int(seconds or 0), UTC).isoformat())


async def optional_session(request: Request, portal: PortalDep) -> Session | None:
    session = await portal.sign_in.session(request)
    request.state.session = session
    return session


async def current_session(request: Request, portal: PortalDep) -> Session:
    session = await optional_session(request, portal)
    if session is None:
        raise SignInRequired()
    return session


OptionalSession = Annotated[Session | None, Depends(optional_session)]
CurrentSession = Annotated[Session, Depends(current_session)]


async def sign_in_attempt(request: Request) -> None:
    """Sign-in attempts and linking-code redemptions per client address are limited (guessing,
    token minting floods); consent limits redemptions per person as well."""
    limiter: RateLimiter | None = getattr(request.app.state, "sign_in_limiter", None)
    if limiter is None:
        return
    try:
        await limiter.check(request.client.host if request.client else "unknown", "sign-in")
    except Problem as refused:
        raise PageError(429, "Too many attempts", refused.detail or "Try again in a minute.") from None


SignInAttempt = Depends(sign_in_attempt)
LinkingAttempt = SignInAttempt


def refusal_messages(exc: UpstreamError, *, name_fields: bool = False) -> list[str]:
    """What a service's refusal says, one line per field error (with the field named when
    `name_fields`); its detail when it names none."""
    if name_fields:
        return [f"{e.get('field', '')}: {e.get('message', '')}" for e in exc.field_errors] or [exc.detail]
    return [str(e.get("message") or e) for e in exc.field_errors] or [exc.detail]


def require_role(session: Session, *roles: Role) -> None:
    if session.principal.role not in roles:
        whose = " or ".join(ROLE_NAMES[r] for r in roles)
        raise PageError(
            403,
            "Not a page for your role",
            f"This page is for {whose}. You are signed in as {ROLE_NAMES[session.principal.role]}.",
        )


class View(Protocol):
    """What one page shows: a dataclass whose fields are its template's values (each named
    once, where the page's use case builds it) and the template it fills."""

    template: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]


def show(request: Request, session: Session | None, view: View, *, status: int = 200) -> Response:
    """Render `view`'s template with its fields (shallow: the values stay the objects they are)."""
    values = {f.name: getattr(view, f.name) for f in fields(view)}
    return render(request, view.template, session, status=status, **values)


@dataclass(frozen=True, slots=True)
class Page:
    """What a page handler acts with: the request, the portal and the signed-in person."""

    request: Request
    portal: Portal
    session: Session

    @property
    def services(self) -> Services:
        return self.portal.services

    @property
    def token(self) -> str:
        """The signed-in person's own token: every call a page makes carries it."""
        return self.session.token

    def render(self, template: str, *, status: int = 200, **context: Any) -> Response:
        return render(self.request, template, self.session, status=status, **context)

    def show(self, view: View, *, status: int = 200) -> Response:
        return show(self.request, self.session, view, status=status)

    async def form(self) -> dict[str, str]:
        """The fields of this page's changing form, once `check_form` accepts where it came from."""
        return await checked_form(self.request, self.session)


def page_for(*roles: Role) -> Any:
    """A dependency: the `Page` of a person signed in with one of `roles` (the 403 page for
    any other), checked before the route runs, so a router's pages share one declaration."""

    async def page(request: Request, portal: PortalDep, session: CurrentSession) -> Page:
        require_role(session, *roles)
        return Page(request, portal, session)

    return Depends(page)


def district_of(session: Session) -> str:
    """The district a district-staff page acts for (403 page for any other role)."""
    require_role(session, Role.DISTRICT_STAFF)
    assert session.principal.district_id is not None
    return session.principal.district_id


@dataclass(frozen=True, slots=True)
class DistrictPage(Page):
    """A district data office's page: the district it acts for, beside what every page has."""

    district: str


async def _district_page(request: Request, portal: PortalDep, session: CurrentSession) -> DistrictPage:
    return DistrictPage(request, portal, session, district_of(session))


# The `DistrictPage` of district staff (the 403 page for any other role), checked before the route runs.
DistrictStaff = Annotated[DistrictPage, Depends(_district_page)]


def check_form(request: Request, session: Session, form: dict[str, str]) -> None:
    """A changing request must come from a page the portal rendered for this session."""
    if not same_origin(request) or not csrf_ok(session, form.get("csrf")):
        raise PageError(
            403,
            "Form refused",
            "This form did not come from a page of this portal for you. Reload the page and try again.",
        )


async def form_fields(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def checked_form(request: Request, session: Session) -> dict[str, str]:
    """The fields of a changing form, once `check_form` accepts where it came from."""
    form = await form_fields(request)
    check_form(request, session, form)
    return form


def render(request: Request, template: str, session: Session | None, *, status: int = 200, **context: Any) -> Response:
    role = session.principal.role if session is not None else None
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "session": session,
            "role_name": ROLE_NAMES.get(role) if role else None,
            "navigation": NAVIGATION.get(role, []) if role else [],
            "dev_sign_in": get_portal(request).sign_in.dev_issuer is not None,
            **context,
        },
        status_code=status,
    )
