"""Consent's calls to other services: records' district roster (which keys are a district's own
students, and their names for a linking letter), with the district staff member's own token, so
records decides what that person may see."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from homeroom.problems import Problem, problem_type


class RecordsDirectory:
    """`GET /v1/districts/{d}/student-names`: names of the district's own students (unknown keys left out)."""

    def __init__(self, base_url: str, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def names(self, district_id: str, student_keys: Sequence[str], token: str) -> dict[str, str]:
        if not student_keys:
            return {}
        try:
            response = await self._client.get(
                f"/v1/districts/{district_id}/student-names",
                params=[("student_key", k) for k in student_keys],
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
            return {}  # the caller may see none of these students: every key is refused by name
        if response.status_code != 200:
            raise Problem(
                503,
                "Records unavailable",
                f"the records service answered {response.status_code} when asked for {district_id}'s students",
                type=problem_type("peer-unavailable"),
                headers={"Retry-After": "5"},
            )
        names = response.json().get("names") or {}
        return {str(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}
