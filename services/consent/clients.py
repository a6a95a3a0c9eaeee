"""Consent's calls to other services: records' district roster (which keys are a district's own
students, their names for a linking letter and their FERPA eligibility), through records'
typed client (`homeroom/contracts/clients.py`, `RecordsClient.district_students`) with the
district staff member's own token, so records decides what that person may see."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import httpx

from homeroom.contracts.clients import PeerUnavailable, RecordsClient
from homeroom.contracts.student_directory import DistrictStudents


class RecordsDirectory:
    """`linking.StudentDirectory` over records' API; a records failure is consent's 503."""

    def __init__(self, base_url: str, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # No service token: every call carries the person's own.
        self._records = RecordsClient(base_url, None, transport=transport, timeout_s=timeout_s)

    async def aclose(self) -> None:
        await self._records.aclose()

    async def students(self, district_id: str, student_keys: Sequence[str], token: str, on: date) -> DistrictStudents:
        """The district's own students among these keys, named, with their FERPA eligibility on `on`."""
        try:
            return await self._records.district_students(district_id, student_keys, token=token, on=on)
        except PeerUnavailable as exc:
            detail = f"the records service could not be asked which students {district_id} holds ({exc})"
            raise exc.as_problem("Records unavailable", detail) from None
