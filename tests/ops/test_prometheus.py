"""deploy/prometheus: every service scraped on its port; alert rules complete and well-formed."""

from __future__ import annotations

import re

import pytest

from homeroom.registry import SERVICES
from tests.ops.files import ALERTS, PROMETHEUS, alert_rules, compose, load_yaml
from tests.ops.promql import PromQLError, metric_names

DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
SEVERITIES = {"page", "ticket"}


def test_every_service_is_scraped_on_its_port() -> None:
    config = load_yaml(PROMETHEUS)
    scraped: dict[str, set[tuple[str, int]]] = {}
    for job in config["scrape_configs"]:
        targets: set[tuple[str, int]] = set()
        for sd in job.get("dns_sd_configs", []):
            targets |= {(name, int(sd["port"])) for name in sd["names"]}
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.add((host, int(port)))
        scraped[job["job_name"]] = targets
        assert job.get("metrics_path", "/metrics") == "/metrics"
    for name, (_, port) in SERVICES.items():
        assert scraped.get(f"homeroom-{name}") == {(name, port)}, f"job homeroom-{name} must scrape {name}:{port}"


def test_rule_file_is_where_compose_mounts_it() -> None:
    config = load_yaml(PROMETHEUS)
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in mounts
    assert "--config.file=/etc/prometheus/prometheus.yml" in compose()["services"]["prometheus"]["command"]
    assert config["rule_files"] == [ALERTS.name]  # beside the config file, wherever it is mounted


def test_alert_rules_parse_and_have_what_an_operator_needs() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names are unique"
    for rule in rules:
        where = rule.get("alert", "?")
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, where
        assert isinstance(rule["expr"], str) and metric_names(rule["expr"]), where
        assert DURATION.match(str(rule["for"])), f"{where}: for {rule['for']!r}"
        assert rule["labels"]["severity"] in SEVERITIES, where
        summary = rule["annotations"]["summary"]
        assert summary.strip(), where
        for text in rule["annotations"].values():
            assert text.count("{{") == text.count("}}"), f"{where}: unbalanced template in {text!r}"


@pytest.mark.parametrize(
    ("concern", "metric"),
    [
        ("consumer lag above a threshold", "homeroom_consumer_lag"),
        ("dead letters rising", "homeroom_events_dead_lettered_total"),
        ("outbox backlog growing", "homeroom_outbox_backlog"),
        ("transfer deadline breaches", "homeroom_transfer_deadline_breaches_total"),
        ("audit tree head not signed recently", "homeroom_audit_seconds_since_last_signed_head"),
        ("audit verification failure", "homeroom_audit_verification_failures_total"),
        ("a service down", "up"),
    ],
)
def test_each_required_concern_has_an_alert(concern: str, metric: str) -> None:
    assert any(metric in metric_names(rule["expr"]) for rule in alert_rules()), f"no alert for {concern}"


@pytest.mark.parametrize(
    "expr",
    [
        "rate(homeroom_events_consumed_total[5m]",  # unclosed
        "rate(homeroom_events_consumed_total[5x])",  # bad duration
        "rat(homeroom_events_consumed_total[5m])",  # unknown function
        "sum by (service (homeroom_outbox_backlog)",  # unbalanced
        'homeroom_outbox_backlog{service="a"} > }',
    ],
)
def test_promql_check_rejects_broken_expressions(expr: str) -> None:
    with pytest.raises(PromQLError):
        metric_names(expr)


def test_promql_names_ignore_labels_functions_and_grouping() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (service, le) (rate(homeroom_http_request_seconds_bucket{route="/v1/x"}'
        "[$__rate_interval]))) > on (service) group_left homeroom_service_up offset 5m"
    )
    assert metric_names(expr) == {"homeroom_http_request_seconds_bucket", "homeroom_service_up"}


def test_every_alert_is_explained_in_the_operations_guide() -> None:
    guide = (ALERTS.parents[2] / "docs" / "operations.md").read_text()
    undocumented = [rule["alert"] for rule in alert_rules() if f"`{rule['alert']}`" not in guide]
    assert undocumented == [], "add these to the alert table in docs/operations.md"
