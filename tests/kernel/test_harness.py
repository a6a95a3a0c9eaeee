"""The test harness's stop deadline (tests/harness.py): a service under test whose stop never
ends fails the test, naming the service and what its stop waits on, instead of hanging CI
(pytest-timeout cancels its timer once a test has failed, so nothing else would end it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic_settings import SettingsConfigDict

from homeroom.config import ServiceSettings
from homeroom.service import Runtime, ServiceSpec
from homeroom.tasks import cancel
from tests.harness import ServiceEnv, StopOverran, service_under_test


class _Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEROOM_STOPTEST_", extra="ignore")
    service_name: str = "stoptest"


async def _deaf_loop(released: asyncio.Event) -> None:
    """A background loop that swallows its cancellation, as Python 3.11's `asyncio.wait_for`
    does when the awaited event fires in the same turn as the cancel (CPython gh-86296);
    it ends only once the test releases it."""
    while not released.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)


def _with_deaf_worker(released: asyncio.Event) -> ServiceSpec[_Settings, None]:
    @contextlib.asynccontextmanager
    async def lifecycle(runtime: Runtime[Any, Any]) -> AsyncIterator[None]:
        task = asyncio.create_task(_deaf_loop(released), name="stoptest-deaf-loop")
        try:
            yield None
        finally:
            await cancel(task)  # waits for a task that does not end

    return ServiceSpec(name="stoptest", settings=_Settings, lifecycle=lifecycle)


def _task(name: str) -> asyncio.Task[Any]:
    return next(t for t in asyncio.all_tasks() if t.get_name() == name)


async def test_a_stop_that_never_ends_fails_naming_the_service_and_what_it_waits_on(service_env: ServiceEnv) -> None:
    released = asyncio.Event()
    try:
        with pytest.raises(StopOverran) as overran:
            async with service_under_test(_with_deaf_worker(released), service_env, stop_deadline_s=1.0) as svc:
                assert (await svc.client.get("/healthz")).status_code == 200
    finally:
        # Nothing outlives the test: the deaf loop, released, ends, and so does the abandoned stop.
        released.set()
        async with asyncio.timeout(30):
            await asyncio.wait({_task("stoptest-deaf-loop"), _task("stop-stoptest")})
    message = str(overran.value)
    assert message.startswith("service stoptest did not stop within 1 s"), message
    stop, awaited = message.split("task 'stoptest-deaf-loop':")  # the stop, then the task it awaits
    assert "task 'stop-stoptest':" in stop and "homeroom/service.py" in stop and "in running" in stop, message
    assert "in _with_deaf_worker.<locals>.lifecycle" in stop and "homeroom/tasks.py" in stop, message
    assert "tests/kernel/test_harness.py:" in awaited and "in _deaf_loop" in awaited, message


async def test_a_test_that_fails_still_fails_with_its_own_error_when_the_stop_is_prompt(
    service_env: ServiceEnv,
) -> None:
    spec: ServiceSpec[_Settings, None] = ServiceSpec(name="stoptest", settings=_Settings)
    with pytest.raises(LookupError, match="the test's own failure"):
        async with service_under_test(spec, service_env, stop_deadline_s=30.0):
            raise LookupError("the test's own failure")
