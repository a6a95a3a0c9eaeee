"""Use case: fetch the record (the worker's second step). Records assembles the package of
the released elements; what it sends back is kept to what the decision released
(`withholding.filter_package`) and sealed under the sending district's key until delivery."""

from __future__ import annotations

import json
from typing import Any

from homeroom.contracts.clients import PeerUnavailable
from homeroom.contracts.transfer_package import TransferPackageRequest
from services.transfer import events
from services.transfer.application.common import commit
from services.transfer.application.withholding import filter_package
from services.transfer.state import TransferRuntime
from services.transfer.store import Case
from services.transfer.transfers import State

PACKAGE_ELEMENT = "transfer.package"


async def fetch(runtime: TransferRuntime, case: Case) -> Case | None:
    raw = await runtime.state.records.transfer_package(
        TransferPackageRequest(
            case_id=case.case_id,
            student_key=case.student_key,
            from_district_id=case.from_district_id,
            elements=case.elements_released,
        )
    )
    package, included = filter_package(raw, case)
    cipher = runtime.require_cipher()
    sealed = await cipher.seal(
        case.from_district_id, case.student_key, PACKAGE_ELEMENT, json.dumps(package, sort_keys=True)
    )
    return await commit(
        runtime,
        case,
        State.PACKAGED,
        "packaged",
        detail={
            "elements_included": included,
            "elements_withheld": case.elements_withheld,
            "sections": sorted(k for k, v in package.items() if v and k not in ("case_id", "student_key")),
        },
        build=lambda c: [events.step(c, "transfer_packaged", "packaged", elements_released=included)],
        package_sealed=sealed,
        attempt=0,
        next_attempt_at=runtime.clock(),
    )


async def open_package(runtime: TransferRuntime, case: Case) -> dict[str, Any]:
    """The sealed package of a packaged case, opened for delivery."""
    if case.package_sealed is None:
        raise PeerUnavailable("transfer", "the case has no package to send", retryable=False)
    cipher = runtime.require_cipher()
    plain = await cipher.open(case.from_district_id, case.student_key, PACKAGE_ELEMENT, case.package_sealed)
    package: dict[str, Any] = json.loads(plain)
    return package
