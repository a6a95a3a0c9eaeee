"""Metrics, structured logs and health endpoints: the cross-cutting concerns, in one place.

The kernel's bus, outbox and HTTP layer record their metrics here, at the single spot
where every service consumes, produces and answers, so no handler has to remember to.
Every metric carries a `service` label so several services can share one process in
tests and the demo without their figures mixing.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable

from fastapi import APIRouter, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# --- bus -------------------------------------------------------------------------------
EVENTS_CONSUMED = Counter(
    "homeroom_events_consumed_total", "Events read from the bus", ["service", "consumer", "topic"]
)
EVENTS_APPLIED = Counter(
    "homeroom_events_applied_total", "Events whose handler committed", ["service", "consumer", "topic"]
)
EVENTS_DUPLICATE = Counter(
    "homeroom_events_duplicate_total", "Redelivered events skipped by id", ["service", "consumer", "topic"]
)
EVENTS_DEAD_LETTERED = Counter(
    "homeroom_events_dead_lettered_total", "Events sent to the dead-letter topic", ["service", "consumer", "reason"]
)
HANDLER_RETRIES = Counter(
    "homeroom_handler_retries_total", "Handler attempts that failed and were retried", ["service", "consumer"]
)
HANDLER_SECONDS = Histogram(
    "homeroom_handler_seconds",
    "Time to apply one event including its database transaction",
    ["service", "consumer"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_LAG = Gauge(
    "homeroom_consumer_lag",
    "Messages behind the partition high-water mark",
    ["service", "consumer", "topic", "partition"],
)
CONSUMER_ASSIGNED = Gauge(
    "homeroom_consumer_assigned_partitions",
    "Partitions this consumer instance holds in its group (instances of one service share them)",
    ["service", "consumer"],
)
EVENTS_PUBLISHED = Counter("homeroom_events_published_total", "Events delivered to the bus", ["service", "topic"])

# --- outbox ----------------------------------------------------------------------------
OUTBOX_BACKLOG = Gauge("homeroom_outbox_backlog", "Events written but not yet relayed to the bus", ["service"])
OUTBOX_OLDEST_AGE = Gauge("homeroom_outbox_oldest_age_seconds", "Age of the oldest unrelayed event", ["service"])
OUTBOX_RELAY_FAILURES = Counter("homeroom_outbox_relay_failures_total", "Relay attempts that failed", ["service"])

# --- http ------------------------------------------------------------------------------
HTTP_REQUESTS = Counter("homeroom_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
HTTP_SECONDS = Histogram(
    "homeroom_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SERVICE_UP = Gauge("homeroom_service_up", "1 while the service is serving", ["service"])
SERVICE_READY = Gauge("homeroom_service_ready", "1 while the service's dependencies answer", ["service"])


def start_at_zero(metric: Counter | Histogram, *series: str | tuple[str, ...]) -> None:
    """Export these series of a labelled counter or histogram at 0 from the service's start (label
    values in the metric's order; a plain string for a one-label metric). A labelled series
    otherwise first appears already at 1, Prometheus's increase() over it stays 0, its first event
    never alerts (deploy/prometheus/alerts.yml; proved by tests/ops/promtool/first-occurrence.test.yml)
    and a latency panel over it shows no quantile (NaN) until the second observation."""
    for values in series:
        metric.labels(*((values,) if isinstance(values, str) else values))


def start_bus_series_at_zero(service: str, consumers: Iterable[tuple[str, Iterable[str]]]) -> None:
    """The kernel's counters of a service, for its (consumer, topics): known before any event.
    Dead letters are not among them: their reason is the rule an event broke, known only then."""
    start_at_zero(OUTBOX_RELAY_FAILURES, service)
    for consumer, topics in consumers:
        start_at_zero(HANDLER_RETRIES, (service, consumer))
        start_at_zero(HANDLER_SECONDS, (service, consumer))
        for topic in topics:
            for counter in (EVENTS_CONSUMED, EVENTS_APPLIED, EVENTS_DUPLICATE):
                start_at_zero(counter, (service, consumer, topic))


def configure_logging(service: str, level: str = "INFO") -> None:
    """JSON lines on stderr, one object per event, with the service name on each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


ReadinessCheck = Callable[[], Awaitable[None]]


def health_router(service: str, checks: dict[str, ReadinessCheck], instance_id: str = "") -> APIRouter:
    """/healthz says the process is alive; /readyz that every dependency answers now, and which
    process answers (`instance`, when `./run stack` gave it one: ServiceSettings.instance_id)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get("/readyz", summary="Readiness: database and bus reachable")
    async def readyz(response: Response) -> dict[str, object]:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await check()
                results[name] = "ok"
            except Exception as exc:  # a readiness probe reports, it does not raise
                results[name] = f"failing: {type(exc).__name__}"
        ready = all(v == "ok" for v in results.values())
        SERVICE_READY.labels(service).set(1 if ready else 0)
        response.status_code = 200 if ready else 503
        answer: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": results}
        if instance_id:
            answer["instance"] = instance_id
        return answer

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


class HttpMetrics:
    """Plain ASGI middleware (no per-request task or body streaming, unlike
    `@app.middleware("http")`): counts and times every request by its route template, never
    the raw path, which may hold ids.

    The labelled series are looked up once per (method, route, status) and kept: prometheus_client's
    `labels()` validates and joins the label values and takes a lock on every call."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._seconds: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")  # set by the router on the shared scope
            method = scope["method"]
            counted = self._requests.get((method, template, status))
            if counted is None:
                counted = self._requests[method, template, status] = HTTP_REQUESTS.labels(
                    self.service, method, template, str(status)
                )
            timed = self._seconds.get((method, template))
            if timed is None:
                timed = self._seconds[method, template] = HTTP_SECONDS.labels(self.service, method, template)
            counted.inc()
            timed.observe(time.perf_counter() - started)


def instrument_http(app: FastAPI, service: str) -> None:
    """Count and time every request by its route template (never the raw path, which may hold ids)."""
    app.add_middleware(HttpMetrics, service=service)
