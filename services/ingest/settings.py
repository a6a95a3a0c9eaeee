"""Settings of the ingest service (environment prefix HOMEROOM_INGEST_)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import Field

from homeroom.config import ServiceSettings
from homeroom.gc_tuning import YOUNG_GC_THRESHOLD


class IngestSettings(ServiceSettings):
    service_name: str = "ingest"

    # uploads
    max_upload_bytes: int = Field(default=512 << 20, gt=0)  # larger bodies get 413
    upload_dir: Path = Path(tempfile.gettempdir()) / "homeroom-ingest"  # uploads wait here until processed
    # pipeline
    chunk_records: int = Field(default=1000, gt=0)  # input records per database transaction
    max_problems_stored: int = Field(default=10_000, ge=0)  # per submission; more are counted, not stored
    max_warnings_kept: int = Field(default=1_000, ge=0)  # per submission; more are counted, not kept
    max_concurrent_submissions: int = Field(default=2, gt=0)
    # The garbage collector's young-generation threshold while the service runs (CPython's is
    # 700). A chunk keeps tens of thousands of objects alive; at 700 the collector walked them
    # for 8 % of the attendance upload's CPU (docs/services/ingest.md). 0: leave it.
    gc_young_threshold: int = Field(default=YOUNG_GC_THRESHOLD, ge=0)
    # Fair scheduling: one district's uploads never take every slot while another's wait.
    max_concurrent_per_district: int = Field(default=1, gt=0)
    # Uploads up to this size (a real-time change: an enrollment, a withdrawal) run in their own
    # slots, so they never wait behind a district's bulk file (0: one queue for all).
    small_upload_bytes: int = Field(default=64 << 10, ge=0)
    max_concurrent_small_submissions: int = Field(default=2, gt=0)
    # Zip uploads (OneRoster): expanded size per upload and per entry, and compression ratio.
    max_expanded_bytes: int = Field(default=2 << 30, gt=0)
    max_entry_bytes: int = Field(default=1 << 30, gt=0)
    max_compression_ratio: float = Field(default=100.0, gt=1.0)
    auto_register_orgs: bool = True  # an upload's schools not yet owned by anyone are registered to its district
    # the bulk-withdrawal safety rail
    hold_max_share: float = Field(default=0.10, ge=0.0, le=1.0)  # hold when a school would lose more than this
    hold_min_withdrawals: int = Field(default=5, ge=1)  # ... and at least this many students
