"""What a running ingest service holds, typed: one object, reached by routes and the CLI alike.

`IngestState` is built by the service's lifecycle (`service.py`) and is `runtime.state`;
`IngestRuntime` is the kernel's runtime typed with this service's settings and state, and
`StateDep` hands the state to a route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends

from homeroom.service import Runtime, get_state
from services.ingest.application.jobs import Ingestor
from services.ingest.settings import IngestSettings


@dataclass(frozen=True, slots=True)
class IngestState:
    settings: IngestSettings
    pool: asyncpg.Pool
    ingestor: Ingestor  # runs and tracks the submissions (application/jobs.py)


IngestRuntime = Runtime[IngestSettings, IngestState]


StateDep = Annotated[IngestState, Depends(get_state)]
