"""A real Prometheus (Debian's `prometheus` package) against the running stack: the shipped
config's jobs and alert rules (tests/stacks.py points each job at the stack's port), scraping
every second from before the demo's first step (the `demo_stack` fixture). Every service is
scraped, every alert rule evaluates without error, and every Grafana panel's query answers,
and answers with data, after a scenario that should fill it."""

from __future__ import annotations

import math
import re
import time
from typing import Any

import pytest

from tests.ops.files import alert_rules, all_metric_exprs
from tests.stacks import DemoStack, LivePrometheus

pytestmark = pytest.mark.whole_stack


# Grafana's range variables become a window reaching back to before the first demo step
# (Prometheus has scraped since then): a fixed 10 minutes once missed the demo's upload when
# the portal's tests on the same stack ran longer than that in between.
def _window(prometheus: LivePrometheus) -> str:
    return f"{int(time.monotonic() - prometheus.started_at) + 60}s"


# Panels the demo leaves empty because it does nothing wrong: no event is dead-lettered, no
# request fails with a 5xx, no upload draws a warning. Each must still answer without error.
MAY_STAY_EMPTY = {
    "homeroom-ingest.json: Warnings by rule",
    "homeroom-overview.json: Dead letters (last hour)",
    "homeroom-overview.json: Dead-lettered events by reason",
    "homeroom-overview.json: Error rate (5xx share)",
}


def _grafana(expr: str, window: str) -> str:
    return re.sub(r"\$__(rate_interval|range|interval)\b", window, expr)


def _filled(answer: dict[str, Any]) -> bool:
    """At least one series with a number (a quantile of no observations is NaN: empty to a reader)."""
    result = answer["data"]["result"]
    values = [float(r["value"][1]) for r in result] if answer["data"]["resultType"] == "vector" else []
    return any(not math.isnan(v) for v in values) or answer["data"]["resultType"] == "scalar"


def _wait(what: str, probe: Any, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := probe()):
        assert time.monotonic() < deadline, f"{what} after {timeout_s:.0f}s"
        time.sleep(0.5)
    return found


@pytest.fixture
def prometheus(demo_stack: DemoStack) -> LivePrometheus:
    if demo_stack.prometheus is None:
        pytest.skip("Debian's prometheus is not installed (./run test installs it)")
    assert demo_stack.failures == 0, "\n".join(demo_stack.lines)
    return demo_stack.prometheus


def test_every_service_is_scraped_and_every_alert_rule_evaluates(prometheus: LivePrometheus) -> None:
    def targets_up() -> list[dict[str, Any]] | None:
        active = prometheus.targets()
        up = [t for t in active if t["health"] == "up"]
        return active if len(up) == len(prometheus.jobs) else None

    try:
        active = _wait("every job's target up", targets_up)
    except AssertionError:
        active = prometheus.targets()
        raise AssertionError([(t["labels"]["job"], t["health"], t["lastError"]) for t in active]) from None
    assert {t["labels"]["job"] for t in active} == set(prometheus.jobs)

    def evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r["lastEvaluation"] > "2000" for r in rules) else None

    rules = _wait("every rule evaluated", evaluated)
    assert {r["name"] for r in rules} == {r["alert"] for r in alert_rules()}
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    # The labelled counters alerts take the increase of are there at 0 before any such event.
    for series, count in [
        ("homeroom_transfer_escalations_total", 3),
        ("homeroom_transfer_deadline_breaches_total", 2),
        ('homeroom_audit_witness_failures_total{reason="truncated"}', 1),
        ('homeroom_records_reconciliations_total{outcome="ok"}', 1),
    ]:
        answer = prometheus.query(series)
        assert answer["status"] == "success" and len(answer["data"]["result"]) == count, (series, answer)


def test_every_dashboard_panel_query_answers_with_data_after_the_demo(prometheus: LivePrometheus) -> None:
    panels = [(where, expr) for where, expr in all_metric_exprs() if not where.startswith("alert ")]
    assert len(panels) > 40
    failed, empty = [], []
    for where, expr in panels:
        answer = prometheus.query(_grafana(expr, _window(prometheus)))
        if answer["status"] != "success":
            failed.append(f"{where}: {answer.get('error')}")
        elif not _filled(answer) and where not in MAY_STAY_EMPTY:
            empty.append(f"{where}: {expr}")
    assert failed == [], "\n".join(failed)
    # On failure, say how well each service was scraped over the window (an empty panel over a
    # service that was scraped throughout is a metric the scenario never moved).
    window = _window(prometheus)
    scrapes = {
        r["metric"]["job"]: r["value"][1]
        for r in prometheus.query(f"sum by (job) (count_over_time(up[{window}]))")["data"]["result"]
    }
    assert empty == [], f"panels empty after the demo (scrapes per job over {window}: {scrapes}):\n" + "\n".join(empty)
    # The alerts' expressions too, as queries (an error there would be a rule that never fires).
    errors = [
        (r["alert"], a.get("error")) for r in alert_rules() if (a := prometheus.query(r["expr"]))["status"] != "success"
    ]
    assert errors == []
