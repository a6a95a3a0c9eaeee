"""The portal as the kernel runs it: `homeroom serve portal`.

No database, no bus, no consumers: `app_factory` builds the app from the settings."""

from __future__ import annotations

from homeroom.service import ServiceSpec
from services.portal.app import create_portal_app
from services.portal.settings import PortalSettings

SERVICE = ServiceSpec(
    settings=PortalSettings,
    description="Web pages for parents, compliance staff and district data offices.",
    app_factory=create_portal_app,
)
