"""Each service's OpenAPI groups: declared beside the routes (a router module's `TAGS`),
listed by the kernel in the declared order with their descriptions, and each one used by a
route of the service (a description left behind when its routes moved fails here)."""

from __future__ import annotations

import pytest

from homeroom.registry import SERVICES, load_spec
from homeroom.service import create_app


@pytest.mark.parametrize("name", sorted(n for n in SERVICES if load_spec(n).app_factory is None))
def test_declared_tags_are_the_documents_groups_in_order(name: str) -> None:
    spec = load_spec(name)
    document = create_app(spec, lifespan=False).openapi()
    listed = [(t["name"], t["description"]) for t in document.get("tags", [])]
    assert listed == list(spec.openapi_tags.items())
    used = {tag for path in document["paths"].values() for op in path.values() for tag in op.get("tags", [])}
    assert set(spec.openapi_tags) <= used, f"{name}: described but no route has it: {set(spec.openapi_tags) - used}"
