"""The Grafana dashboards in deploy/grafana/dashboards/, written from one description here.

Dashboard JSON is verbose and easy to break by hand; this module builds it from short
panel lists so every panel has the same data source, layout and units. The committed
JSON is what Grafana loads; tests/ops/test_grafana.py fails if it differs from what this
module renders. After editing, regenerate with:

    .venv/bin/python -m tests.ops.dashboards
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "homeroom-prometheus"}
RATE = "$__rate_interval"


def quantile(q: float, histogram: str, by: str = "") -> str:
    """PromQL for a quantile of a histogram, e.g. quantile(0.95, "homeroom_handler_seconds", "service")."""
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({histogram}_bucket[{RATE}])))"


def summed(function: str, metric: str, by: str, selector: str = "", window: str = RATE) -> str:
    """PromQL like sum by (district) (rate(metric{outcome="accepted"}[window]))."""
    return f"sum by ({by}) ({function}({metric}{selector}[{window}]))"


@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | bargauge | table
    width: int = 12
    height: int = 8
    description: str = ""
    thresholds: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class Row:
    title: str
    panels: list[Panel]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": color, "value": value} for value, color in panel.thresholds]
    body: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "targets": [
            {
                "datasource": DATASOURCE,
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                **({"instant": True, "format": "table"} if panel.kind == "table" else {}),
            }
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }
    if panel.kind == "timeseries":
        body["options"] = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]}}
    elif panel.kind in ("stat", "bargauge"):
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return body


def dashboard(uid: str, title: str, description: str, rows: list[Row], tags: list[str]) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row in rows:
        panels.append(
            {"id": next_id, "type": "row", "title": row.title, "collapsed": False, "gridPos": _row_pos(y), "panels": []}
        )
        next_id, y = next_id + 1, y + 1
        x, row_height = 0, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + row_height
                row_height = 0
            panels.append(_panel_json(panel, next_id, x, y))
            next_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["homeroom", *tags],
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "utc",
        "graphTooltip": 1,
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [{"title": "Homeroom", "type": "dashboards", "tags": ["homeroom"], "asDropdown": True}],
        "panels": panels,
    }


def _row_pos(y: int) -> dict[str, int]:
    return {"h": 1, "w": 24, "x": 0, "y": y}


def overview() -> dict[str, Any]:
    return dashboard(
        "homeroom-overview",
        "Homeroom: overview",
        "Health of the five services: availability, events in and out, lag, dead letters, outbox and errors.",
        [
            Row(
                "Availability",
                [
                    Panel(
                        "Services answering",
                        [('sum by (job) (up{job=~"homeroom-.*"})', "{{job}}")],
                        kind="stat",
                        width=8,
                        height=5,
                        thresholds=[],
                    ),
                    Panel(
                        "Ready (database and bus reachable)",
                        [("min by (service) (homeroom_service_ready)", "{{service}}")],
                        kind="stat",
                        width=8,
                        height=5,
                    ),
                    Panel(
                        "Dead letters (last hour)",
                        [("sum(increase(homeroom_events_dead_lettered_total[1h]))", "dead letters")],
                        kind="stat",
                        width=8,
                        height=5,
                        thresholds=[(1, "red")],
                    ),
                ],
            ),
            Row(
                "Events",
                [
                    Panel(
                        "Events in (consumed) per service",
                        [(f"sum by (service) (rate(homeroom_events_consumed_total[{RATE}]))", "{{service}}")],
                        unit="ops",
                    ),
                    Panel(
                        "Events out (published) per service",
                        [(f"sum by (service) (rate(homeroom_events_published_total[{RATE}]))", "{{service}}")],
                        unit="ops",
                    ),
                    Panel(
                        "Consumer lag",
                        [
                            (
                                "sum by (service, consumer, topic) (homeroom_consumer_lag)",
                                "{{service}}/{{consumer}} {{topic}}",
                            )
                        ],
                        thresholds=[(1000, "red")],
                    ),
                    Panel(
                        "Dead-lettered events by reason",
                        [
                            (
                                f"sum by (service, reason) (increase(homeroom_events_dead_lettered_total[{RATE}]))",
                                "{{service}} {{reason}}",
                            )
                        ],
                    ),
                    Panel(
                        "Handler time p95",
                        [
                            (
                                quantile(0.95, "homeroom_handler_seconds", "service"),
                                "{{service}}",
                            )
                        ],
                        unit="s",
                    ),
                    Panel(
                        "Handler retries",
                        [
                            (
                                f"sum by (service, consumer) (rate(homeroom_handler_retries_total[{RATE}]))",
                                "{{service}}/{{consumer}}",
                            )
                        ],
                        unit="ops",
                    ),
                ],
            ),
            Row(
                "Outbox",
                [
                    Panel("Outbox backlog", [("sum by (service) (homeroom_outbox_backlog)", "{{service}}")]),
                    Panel(
                        "Oldest unrelayed event",
                        [("max by (service) (homeroom_outbox_oldest_age_seconds)", "{{service}}")],
                        unit="s",
                        thresholds=[(300, "red")],
                    ),
                ],
            ),
            Row(
                "HTTP",
                [
                    Panel(
                        "Requests per service",
                        [(f"sum by (service) (rate(homeroom_http_requests_total[{RATE}]))", "{{service}}")],
                        unit="reqps",
                        width=8,
                    ),
                    Panel(
                        "Error rate (5xx share)",
                        [
                            (
                                f'sum by (service) (rate(homeroom_http_requests_total{{status=~"5.."}}[{RATE}]))'
                                f" / sum by (service) (rate(homeroom_http_requests_total[{RATE}]))",
                                "{{service}}",
                            )
                        ],
                        unit="percentunit",
                        width=8,
                        thresholds=[(0.05, "red")],
                    ),
                    Panel(
                        "Latency p95",
                        [
                            (
                                quantile(0.95, "homeroom_http_request_seconds", "service"),
                                "{{service}}",
                            )
                        ],
                        unit="s",
                        width=8,
                    ),
                ],
            ),
        ],
        ["overview"],
    )


def ingest() -> dict[str, Any]:
    return dashboard(
        "homeroom-ingest",
        "Homeroom: ingest",
        "What districts publish: records accepted and rejected, by rule and district, and submissions.",
        [
            Row(
                "Records",
                [
                    Panel(
                        "Accepted records by district",
                        [
                            (
                                summed("rate", "homeroom_ingest_records_total", "district", '{outcome="accepted"}'),
                                "{{district}}",
                            )
                        ],
                        unit="ops",
                    ),
                    Panel(
                        "Rejected records by district",
                        [
                            (
                                summed("rate", "homeroom_ingest_records_total", "district", '{outcome="rejected"}'),
                                "{{district}}",
                            )
                        ],
                        unit="ops",
                    ),
                    Panel(
                        "Rejections by rule",
                        [(f"sum by (rule) (rate(homeroom_ingest_rejections_total[{RATE}]))", "{{rule}}")],
                        unit="ops",
                    ),
                    Panel(
                        "Rejections by rule and district (time range)",
                        [
                            (
                                "sort_desc("
                                + summed(
                                    "increase", "homeroom_ingest_rejections_total", "district, rule", window="$__range"
                                )
                                + ")",
                                "{{district}} {{rule}}",
                            )
                        ],
                        kind="table",
                    ),
                    Panel(
                        "Warnings by rule",
                        [(f"sum by (rule) (rate(homeroom_ingest_warnings_total[{RATE}]))", "{{rule}}")],
                        unit="ops",
                    ),
                    Panel(
                        "Rejected share by district",
                        [
                            (
                                summed("rate", "homeroom_ingest_records_total", "district", '{outcome="rejected"}')
                                + " / "
                                + summed("rate", "homeroom_ingest_records_total", "district"),
                                "{{district}}",
                            )
                        ],
                        unit="percentunit",
                    ),
                ],
            ),
            Row(
                "Submissions",
                [
                    Panel(
                        "Submissions by status",
                        [(f"sum by (status) (increase(homeroom_ingest_submissions_total[{RATE}]))", "{{status}}")],
                        width=8,
                    ),
                    Panel(
                        "Submission time p95 by format",
                        [
                            (
                                f"histogram_quantile(0.95, sum by (format, le) "
                                f"(rate(homeroom_ingest_submission_seconds_bucket[{RATE}])))",
                                "{{format}}",
                            )
                        ],
                        unit="s",
                        width=8,
                    ),
                    Panel(
                        "Upload volume by format",
                        [(f"sum by (format) (rate(homeroom_ingest_upload_bytes_total[{RATE}]))", "{{format}}")],
                        unit="Bps",
                        width=8,
                    ),
                ],
            ),
        ],
        ["ingest"],
    )


def transfers() -> dict[str, Any]:
    return dashboard(
        "homeroom-transfers",
        "Homeroom: transfers",
        "Records following students between districts: cases by state, time to delivery, deadlines.",
        [
            Row(
                "Cases",
                [
                    Panel("Cases by state", [("sum by (state) (homeroom_transfer_cases)", "{{state}}")]),
                    Panel(
                        "Cases opened",
                        [(f"sum(rate(homeroom_transfer_cases_opened_total[{RATE}]))", "opened")],
                        unit="ops",
                    ),
                    Panel(
                        "Steps taken by state reached",
                        [(f"sum by (state) (rate(homeroom_transfer_transitions_total[{RATE}]))", "{{state}}")],
                        unit="ops",
                    ),
                    Panel(
                        "Deadline breaches (time range)",
                        [
                            (
                                "sum by (deadline) (increase(homeroom_transfer_deadline_breaches_total[$__range]))",
                                "{{deadline}}",
                            )
                        ],
                        kind="stat",
                        thresholds=[(1, "red")],
                    ),
                ],
            ),
            Row(
                "Time to delivery",
                [
                    Panel(
                        "Enrollment to delivery",
                        [
                            (
                                f"histogram_quantile(0.5, sum by (le) "
                                f"(rate(homeroom_transfer_enrollment_to_delivery_seconds_bucket[{RATE}])))",
                                "p50",
                            ),
                            (
                                f"histogram_quantile(0.95, sum by (le) "
                                f"(rate(homeroom_transfer_enrollment_to_delivery_seconds_bucket[{RATE}])))",
                                "p95",
                            ),
                        ],
                        unit="s",
                    ),
                    Panel(
                        "Deliveries",
                        [(f"sum(rate(homeroom_transfer_enrollment_to_delivery_seconds_count[{RATE}]))", "delivered")],
                        unit="ops",
                    ),
                ],
            ),
            Row(
                "Trouble",
                [
                    Panel(
                        "Step failures by step",
                        [(f"sum by (step) (rate(homeroom_transfer_step_failures_total[{RATE}]))", "{{step}}")],
                        unit="ops",
                        width=8,
                    ),
                    Panel(
                        "Refusals by reason",
                        [(f"sum by (reason) (increase(homeroom_transfer_refusals_total[{RATE}]))", "{{reason}}")],
                        width=8,
                    ),
                    Panel(
                        "Escalations by reason",
                        [(f"sum by (reason) (increase(homeroom_transfer_escalations_total[{RATE}]))", "{{reason}}")],
                        width=8,
                    ),
                ],
            ),
        ],
        ["transfer"],
    )


def privacy() -> dict[str, Any]:
    return dashboard(
        "homeroom-privacy",
        "Homeroom: privacy",
        "Who received student data and on what legal basis, what was refused and why, agreements ending soon.",
        [
            Row(
                "Disclosures",
                [
                    Panel(
                        "Disclosures by recipient and legal basis",
                        [
                            (
                                summed("increase", "homeroom_audit_disclosures_total", "recipient_role, legal_basis"),
                                "{{recipient_role}}: {{legal_basis}}",
                            )
                        ],
                        description="Every disclosure.v1 event the audit log recorded (records and transfer).",
                    ),
                    Panel(
                        "Disclosures recorded by records, by channel",
                        [(f"sum by (channel) (increase(homeroom_records_disclosures_total[{RATE}]))", "{{channel}}")],
                    ),
                    Panel(
                        "Transfers delivered (FERPA 99.31(a)(2))",
                        [
                            (
                                f"sum(increase(homeroom_transfer_enrollment_to_delivery_seconds_count[{RATE}]))",
                                "delivered",
                            )
                        ],
                    ),
                    Panel(
                        "Record reads by caller role",
                        [
                            (
                                f"sum by (role, channel) (rate(homeroom_records_reads_total[{RATE}]))",
                                "{{role}} {{channel}}",
                            )
                        ],
                        unit="ops",
                    ),
                ],
            ),
            Row(
                "Decisions and denials",
                [
                    Panel(
                        "Consent decisions by action and outcome",
                        [
                            (
                                summed("increase", "homeroom_consent_decisions_total", "action, outcome"),
                                "{{action}} {{outcome}}",
                            )
                        ],
                        width=8,
                    ),
                    Panel(
                        "Consent denials by reason",
                        [(f"sum by (reason) (increase(homeroom_consent_denials_total[{RATE}]))", "{{reason}}")],
                        width=8,
                    ),
                    Panel(
                        "Record reads refused by reason",
                        [(f"sum by (reason) (increase(homeroom_records_denials_total[{RATE}]))", "{{reason}}")],
                        width=8,
                    ),
                ],
            ),
            Row(
                "Agreements",
                [
                    Panel(
                        "Agreements ending within 30 days",
                        [("sum(homeroom_consent_agreements_ending_soon)", "ending")],
                        kind="stat",
                        width=8,
                        thresholds=[(1, "orange")],
                        description="Their released data must be destroyed when they end.",
                    ),
                    Panel(
                        "Agreements by status",
                        [("sum by (status) (homeroom_consent_agreements)", "{{status}}")],
                        width=16,
                    ),
                ],
            ),
        ],
        ["privacy", "consent"],
    )


def audit() -> dict[str, Any]:
    return dashboard(
        "homeroom-audit",
        "Homeroom: audit",
        "The tamper-evident disclosure log: size, signed tree heads, appends and verifications.",
        [
            Row(
                "Log",
                [
                    Panel("Tree size", [("max(homeroom_audit_tree_size)", "entries")], kind="stat", width=6, height=5),
                    Panel(
                        "Signed tree size",
                        [("max(homeroom_audit_signed_tree_size)", "signed")],
                        kind="stat",
                        width=6,
                        height=5,
                    ),
                    Panel(
                        "Time since last signed head",
                        [("max(homeroom_audit_seconds_since_last_signed_head)", "age")],
                        kind="stat",
                        unit="s",
                        width=6,
                        height=5,
                        thresholds=[(3600, "orange"), (7200, "red")],
                    ),
                    Panel(
                        "Verification failures (24h)",
                        [("sum(increase(homeroom_audit_verification_failures_total[24h]))", "failures")],
                        kind="stat",
                        width=6,
                        height=5,
                        thresholds=[(1, "red")],
                    ),
                ],
            ),
            Row(
                "Appends",
                [
                    Panel(
                        "Tree size over time",
                        [
                            ("max(homeroom_audit_tree_size)", "entries"),
                            ("max(homeroom_audit_signed_tree_size)", "signed"),
                        ],
                    ),
                    Panel(
                        "Entries appended",
                        [(f"sum(rate(homeroom_audit_entries_appended_total[{RATE}]))", "appended")],
                        unit="ops",
                    ),
                    Panel(
                        "Append time p95",
                        [
                            (
                                quantile(0.95, "homeroom_audit_append_seconds"),
                                "p95",
                            )
                        ],
                        unit="s",
                    ),
                    Panel(
                        "Audit consumer lag", [('sum by (topic) (homeroom_consumer_lag{service="audit"})', "{{topic}}")]
                    ),
                ],
            ),
            Row(
                "Verification",
                [
                    Panel(
                        "Verifications by outcome",
                        [(f"sum by (outcome) (increase(homeroom_audit_verifications_total[{RATE}]))", "{{outcome}}")],
                    ),
                    Panel(
                        "Verification findings by kind",
                        [(f"sum by (kind) (increase(homeroom_audit_verification_failures_total[{RATE}]))", "{{kind}}")],
                    ),
                ],
            ),
        ],
        ["audit"],
    )


def reports() -> dict[str, Any]:
    return dashboard(
        "homeroom-reports",
        "Homeroom: statewide reports",
        "The statewide tally's freshness and lag, what it reads and refuses, and the snapshots published.",
        [
            Row(
                "Freshness",
                [
                    Panel(
                        "Seconds behind the events",
                        [("max(homeroom_reports_seconds_behind)", "behind")],
                        unit="s",
                        description=(
                            "How far the tally's numbers trail the events on the bus (0: every event counted); "
                            "the API's answers state it as `freshness`."
                        ),
                        thresholds=[(10, "orange"), (60, "red")],
                        width=8,
                    ),
                    Panel(
                        "Tally lag (events behind)",
                        [('sum by (topic) (homeroom_consumer_lag{service="reports"})', "{{topic}}")],
                        description="Events on the source topics the tally has not applied yet.",
                        thresholds=[(1000, "orange"), (10000, "red")],
                        width=8,
                    ),
                    Panel(
                        "Event to tally p99",
                        [(quantile(0.99, "homeroom_reports_event_to_tally_seconds"), "p99")],
                        unit="s",
                        description="From an event's time to its school's row written: how far the numbers trail.",
                        thresholds=[(10, "orange"), (60, "red")],
                        width=8,
                    ),
                ],
            ),
            Row(
                "Tally",
                [
                    Panel(
                        "Events read",
                        [
                            (
                                summed("rate", "homeroom_reports_tally_events_total", "topic, outcome"),
                                "{{topic}} {{outcome}}",
                            )
                        ],
                        unit="ops",
                    ),
                    Panel(
                        "Student writes, dead letters and retries",
                        [
                            (f"sum(rate(homeroom_reports_tally_student_writes_total[{RATE}]))", "writes"),
                            (summed("rate", "homeroom_reports_tally_refused_total", "rule"), "refused {{rule}}"),
                            (f"sum(rate(homeroom_reports_tally_retries_total[{RATE}]))", "batches retried"),
                        ],
                        unit="ops",
                    ),
                ],
            ),
            Row(
                "Snapshots",
                [
                    Panel(
                        "Cells of the latest snapshot",
                        [("max by (status) (homeroom_reports_snapshot_cells)", "{{status}}")],
                        kind="bargauge",
                    ),
                    Panel(
                        "Snapshot time p95",
                        [(quantile(0.95, "homeroom_reports_snapshot_seconds"), "p95")],
                        unit="s",
                    ),
                ],
            ),
        ],
        ["reports"],
    )


DASHBOARDS = {
    "homeroom-overview.json": overview,
    "homeroom-ingest.json": ingest,
    "homeroom-transfers.json": transfers,
    "homeroom-privacy.json": privacy,
    "homeroom-audit.json": audit,
    "homeroom-reports.json": reports,
}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        (DASHBOARD_DIR / name).write_text(render(name))
        print(f"wrote {DASHBOARD_DIR / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
