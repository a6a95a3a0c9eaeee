"""A FastAPI route for a hot service-to-service POST whose usual call skips FastAPI's
per-request machinery (issue 19): `LeanServiceRoute`.

FastAPI solves an endpoint's dependency graph and validates its body (JSON parsed to Python,
then validated) on every request: at consent's decision point that was about a quarter of a
request's CPU, more than the decision itself. A route of this class answers the call that is
nearly every call (a service whose bearer token was verified before and has not expired, a
body sent as `application/json` that the model accepts) by validating the raw body once
(`model_validate_json`), admitting the caller with the endpoint's own role dependency and
calling the endpoint. Every other call (no token or one not seen yet, another role, another
content type, a body the model refuses, a role the endpoint refuses) goes FastAPI's usual
way, which therefore gives every error exactly as before, and remembers the token for the
next call. The endpoint is declared as usual, so the OpenAPI document does not change.

The endpoint takes exactly `body` (a pydantic model), `principal` (`Annotated[Principal,
Depends(require_roles(...))]`) and `runtime` (`Depends(homeroom.service.get_runtime)`) and
returns a `Response`; the route refuses any other endpoint when it is declared.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, get_args, get_type_hints

from fastapi import Request, Response
from fastapi.params import Depends
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from homeroom.auth import Principal, Role, remembered_principal
from homeroom.problems import Problem
from homeroom.service import get_runtime

_PARAMETERS = ["body", "principal", "runtime"]


def _dependency(hint: object, name: str) -> Callable[..., Any]:
    found = [a.dependency for a in get_args(hint)[1:] if isinstance(a, Depends)]
    if len(found) != 1 or found[0] is None:
        raise TypeError(f"LeanServiceRoute: `{name}` must be Annotated[..., Depends(...)]")
    return found[0]


class LeanServiceRoute(APIRoute):
    """See the module's docstring. Use as an `APIRouter`'s `route_class`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        usual = super().get_route_handler()
        endpoint = self.endpoint
        if list(inspect.signature(endpoint).parameters) != _PARAMETERS:
            raise TypeError(f"LeanServiceRoute: {endpoint.__name__} must take exactly {', '.join(_PARAMETERS)}")
        hints = get_type_hints(endpoint, include_extras=True)
        model = hints["body"]
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or hints.get("return") is not Response:
            raise TypeError(f"LeanServiceRoute: {endpoint.__name__} takes a pydantic body and returns a Response")
        if _dependency(hints["runtime"], "runtime") is not get_runtime:
            raise TypeError("LeanServiceRoute: `runtime` must depend on homeroom.service.get_runtime")
        admit: Callable[[Principal], Awaitable[Principal]] = _dependency(hints["principal"], "principal")

        async def handler(request: Request) -> Response:
            principal = remembered_principal(request)
            if (
                principal is not None
                and principal.role is Role.SERVICE  # no rate limit applies to services (current_principal)
                and request.headers.get("content-type") == "application/json"
            ):
                try:
                    body = model.model_validate_json(await request.body())
                    principal = await admit(principal)
                except (ValidationError, Problem):
                    pass  # the usual way answers, with the error it always gave
                else:
                    request.state.principal = principal  # as current_principal does, for the access log
                    response: Response = await endpoint(
                        body=body, principal=principal, runtime=request.app.state.runtime
                    )
                    return response
            return await usual(request)

        return handler
