"""Publishing to the bus. Only the outbox relay (and benchmarks) publish directly.

No idempotent producer (the embedded broker lacks it): a retried send can duplicate a
message, which consumers absorb by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaProducer

from homeroom.bus.envelope import OutgoingEvent
from homeroom.telemetry import EVENTS_PUBLISHED


class Publisher:
    def __init__(self, service: str, client_kwargs: dict[str, Any], *, linger_ms: int = 5) -> None:
        self.service = service
        self._kwargs = client_kwargs
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure_started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **self._kwargs,
                    client_id=f"homeroom-{self.service}",
                    acks="all",
                    enable_idempotence=False,
                    linger_ms=self._linger_ms,
                    max_batch_size=512 * 1024,
                    request_timeout_ms=15000,
                )
                await producer.start()  # raises while the broker is unreachable; callers retry
                self._producer = producer
            return self._producer

    async def publish_many(self, events: list[OutgoingEvent]) -> None:
        """Send all and wait until the broker acknowledged every one, or raise."""
        producer = await self._ensure_started()
        try:
            futures = [await producer.send(e.topic, e.value, key=e.key, headers=e.headers) for e in events]
            await asyncio.gather(*futures)
        except Exception:
            await self._reset()
            raise
        for e in events:
            EVENTS_PUBLISHED.labels(self.service, e.topic).inc()

    async def _reset(self) -> None:
        """Drop a producer that failed so the next attempt reconnects from scratch."""
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):  # it is being discarded either way
                await asyncio.wait_for(producer.stop(), 5)

    async def ping(self) -> None:
        producer = await self._ensure_started()
        await producer.client.fetch_all_metadata()

    async def stop(self) -> None:
        await self._reset()
