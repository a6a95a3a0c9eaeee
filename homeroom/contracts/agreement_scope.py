"""Consent's answer to `GET /v1/agreements/{agreement_id}/scope`: what an agreement releases
today (records filters rosters by it) and which districts it covers whatever its status
(the incidents service finds the educational agencies a breach concerns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class UnreadableScope(ValueError):
    """The consent service answered with something that is not an agreement scope."""


@dataclass(frozen=True, slots=True)
class AgreementScope:
    agreement_id: str
    version: int
    status: str
    active: bool
    organization: str
    districts: tuple[str, ...]  # released to today: empty unless active
    schools: tuple[str, ...]
    elements: tuple[str, ...]
    purposes: tuple[str, ...]
    start_date: str | None
    end_date: str | None
    covered_districts: tuple[str, ...] = ()  # what the agreement covers, active or not
    classes: tuple[str, ...] = ()  # class sourcedIds, when the agreement is for certain classes only
    key_rotations: tuple[str, ...] = ()  # ids of the key rotations done after a breach (POST .../keys/rotate)
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AgreementScope:
        try:
            return cls(
                agreement_id=str(raw["agreement_id"]),
                version=int(raw.get("version") or 0),
                status=str(raw.get("status") or ""),
                active=bool(raw["active"]),
                organization=str(raw.get("organization") or ""),
                districts=tuple(str(d) for d in raw.get("districts") or ()),
                schools=tuple(str(s) for s in raw.get("schools") or ()),
                elements=tuple(str(e) for e in raw.get("elements") or ()),
                purposes=tuple(str(p) for p in raw.get("purposes") or ()),
                start_date=raw.get("start_date"),
                end_date=raw.get("end_date"),
                covered_districts=tuple(str(d) for d in raw.get("covered_districts") or ()),
                classes=tuple(str(c) for c in raw.get("classes") or ()),
                key_rotations=tuple(str(r["rotation_id"]) for r in raw.get("key_rotations") or ()),
                raw=raw,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnreadableScope(f"an unreadable agreement scope: {exc!r}") from None
