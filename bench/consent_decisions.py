"""Consent decisions per second and latency, against one indexed PostgreSQL lookup in the same run.

    .venv/bin/python bench/consent_decisions.py [--agreements 1000] [--students 1000000] [--requests 3000]
                                               [--concurrency 8] [--batch-requests 20000]

Runs the real consent service in process (tests/harness.py) on embedded PostgreSQL and Tansu,
with ``--agreements`` active agreements (20 districts) and ``--students`` students' consent records
(a directory-opt-out row for each, one in ten opted out, and a written consent for one in five),
loaded with COPY. Then measures:

1. ``single``: ``POST /v1/decisions`` over the ASGI client, ``--concurrency`` callers at a time;
   latency per call (p50, p99) and decisions per second; ``service_p50_ms``/``service_p99_ms`` are
   the same calls timed inside the ASGI app; ``cpu_us_per_decision`` is this process's CPU time
   (service and client) per decision, which a loaded machine moves less than it moves latency,
   and ``pg_cpu_us_per_decision`` PostgreSQL's. The httpx client runs in this process, in the
   service's own event loop: at concurrency 8 every answer also waits for the other callers'
   client work, so the service's in-app time is not its own either;
2. ``service_alone``: the same requests handed to the ASGI app by a bare ASGI call (scope, body and
   the answer's messages built by hand; a few µs): what a caller in another process sees of
   this service, minus the network. Its ``cpu_us_per_decision`` is the service's CPU per decision,
   and ``client_cpu_us_per_decision`` (single's less this) what httpx added;
3. ``batch``: ``POST /v1/decisions/batch`` with 1000 requests per call, ``--batch-requests`` in all,
   drawn afresh (other students than the single calls asked about, in the same mix of
   agreements and districts); decisions per second and CPU per decision as above;
   ``batch_service_alone`` other requests again by a bare ASGI call (bodies encoded beforehand);
4. ``raw_lookup``: the same number of ``SELECT opted_out FROM directory_opt_outs WHERE student_key = $1
   AND district_id = $2`` (primary-key lookups) on one pooled connection, ``--concurrency`` at a time.

Each decision takes the agreement's versions, the end record, the opt-out and the consents from the
service's facts in memory and evaluates the rules, or reuses the answer it gave at this version of
the facts to a request alike but for the student (whose own facts are alike), and waits for its
decision log row (written by group commit). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from homeroom_dev.infra.broker import EmbeddedBroker  # noqa: E402
from homeroom_dev.infra.postgres import EmbeddedPostgres  # noqa: E402
from services.consent import store  # noqa: E402
from services.consent.agreements import (  # noqa: E402
    Agreement,
    AgreementCategory,
    AgreementStatus,
    AgreementTerms,
)
from services.consent.service import SERVICE  # noqa: E402
from tests.harness import ServiceEnv, new_database, service_under_test  # noqa: E402

DISTRICTS = [f"d-{i}" for i in range(20)]
ELEMENTS = ("student.first_name", "student.last_name", "enrollment.grade_level", "attendance.daily")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def timed(n: int, concurrency: int, call: Callable[[int], Awaitable[None]]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            t = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


class TimedApp:
    """Times each HTTP request inside the app: the service's own time, without the client."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seconds: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        t = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.seconds.append(time.perf_counter() - t)


class BareCaller:
    """POSTs a pre-encoded JSON body to an ASGI app with nothing between them: no client
    library, no copies; the answer's body is joined and parsed once."""

    def __init__(self, app: Any, path: str, headers: dict[str, str]) -> None:
        self.app = app
        self.path = path
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def post(self, body: bytes) -> dict[str, Any]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                *self.headers,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("consent.test", 80),
        }
        sent = False
        answered = asyncio.Event()
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:  # as httpx does: the caller goes away once the answer is complete
                await answered.wait()
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    answered.set()

        await self.app(scope, receive, send)
        if status != 200:
            raise RuntimeError(f"{self.path} answered {status}: {b''.join(chunks)[:300]!r}")
        answer: dict[str, Any] = json.loads(b"".join(chunks))
        return answer


class GcPauses:
    """The seconds each full (oldest-generation) garbage collection took: one pass over every
    tracked object in the process, during which no request moves."""

    def __init__(self) -> None:
        self.full: list[float] = []
        self._started = 0.0
        gc.callbacks.append(self._observe)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.full.append(time.perf_counter() - self._started)


def summary(n: int, elapsed: float, latencies: list[float]) -> dict[str, float]:
    return {
        "n": n,
        "per_s": round(n / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
    }


async def load(svc_pool: Any, agreements: int, students: int) -> list[str]:
    now = datetime.now(UTC)
    ids = []
    async with svc_pool.acquire() as conn, conn.transaction():
        for i in range(agreements):
            agreement = Agreement(
                id=f"bench-{i}",
                version=1,
                organization=f"Vendor {i}",
                category=AgreementCategory.VENDOR,
                terms=AgreementTerms(
                    elements=ELEMENTS[: 2 + i % 3],
                    purposes=("instruction",),
                    districts=(DISTRICTS[i % len(DISTRICTS)],),
                    start_date=date(2020, 1, 1),
                    end_date=date(2099, 1, 1),
                ),
                status=AgreementStatus.ACTIVE,
                source="bench",
                recorded_by="bench",
                recorded_at=now,
            )
            await store.insert_agreement(conn, agreement)
            ids.append(agreement.id)
        await conn.copy_records_to_table(
            "directory_opt_outs",
            records=(
                (f"stu_{n}", DISTRICTS[n % len(DISTRICTS)], n % 10 == 0, "bench", "portal", now)
                for n in range(students)
            ),
            columns=["student_key", "district_id", "opted_out", "recorded_by", "method", "recorded_at"],
        )
        await conn.copy_records_to_table(
            "written_consents",
            records=(
                (
                    uuid.uuid4(),
                    f"stu_{n}",
                    DISTRICTS[n % len(DISTRICTS)],
                    f"bench-{n % agreements}",
                    ["attendance.daily"],
                    None,
                    None,
                    "bench",
                    "portal",
                    now,
                )
                for n in range(0, students, 5)
            ),
            columns=[
                "consent_id",
                "student_key",
                "district_id",
                "recipient",
                "elements",
                "purpose",
                "valid_until",
                "recorded_by",
                "method",
                "given_at",
            ],
        )
        await conn.execute("ANALYZE")
    return ids


def request(rng: random.Random, agreements: int, students: int) -> dict[str, Any]:
    n = rng.randrange(students)
    # Nine in ten asks come from an agreement covering the student's district.
    a = rng.randrange(agreements)
    if rng.random() < 0.9:
        a = a - a % len(DISTRICTS) + n % len(DISTRICTS)
        a = a if a < agreements else n % len(DISTRICTS)
    return {
        "action": "read",
        "requester": {"role": "vendor", "subject": "app", "agreement_id": f"bench-{a}"},
        "student_key": f"stu_{n}",
        "district_id": DISTRICTS[n % len(DISTRICTS)],
        "elements": list(ELEMENTS),
        "purpose": "instruction",
    }


async def bench(args: argparse.Namespace, pg: EmbeddedPostgres, broker: EmbeddedBroker, work: Path) -> dict[str, Any]:
    keys_url = await new_database(pg, "keys")
    env = ServiceEnv(pg, broker.bootstrap_servers, work / "secrets", keys_url)
    async with service_under_test(SERVICE, env, db_pool_size=max(4, args.concurrency + 2)) as svc:
        # As `homeroom serve` does once the app is built: what start-up made (modules, routes,
        # validators) leaves the collector's full passes. The facts, read later, stay in them.
        gc.collect()
        gc.freeze()
        t = time.perf_counter()
        await load(svc.pool, args.agreements, args.students)
        load_s = time.perf_counter() - t
        headers = env.auth("service", subject="bench")
        rng = random.Random(7)
        requests = [request(rng, args.agreements, args.students) for _ in range(args.requests)]

        allowed = 0
        transport = svc.transport
        assert isinstance(transport, httpx.ASGITransport)  # the in-process app, which TimedApp wraps
        timed_app = TimedApp(transport.app)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=timed_app), base_url="http://consent.test")

        async def one(i: int) -> None:
            nonlocal allowed
            r = await client.post("/v1/decisions", json=requests[i], headers=headers)
            r.raise_for_status()
            allowed += bool(r.json()["allow"])

        assert pg._process is not None
        postgres = psutil.Process(pg._process.pid)

        def postgres_cpu() -> float:
            """The server and its backends (user + system), the ones that exited included."""
            t = postgres.cpu_times()
            total: float = t.user + t.system + t.children_user + t.children_system
            for child in postgres.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # a backend that ends meanwhile
                    c = child.cpu_times()
                    total += c.user + c.system
            return total

        pauses = GcPauses()

        def cpu_now() -> tuple[float, float, int]:
            return time.process_time(), postgres_cpu(), len(pauses.full)

        def cpu_per(since: tuple[float, float, int], n: int) -> dict[str, float]:
            now = cpu_now()
            full = pauses.full[since[2] : now[2]]
            return {
                "cpu_us_per_decision": round((now[0] - since[0]) / n * 1e6, 1),
                "pg_cpu_us_per_decision": round((now[1] - since[1]) / n * 1e6, 1),
                "gc_full_passes": len(full),
                "gc_full_ms": round(sum(full) * 1000, 1),
            }

        await timed(min(200, args.requests), args.concurrency, one)  # warm up
        allowed = 0
        timed_app.seconds.clear()
        cpu = cpu_now()
        elapsed, latencies = await timed(args.requests, args.concurrency, one)
        single: dict[str, Any] = summary(args.requests, elapsed, latencies) | cpu_per(cpu, args.requests)
        single["service_p50_ms"] = round(statistics.median(timed_app.seconds) * 1000, 3)
        single["service_p99_ms"] = round(percentile(timed_app.seconds, 99) * 1000, 3)
        await client.aclose()

        bare = BareCaller(transport.app, "/v1/decisions", headers)
        bodies = [json.dumps(r).encode() for r in requests]

        async def alone(i: int) -> None:
            await bare.post(bodies[i])

        await timed(min(200, args.requests), args.concurrency, alone)  # warm up
        cpu = cpu_now()
        elapsed_a, latencies_a = await timed(args.requests, args.concurrency, alone)
        service_alone: dict[str, Any] = summary(args.requests, elapsed_a, latencies_a) | cpu_per(cpu, args.requests)
        service_alone["client_cpu_us_per_decision"] = round(
            single["cpu_us_per_decision"] - service_alone["cpu_us_per_decision"], 1
        )

        def batches() -> list[list[dict[str, Any]]]:
            asked = [request(rng, args.agreements, args.students) for _ in range(args.batch_requests)]
            return [asked[i : i + 1000] for i in range(0, len(asked), 1000)]

        chunks = batches()

        async def batch(i: int) -> None:
            r = await svc.client.post("/v1/decisions/batch", json={"requests": chunks[i]}, headers=headers)
            r.raise_for_status()

        bare_batch = BareCaller(transport.app, "/v1/decisions/batch", headers)
        batch_bodies = [json.dumps({"requests": chunk}).encode() for chunk in batches()]

        async def batch_alone(i: int) -> None:
            await bare_batch.post(batch_bodies[i])

        async def batch_figures(call: Callable[[int], Awaitable[None]]) -> dict[str, Any]:
            cpu = cpu_now()
            elapsed_b, latencies_b = await timed(len(chunks), 1, call)
            return {
                "n": args.batch_requests,
                "per_s": round(args.batch_requests / elapsed_b, 1),
                "p99_ms_per_call_of_1000": round(percentile(latencies_b, 99) * 1000, 1),
            } | cpu_per(cpu, args.batch_requests)

        batched = await batch_figures(batch)
        batch_service_alone = await batch_figures(batch_alone)

        async def lookup(i: int) -> None:
            req = requests[i]
            async with svc.pool.acquire() as conn:
                await conn.fetchval(
                    "SELECT opted_out FROM directory_opt_outs WHERE student_key = $1 AND district_id = $2",
                    req["student_key"],
                    req["district_id"],
                )

        elapsed_l, latencies_l = await timed(args.requests, args.concurrency, lookup)
        raw = summary(args.requests, elapsed_l, latencies_l)
        rows = await svc.pool.fetchval("SELECT count(*) FROM decisions")
        expected = 2 * (args.requests + min(200, args.requests)) + 2 * args.batch_requests
    return {
        "agreements": args.agreements,
        "students": args.students,
        "load_s": round(load_s, 1),
        "single": single,
        "service_alone": service_alone,
        "batch": batched,
        "batch_service_alone": batch_service_alone,
        "raw_lookup": raw,
        "single_vs_raw_per_s": round(single["per_s"] / raw["per_s"], 3),
        "batch_vs_raw_per_s": round(batched["per_s"] / raw["per_s"], 3),
        "allowed_share": round(allowed / args.requests, 3),
        "decisions_logged": rows,
        "decisions_expected": expected,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agreements", type=int, default=1000)
    parser.add_argument("--students", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-requests", type=int, default=20_000, help="requests in each batch phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pg = EmbeddedPostgres().start()
        try:
            with EmbeddedBroker() as broker:
                result = asyncio.run(bench(args, pg, broker, work))
        finally:
            pg.cleanup()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
