"""deploy/grafana: provisioning, and dashboards that are current, consistent and cover what operators watch."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ops import dashboards as generator
from tests.ops.files import GRAFANA, compose, dashboards, load_yaml, panel_exprs
from tests.ops.promql import metric_names


def _datasource() -> dict[str, Any]:
    (source,) = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    return dict(source)


def test_datasource_points_at_the_compose_prometheus() -> None:
    source = _datasource()
    assert source["type"] == "prometheus"
    assert source["uid"] == generator.DATASOURCE["uid"]
    assert source["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in compose()["services"]["prometheus"]["ports"]


def test_dashboard_provider_reads_the_mounted_directory() -> None:
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "homeroom.yml")["providers"]
    grafana = compose()["services"]["grafana"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (GRAFANA / "dashboards" / home.rsplit("/", 1)[1]).exists()


def test_committed_dashboards_are_what_the_generator_renders() -> None:
    files = sorted(p.name for p in (GRAFANA / "dashboards").glob("*.json"))
    assert files == sorted(generator.DASHBOARDS)
    for name in files:
        committed = (GRAFANA / "dashboards" / name).read_text()
        assert committed == generator.render(name), f"{name} is stale: run .venv/bin/python -m tests.ops.dashboards"


def _leaf_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    leaves: list[dict[str, Any]] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            leaves.extend(panel.get("panels", []))
        else:
            leaves.append(panel)
    return leaves


@pytest.mark.parametrize("name", sorted(generator.DASHBOARDS))
def test_dashboard_is_consistent(name: str) -> None:
    board = dashboards()[name]
    assert board["uid"] and len(board["uid"]) <= 40
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
    for panel in _leaf_panels(board):
        assert panel["datasource"]["uid"] == _datasource()["uid"], panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert metric_names(target["expr"]), panel["title"]


def test_dashboard_uids_are_unique() -> None:
    uids = [board["uid"] for board in dashboards().values()]
    assert len(uids) == len(set(uids))


# What each dashboard must show (the list), as the metrics that show it.
REQUIRED = {
    "homeroom-overview.json": {
        "homeroom_events_consumed_total",  # events in per service
        "homeroom_events_published_total",  # events out per service
        "homeroom_consumer_lag",
        "homeroom_http_requests_total",  # error rates
    },
    "homeroom-ingest.json": {"homeroom_ingest_records_total", "homeroom_ingest_rejections_total"},
    "homeroom-transfers.json": {
        "homeroom_transfer_cases",
        "homeroom_transfer_enrollment_to_delivery_seconds_bucket",
    },
    "homeroom-privacy.json": {
        "homeroom_audit_disclosures_total",  # disclosures by recipient and legal basis
        "homeroom_consent_denials_total",  # denials by reason
        "homeroom_consent_agreements_ending_soon",
    },
    "homeroom-audit.json": {"homeroom_audit_tree_size", "homeroom_audit_seconds_since_last_signed_head"},
    "homeroom-reports.json": {
        "homeroom_consumer_lag",
        "homeroom_reports_event_to_tally_seconds_bucket",
        "homeroom_reports_seconds_behind",
    },
}


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_dashboard_shows_what_the_operators_need(name: str) -> None:
    used = set().union(*(metric_names(expr) for _, expr in panel_exprs(dashboards()[name])))
    assert REQUIRED[name] <= used, f"{name} lacks {sorted(REQUIRED[name] - used)}"


def test_ingest_rejections_are_broken_down_by_rule_and_district() -> None:
    exprs = [expr for _, expr in panel_exprs(dashboards()["homeroom-ingest.json"])]
    assert any("by (district, rule)" in e and "homeroom_ingest_rejections_total" in e for e in exprs)
