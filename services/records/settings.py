"""Settings of the records service (environment prefix HOMEROOM_RECORDS_)."""

from __future__ import annotations

from pydantic import Field

from homeroom.config import ServiceSettings
from homeroom.peers import peer_url


class RecordsSettings(ServiceSettings):
    service_name: str = "records"
    # The consent service's decision API. Empty: nothing is released outside the owning
    # district (fail closed), as when the consent service is unreachable.
    consent_url: str = peer_url("consent", local_default=False)
    consent_timeout_s: float = 5.0
    # Reconciliation of the read log with the audit log (services/records/reconcile.py).
    audit_url: str = peer_url("audit", local_default=False)
    reconcile_interval_s: float = 60.0  # 0: off
    reconcile_grace_s: float = 120.0  # a disclosure reaches audit well within this
    max_page_size: int = 1000
    # Chronic absence: absent on at least this share of recorded school days, once at least
    # `chronic_absence_min_days` days are recorded (seed 000: early support).
    chronic_absence_threshold: float = Field(default=0.10, gt=0, le=1)
    chronic_absence_min_days: int = Field(default=10, ge=1)
    # Attendance for a student the district has not registered waits this long for the
    # registration (another topic) before it is dead-lettered (application/waiting_marks.py).
    unknown_student_wait_s: float = Field(default=300.0, ge=0)
    # How often the retention job removes what districts' retention periods say is kept long enough
    # (0: never; it also runs once at start).
    retention_interval_s: float = Field(default=86400.0, ge=0)
