"""The reports service alone in its own process, so a test can kill -9 its tally:

    python -m tests.services.reports.tally_process SETTINGS_JSON TOPIC_SUFFIX

SETTINGS_JSON is a file holding the service's settings (`ServiceEnv.settings_for`, dumped);
the clock is the tests' fixed day. It runs until it is killed (HOMEROOM_FAILPOINTS may make
it kill itself at a chosen point)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from homeroom.auth import AuthSettings
from homeroom.config import KafkaSettings
from homeroom.service import running
from services.reports.service import build_spec
from services.reports.settings import ReportsSettings
from tests.services.reports.helpers import fixed_clock


async def serve(settings_file: Path, suffix: str) -> None:
    values = json.loads(settings_file.read_text())
    bootstrap = values.pop("kafka_bootstrap_servers")
    settings = ReportsSettings(**values)
    auth = AuthSettings(dev_key_file=settings.secrets_dir / "dev-issuer.pem")
    kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    async with running(build_spec(suffix), settings, kafka=kafka, auth=auth, clock=fixed_clock()):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]), sys.argv[2]))
