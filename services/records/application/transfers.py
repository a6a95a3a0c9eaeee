"""The transfer service's calls into records (docs/contracts.md, "Transfer").

Use cases:
- `transfer_package`: the sending district's record, only the elements asked for, values
  opened; the transfer service records the disclosure for the case, none is emitted here.
- `deliver_transfer`: a delivered package written into the receiving district's record,
  sealed under that district's keys; idempotent on the case."""

from __future__ import annotations

import json
from typing import Any

from homeroom.catalogue import CATALOGUE
from homeroom.contracts.transfer_package import TransferDeliveryRequest, TransferPackageRequest
from homeroom.crypto import KeyDestroyedError
from homeroom.service import Runtime
from services.records import store
from services.records.application.reads import TRANSFER_PACKAGE_ELEMENT, load, open_record
from services.records.application.refusals import destroyed, not_found
from services.records.record import build_view


async def transfer_package(runtime: Runtime, body: TransferPackageRequest) -> dict[str, Any]:
    """The sending district's record cut to `body.elements` (each a readable catalogue element)."""
    stored = await load(runtime, body.from_district_id, body.student_key)
    if stored is None:
        raise not_found()
    view, present = build_view(await open_record(runtime, stored), set(body.elements))
    return {
        "case_id": body.case_id,
        "student_key": body.student_key,
        "from_district_id": body.from_district_id,
        "elements": view["elements"],
        "enrollments": view["enrollments"],
        "attendance": view["attendance"],
        "suspension_dates": view.get("suspension_dates", []),
        "program_flags": view["program_flags"],
        "parent_statements": view.get("parent_statements", []),
        "elements_included": present,
        # The parent's directory opt-out travels with the record (99.37); it strips nothing from it.
        "directory_opt_out": stored.directory_opt_out,
    }


async def deliver_transfer(
    runtime: Runtime, body: TransferDeliveryRequest, raw_elements: dict[str, Any]
) -> dict[str, Any]:
    """Write the package (its `elements`, each a readable catalogue element) into the receiving record."""
    cipher = runtime.require_cipher()
    district, key = body.to_district_id, body.student_key
    try:
        package_sealed = await cipher.seal(district, key, TRANSFER_PACKAGE_ELEMENT, json.dumps(body.package))
        pii = {e: str(v) for e, v in raw_elements.items() if CATALOGUE[e].pii and v is not None}
        sealed = await cipher.seal_many(district, key, pii) if pii else {}
    except KeyDestroyedError:
        raise destroyed(district) from None
    included = body.package.get("elements_included") or sorted(raw_elements)
    async with store.district_tx(runtime.pool, district) as conn:
        await store.ensure_student(conn, district, key)
        fresh = await store.add_transfer_delivery(
            conn,
            body.case_id,
            district,
            key,
            str(body.package.get("from_district_id") or ""),
            body.to_school_id,
            package_sealed,
            [str(e) for e in included],
        )
        if fresh:
            if sealed:
                await store.put_elements_if_absent(conn, district, key, sealed, f"transfer:{body.case_id}")
            plain = {e: str(v) for e, v in raw_elements.items() if not CATALOGUE[e].pii and v is not None}
            if plain:
                await store.merge_plain_if_absent(conn, district, key, plain)
            await store.touch(conn, district, key)
    return {"case_id": body.case_id, "delivered": True}
