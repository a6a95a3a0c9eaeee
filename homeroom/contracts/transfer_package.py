"""Records' internal transfer endpoints (role `service`), as the transfer service calls them
(docs/contracts.md, "Transfer"):

* `POST /v1/internal/transfer-packages`: the sending district's record, only the elements the
  consent decision released, values opened (the answer: the package, one object per section);
* `POST /v1/internal/transfer-deliveries`: write the package into the receiving district's
  record, sealed under its keys; idempotent on `case_id`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class TransferPackageRequest(BaseModel):
    case_id: str = Field(min_length=1)
    student_key: str = Field(min_length=1)
    from_district_id: str = Field(min_length=1)
    elements: list[str]


class TransferDeliveryRequest(BaseModel):
    case_id: str = Field(min_length=1)
    student_key: str = Field(min_length=1)
    to_district_id: str = Field(min_length=1)
    to_school_id: str = ""
    package: dict[str, Any]
