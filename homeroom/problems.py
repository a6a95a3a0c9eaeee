"""RFC 9457 problem details: the one error shape every Homeroom service answers with.

A district data office reading a rejected submission, a vendor whose token was refused
and an operator chasing a 500 all get the same JSON: `type`, `title`, `status`,
`detail`, `instance`, and for input errors an `errors` list naming each field, the rule
it broke (a machine id such as "date.not_in_future") and a plain-language message.

Validation errors never echo the submitted value back: the input is a student's data,
and an error response is not a place to disclose it.

Services raise `Problem` (or a subclass, such as the auth errors) anywhere in a request;
`install_problem_handlers(app)` renders it, along with FastAPI's request validation
errors, HTTP exceptions and anything unhandled.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from homeroom.asgi import HttpMiddleware

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Where a request value came from in FastAPI's error locations. Body errors get a JSON
# pointer into the submitted document; the others a dotted "query.limit" style name.
_REQUEST_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
# Members RFC 9457 defines; extensions may not overwrite them.
_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "errors"})

_log = logging.getLogger(__name__)


def problem_type(slug: str) -> str:
    """The `type` URI for a Homeroom problem. Relative, so no host is baked into errors."""
    return f"/problems/{slug}"


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One field that broke one rule.

    `field` is a JSON pointer into the submitted document ("/students/2/birth_date") or,
    for query, path and header parameters, a dotted name ("query.limit"). `record` names
    the line or index of the record in a batch, when the error belongs to one.
    """

    field: str
    rule: str
    message: str
    record: int | str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "rule": self.rule, "message": self.message}
        if self.record is not None:
            out["record"] = self.record
        return out


class Problem(Exception):
    """An error a client can act on, rendered as application/problem+json.

    `type` is a URI reference naming the kind of problem (use `problem_type(slug)`);
    "about:blank" means "nothing more than the HTTP status", and then the title is the
    status phrase. `headers` travel with the response (WWW-Authenticate, Retry-After).
    """

    def __init__(
        self,
        status: int,
        title: str | None = None,
        detail: str | None = None,
        *,
        type: str = "about:blank",
        instance: str | None = None,
        errors: Iterable[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"a problem needs an error status (400-599), not {status}")
        clash = _STANDARD_MEMBERS.intersection(extensions or {})
        if clash:
            raise ValueError(f"extension members may not replace standard members: {sorted(clash)}")
        self.status = status
        self.title = title or status_phrase(status)
        self.detail = detail
        self.type = type
        self.instance = instance
        self.errors: list[FieldError] = list(errors)
        self.headers: dict[str, str] = dict(headers or {})
        self.extensions: dict[str, Any] = dict(extensions or {})
        super().__init__(detail or self.title)

    @classmethod
    def validation(cls, errors: Iterable[FieldError], detail: str | None = None) -> Problem:
        """422 listing every field that failed, for services validating beyond pydantic."""
        listed = list(errors)
        return cls(
            422,
            "Invalid request",
            detail or _count_detail(len(listed)),
            type=problem_type("validation"),
            errors=listed,
        )

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail is not None:
            body["detail"] = self.detail
        if self.instance is not None:
            body["instance"] = self.instance
        if self.errors:
            body["errors"] = [e.as_dict() for e in self.errors]
        body.update(self.extensions)
        return body

    def __repr__(self) -> str:
        return f"Problem({self.status}, {self.title!r}, {self.detail!r}, type={self.type!r})"


def problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        problem.to_dict(), status_code=problem.status, headers=problem.headers, media_type=PROBLEM_MEDIA_TYPE
    )


def _count_detail(n: int) -> str:
    return f"{n} field{'s' if n != 1 else ''} failed validation."


def json_pointer(path: Sequence[str | int]) -> str:
    """RFC 6901 pointer for a path of keys and indexes ("" is the whole document)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _message(error: Mapping[str, Any]) -> str:
    msg = str(error.get("msg", ""))
    # pydantic prefixes messages from plain ValueError/assert in validators; the rule
    # already says what kind of error it is.
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def field_errors_from_pydantic(
    errors: Iterable[Mapping[str, Any]], *, record: int | str | None = None
) -> list[FieldError]:
    """FieldErrors from pydantic's `errors()` list, one per error, in order.

    The rule is pydantic's error type ("missing", "string_too_short"); a validator that
    raises `PydanticCustomError("date.not_in_future", "...")` names its own rule. Works
    for FastAPI request errors (whose location starts with "body", "query", ...) and for
    a plain `ValidationError` of one record (pass `record=` its line or index).
    """
    out: list[FieldError] = []
    for error in errors:
        loc: list[str | int] = list(error.get("loc", ()))
        rule = str(error.get("type", "invalid"))
        if loc and loc[0] in _REQUEST_LOCATIONS:
            where, rest = str(loc[0]), loc[1:]
            if where == "body":
                # An unparseable body is located at a character offset, not a field.
                field = "" if rule == "json_invalid" else json_pointer(rest)
            else:
                field = ".".join([where, *map(str, rest)])
        else:
            field = json_pointer(loc)
        out.append(FieldError(field=field, rule=rule, message=_message(error), record=record))
    return out


def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # The client gets an id to quote; the traceback goes to the log under that id.
    incident = f"urn:uuid:{uuid.uuid4()}"
    _log.error(
        "unhandled error in %s %s (%s)",
        request.method,
        request.url.path,
        incident,
        exc_info=exc,
        extra={"problem_instance": incident},
    )
    return problem_response(
        Problem(
            500,
            detail="An unexpected error occurred. Quote the instance id when reporting it.",
            type=problem_type("internal-error"),
            instance=incident,
        )
    )


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc)


async def _on_request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(Problem.validation(field_errors_from_pydantic(exc.errors())))


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code < 400:  # e.g. 304 raised as an exception: no body allowed or wanted
        return Response(status_code=exc.status_code, headers=exc.headers)
    detail = exc.detail if isinstance(exc.detail, str) else None
    phrase = status_phrase(exc.status_code)
    extensions: dict[str, Any] = {} if isinstance(exc.detail, str) or exc.detail is None else {"data": exc.detail}
    problem = Problem(
        exc.status_code,
        phrase,
        None if detail == phrase else detail,
        headers=exc.headers,
        extensions=extensions,
    )
    return problem_response(problem)


async def _on_unhandled(request: Request, exc: Exception) -> Response:
    return _internal_error(request, exc)


class _UnhandledErrorMiddleware(HttpMiddleware):
    """Turns an exception no handler took into a 500 problem, logged once.

    Starlette's own 500 path re-raises after responding, so the server logs the same
    traceback a second time without the incident id; catching here avoids that.
    """

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:  # too late to change the response; let the server close it
                raise
            response = _internal_error(Request(scope), exc)
            await response(scope, receive, send)


# What every 4xx and 5xx answer's body is, for the OpenAPI documents.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "description": "URI reference naming the kind of problem"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "for input errors: each field that broke a rule",
            "items": {
                "type": "object",
                "required": ["field", "rule", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "rule": {"type": "string"},
                    "message": {"type": "string"},
                    "record": {"type": ["integer", "string"]},
                },
            },
        },
    },
}


def _document_problems(app: FastAPI) -> None:
    """Declare every error answer in the OpenAPI document as what the handlers send: FastAPI
    would document 422 as its own `HTTPValidationError`, which no Homeroom route returns."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Problem"] = PROBLEM_SCHEMA
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if status[:1] in ("4", "5"):
                        response["content"] = problem
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error the app can produce as application/problem+json, and document it so.

    Call from the app factory, before the app starts.
    """
    _document_problems(app)
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    # Fallback for errors raised by middleware added after this call (outside ours).
    app.add_exception_handler(Exception, _on_unhandled)
    app.add_middleware(_UnhandledErrorMiddleware)
