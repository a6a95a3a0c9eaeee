"""Metrics of the records service (kernel metrics cover events applied and consumer lag)."""

from __future__ import annotations

from prometheus_client import Counter

READS = Counter("homeroom_records_reads_total", "Student records read, by caller role and channel", ["role", "channel"])
DENIALS = Counter("homeroom_records_denials_total", "Reads refused, by reason", ["reason"])
DISCLOSURES = Counter("homeroom_records_disclosures_total", "disclosure.v1 events written, by channel", ["channel"])
