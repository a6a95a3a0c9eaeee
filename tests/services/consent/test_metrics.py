"""Denials are counted under bounded reason codes the privacy dashboard groups by."""

from __future__ import annotations

import pytest

from services.consent.metrics import denial_code


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("no agreement agr-9 is on record", "agreement_unknown"),
        ("agreement agr-1 ended on 2026-11-01; nothing is released under it", "agreement_ended"),
        ("agreement agr-1 is a draft and releases nothing", "agreement_draft"),
        ("agreement agr-1 is suspended", "agreement_suspended"),
        ("agreement agr-1 v2 does not cover district d-7", "district_not_covered"),
        ("agreement agr-1 v2 does not cover school s-3", "school_not_covered"),
        ("agreement agr-1 v2 does not permit the purpose 'marketing'", "purpose_not_permitted"),
        ("no rule permits a vendor to read this student's record", "no_rule_permits"),
        ("something new", "other"),
    ],
)
def test_denial_reasons_map_to_codes(reason: str, code: str) -> None:
    assert denial_code(reason) == code
