"""Every metric a dashboard panel or an alert rule names is one the code exports.

Two ways: the metric families registered once homeroom.telemetry and every
services.<name>.metrics module are imported; and the /metrics answer of each of the five
services started on the embedded PostgreSQL and broker, as `homeroom serve` runs them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import re
from collections.abc import AsyncIterator

import pytest
from prometheus_client import generate_latest

from homeroom.registry import SERVICES, load_spec
from tests.harness import ServiceEnv, service_under_test
from tests.ops.files import all_metric_exprs
from tests.ops.promql import (
    exported_series,
    label_problems,
    metric_names,
    registered_labels,
    series_from_exposition,
    unknown_metrics,
)


def _import_metric_modules() -> list[str]:
    importlib.import_module("homeroom.telemetry")
    imported = ["homeroom.telemetry"]
    for name in SERVICES:
        module = f"services.{name}.metrics"
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
            imported.append(module)
    return imported


def _report(missing: dict[str, set[str]]) -> str:
    names = sorted(set().union(*missing.values())) if missing else []
    where = {expr: place for place, expr in all_metric_exprs()}
    lines = [f"  {where.get(expr, '?')}: {sorted(n)}" for expr, n in missing.items()]
    return f"not exported: {names}\n" + "\n".join(lines)


def test_every_dashboard_and_alert_metric_is_registered() -> None:
    _import_metric_modules()
    exprs = [expr for _, expr in all_metric_exprs()]
    assert len(exprs) > 40
    missing = unknown_metrics(exprs, exported_series())
    assert not missing, _report(missing)


def test_the_check_notices_a_metric_nobody_exports() -> None:
    _import_metric_modules()
    exported = exported_series()
    assert unknown_metrics(["sum(rate(homeroom_no_such_metric_total[5m]))"], exported)
    # a counter is exported with its _total suffix, a histogram as _bucket/_sum/_count
    assert unknown_metrics(["rate(homeroom_events_consumed[5m])"], exported)
    assert unknown_metrics(["homeroom_handler_seconds"], exported)
    assert not unknown_metrics(["rate(homeroom_handler_seconds_count[5m])"], exported)


def _needed() -> set[str]:
    return set().union(*(metric_names(expr) for _, expr in all_metric_exprs())) - {"up"}


@contextlib.asynccontextmanager
async def _running(name: str, env: ServiceEnv) -> AsyncIterator[str]:
    spec = load_spec(name)
    async with service_under_test(spec, env, start_consumers=False) as svc:
        response = await svc.client.get("/metrics")
        assert response.status_code == 200
        yield response.text


@pytest.mark.parametrize("name", list(SERVICES))
async def test_running_service_serves_the_metrics_dashboards_and_alerts_use(name: str, service_env: ServiceEnv) -> None:
    """Its own homeroom_<name>_* metrics and every kernel metric, on the real /metrics of the started service."""
    needed = _needed()
    service_prefixes = tuple(f"homeroom_{other}_" for other in SERVICES)
    wanted = {n for n in needed if n.startswith(f"homeroom_{name}_") or not n.startswith(service_prefixes)}
    # The registry is the process's: a test that ran earlier in this worker may have counted
    # already, so "at 0" means "at what this process had counted before the service started".
    counted_before = _counter_samples(generate_latest().decode())
    async with _running(name, service_env) as text:
        series = series_from_exposition(text)
    assert wanted <= series, f"{name} /metrics lacks {sorted(wanted - series)}"
    # Every counter an alert or panel takes the increase of is exported at 0 before any event
    # (homeroom.telemetry.start_at_zero), so the first event is an increase and alerts
    # (tests/ops/promtool/first-occurrence.test.yml).
    spec = load_spec(name)
    kernel = {"homeroom_outbox_relay_failures_total"} if spec.app_factory is None else set()
    if spec.consumers:
        kernel |= {"homeroom_events_consumed_total", "homeroom_handler_retries_total"}
    own = {n for n in _counters_alerted_on() if n.startswith(f"homeroom_{name}_")}
    at_start = {
        metric
        for (metric, labels), value in _counter_samples(text).items()
        if (metric in own or f'service="{name}"' in labels) and value == counted_before.get((metric, labels), 0.0)
    }
    missing = (own | kernel) - at_start
    assert not missing, f"{name}: not exported at 0 from the start: {sorted(missing)}"


def _counter_samples(exposition: str) -> dict[tuple[str, str], float]:
    """Each homeroom_*_total series of an exposition, by (metric, labels), with its value."""
    samples = re.findall(r"^(homeroom_\w+_total)(?:\{([^}]*)\})? (\S+)$", exposition, re.MULTILINE)
    return {(metric, labels): float(value) for metric, labels, value in samples}


def _counters_alerted_on() -> set[str]:
    """Counters whose increase() an alert or a panel uses, but for those whose labels come only
    with an event: dead letters (the rule broken; their alert catches a new series instead),
    HTTP requests (the status answered) and ingest's records by district (the uploader's)."""
    counters = {n for _, expr in all_metric_exprs() for n in metric_names(expr) if n.endswith("_total")}
    return counters - {
        "homeroom_events_dead_lettered_total",
        "homeroom_http_requests_total",
        "homeroom_ingest_records_total",
        "homeroom_ingest_rejections_total",
        "homeroom_ingest_warnings_total",
    }


@pytest.mark.parametrize("module", ["homeroom.telemetry"])
def test_kernel_metrics_carry_a_service_label(module: str) -> None:
    telemetry = importlib.import_module(module)
    from prometheus_client.metrics import MetricWrapperBase

    for attribute in vars(telemetry).values():
        if isinstance(attribute, MetricWrapperBase):
            assert "service" in attribute._labelnames, attribute._name


def test_labels_used_by_dashboards_and_alerts_exist_on_their_metrics() -> None:
    """Grouping by or matching on a label the metric lacks shows an empty panel, silently."""
    _import_metric_modules()
    labels = registered_labels()
    problems = {where: found for where, expr in all_metric_exprs() if (found := label_problems(expr, labels))}
    assert not problems, "\n".join(f"{where}: {found}" for where, found in problems.items())


def test_the_label_check_notices_a_wrong_label() -> None:
    _import_metric_modules()
    labels = registered_labels()
    assert label_problems("sum by (district) (homeroom_outbox_backlog)", labels)
    assert label_problems('homeroom_consumer_lag{tenant="x"}', labels)
    assert not label_problems('sum by (service, topic) (homeroom_consumer_lag{consumer="c"})', labels)
