"""CPU per HTTP request of the kernel's HTTP layer, against the same route on a bare FastAPI app
in the same run.

    .venv/bin/python bench/http_kernel.py [--requests 20000] [--rounds 5]

Both apps answer ``GET /v1/things/{thing_id}`` with a small JSON object. ``kernel`` is the app
`homeroom.service.create_app` builds for a service (the problem handlers, the security headers,
the NUL check, the HTTP metrics, the health routes; no database: the route needs none), ``bare``
a plain ``FastAPI()`` with the same route. Each request is handed to the ASGI app by a bare
ASGI call (scope and messages built by hand, no network, no HTTP client), so the figure is the
app's own CPU: ``process_time`` per request, best of ``--rounds`` rounds, the two apps
alternating round by round. ``kernel_extra_us`` is what the kernel adds to a request, and
``kernel_vs_bare`` the ratio. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastapi import APIRouter, FastAPI  # noqa: E402
from pydantic_settings import SettingsConfigDict  # noqa: E402
from starlette.types import ASGIApp, Message  # noqa: E402

from homeroom.config import ServiceSettings  # noqa: E402
from homeroom.service import ServiceSpec, create_app  # noqa: E402


class _Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEROOM_HTTPBENCH_", extra="ignore")
    service_name: str = "httpbench"


async def thing(thing_id: str) -> dict[str, str]:
    return {"thing_id": thing_id, "status": "ok"}


def _router() -> APIRouter:
    router = APIRouter()
    router.add_api_route("/v1/things/{thing_id}", thing, methods=["GET"])
    return router


def kernel_app() -> FastAPI:
    spec = ServiceSpec(name="httpbench", settings=_Settings, routers=(_router(),))
    return create_app(spec, _Settings(), lifespan=False)


def bare_app() -> FastAPI:
    app = FastAPI()
    app.include_router(_router())
    return app


async def request(app: ASGIApp, path: str) -> int:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"accept", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    status = 0

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def cpu_per_request(app: ASGIApp, requests: int) -> float:
    paths = [f"/v1/things/t-{i % 100}" for i in range(requests)]
    started = time.process_time()
    for path in paths:
        status = await request(app, path)
        assert status == 200, status
    return (time.process_time() - started) * 1e6 / requests


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    apps = {"bare": bare_app(), "kernel": kernel_app()}
    for app in apps.values():  # warm: routes compiled, metric series made
        await cpu_per_request(app, 500)
    best = dict.fromkeys(apps, float("inf"))
    for _ in range(args.rounds):
        for name, app in apps.items():
            best[name] = min(best[name], await cpu_per_request(app, args.requests))
    print(
        json.dumps(
            {
                "benchmark": "http_kernel",
                "requests_per_round": args.requests,
                "rounds": args.rounds,
                "bare_us_per_request": round(best["bare"], 1),
                "kernel_us_per_request": round(best["kernel"], 1),
                "kernel_extra_us": round(best["kernel"] - best["bare"], 1),
                "kernel_vs_bare": round(best["kernel"] / best["bare"], 3),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
