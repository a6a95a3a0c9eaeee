"""Settings of the transfer service (environment prefix HOMEROOM_TRANSFER_)."""

from __future__ import annotations

from homeroom.config import ServiceSettings
from homeroom.peers import peer_url
from services.transfer.transfers import DeadlinePolicy, RetryPolicy


class TransferSettings(ServiceSettings):
    service_name: str = "transfer"  # HOMEROOM_TRANSFER_ and its conventional port (ServiceSettings)

    # Peers (the stack sets these; see docs/contracts.md).
    consent_url: str = peer_url("consent")
    records_url: str = peer_url("records")
    peer_timeout_s: float = 10.0

    # Case worker.
    worker_enabled: bool = True
    worker_poll_interval_s: float = 1.0  # also woken at once by NOTIFY when a case opens
    worker_batch: int = 50
    worker_concurrency: int = 16
    worker_lease_s: float = 60.0  # a case a crashed worker held is picked up again after this

    # Retries of a failing step, then escalation.
    retry_max_attempts: int = 5
    retry_base_backoff_s: float = 1.0
    retry_max_backoff_s: float = 300.0

    # Deadlines (Texas allows 10 working days; the demo uses seconds).
    delivery_deadline_s: float = 3600.0  # from the case opening to delivery
    acknowledge_deadline_s: float = 24 * 3600.0  # from delivery to the receiving district's answer
    acknowledge_resends: int = 1  # re-sends past the acknowledgement deadline before escalating

    # Enrollments whose entry date is older than this (relative to the event) open no case:
    # a district loading its history must not start transfers that happened years ago.
    max_entry_age_days: int = 365

    @property
    def deadlines(self) -> DeadlinePolicy:
        return DeadlinePolicy(self.delivery_deadline_s, self.acknowledge_deadline_s, self.acknowledge_resends)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.retry_max_attempts, self.retry_base_backoff_s, self.retry_max_backoff_s)
