"""Audit's `POST /v1/internal/disclosures/present` (role `service`): which of these disclosure
ids the log holds. Records' reconciliation asks it for the releases it has not yet seen
audited (ids only: no student data travels)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_IDS = 5000


class DisclosuresPresent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disclosure_ids: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(max_length=MAX_IDS)


class PresentDisclosures(BaseModel):
    present: list[str]  # the ids asked for that the log holds
