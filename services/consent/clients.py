"""Consent's calls to other services: records' district roster (which keys are a district's own
students, and their names for a linking letter), with the district staff member's own token, so
records decides what that person may see."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import httpx
from pydantic import ValidationError

from homeroom.contracts.student_directory import DistrictStudents
from homeroom.problems import Problem, problem_type


class RecordsDirectory:
    """`GET /v1/districts/{d}/student-names`: the district's own students (unknown keys left out), named,
    with their eligibility (FERPA 99.5) computed by records, which keeps the birth date."""

    def __init__(self, base_url: str, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def students(self, district_id: str, student_keys: Sequence[str], token: str, on: date) -> DistrictStudents:
        """The district's own students among these keys, named, with their FERPA eligibility on `on`."""
        none = DistrictStudents(district_id=district_id, names={})
        if not student_keys:
            return none
        try:
            response = await self._client.get(
                f"/v1/districts/{district_id}/student-names",
                params=httpx.QueryParams({"student_key": list(student_keys), "on": on.isoformat()}),
                headers={"Authorization": f"Bearer {token}"},
            )
        except (httpx.HTTPError, OSError) as exc:
            raise Problem(
                503,
                "Records unavailable",
                f"the records service could not be asked which students {district_id} holds ({type(exc).__name__})",
                type=problem_type("peer-unavailable"),
                headers={"Retry-After": "5"},
            ) from None
        if response.status_code in (401, 403, 404):
            return none  # the caller may see none of these students: every key is refused by name
        if response.status_code != 200:
            raise Problem(
                503,
                "Records unavailable",
                f"the records service answered {response.status_code} when asked for {district_id}'s students",
                type=problem_type("peer-unavailable"),
                headers={"Retry-After": "5"},
            )
        try:
            return DistrictStudents.model_validate_json(response.content)
        except ValidationError:
            raise Problem(
                503,
                "Records unavailable",
                f"the records service's answer about {district_id}'s students does not parse",
                type=problem_type("peer-unavailable"),
            ) from None
