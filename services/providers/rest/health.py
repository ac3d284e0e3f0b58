"""Health checks of REST service instances: every ``interval_s``, a GET of
each instance's ``health_path`` (under its base URL) that answers 2xx in
time is a success, anything else a failure.

Each result is published as a try's outcome would be (``TryOutcome`` on
the health subject), so every routing replica's breaker for that instance
hears it: an instance that went down is held back before a caller's
request finds out, and one that came back closes its breaker at its first
probe. A result carries no latency (a health path is no measure of the
service's calls) and no in-flight count. Instances without a health path
are left to the breaker alone. Nothing here knows of NATS: the stage gives
``publish``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
from multidict import CIMultiDict

from schemas.errors import GatewayError
from schemas.health import TryOutcome
from schemas.rest import RestInstance, RestService
from services.providers.rest.client import RestClient
from services.providers.rest.target import upstream_url
from services.rest_routing import deployment_name

log = logging.getLogger("sluice.rest")

CHECK_S = 10.0
# A health path answers at once or not at all: bounded apart from the service's timeouts.
TIMEOUT_S = 5.0
# States whose instances take calls.
_SERVED = frozenset({"published", "deprecated"})

Publish = Callable[[TryOutcome], Awaitable[None]]


class HealthChecks:
    def __init__(self, client: RestClient, services: Mapping[str, RestService], interval_s: float = CHECK_S) -> None:
        self.client = client
        self.services = services
        self.interval_s = interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Rounds done (for tests and status).
        self.rounds = 0

    def start(self, publish: Publish) -> None:
        self._task = asyncio.create_task(self._run(publish), name="rest-health")

    def services_changed(self) -> None:
        """A record changed: check soon rather than at the next tick."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check_all(self) -> list[TryOutcome]:
        """One round over every served instance that has a health path."""
        checks = [
            self.check(service, i, instance)
            for service in list(self.services.values())
            if service.state in _SERVED
            for i, instance in enumerate(service.instances)
            if instance.health_path
        ]
        return list(await asyncio.gather(*checks))

    async def check(self, service: RestService, index: int, instance: RestInstance) -> TryOutcome:
        ok = False
        try:
            url = upstream_url(instance.url, instance.health_path)
            connect_s = min(service.connect_timeout_s, TIMEOUT_S)
            async with asyncio.timeout(TIMEOUT_S):
                resp = await self.client.send("GET", url, CIMultiDict(), b"", connect_s, TIMEOUT_S)
                try:
                    ok = 200 <= resp.status < 300
                finally:
                    resp.close()  # its body is not wanted: the connection is not kept for it
        except (aiohttp.ClientError, TimeoutError, GatewayError) as exc:
            log.debug("REST service %s instance %d: health check failed: %r", service.key, index, exc)
        return TryOutcome(deployment=deployment_name(service, index), ok=ok, at_ns=time.time_ns())

    async def _run(self, publish: Publish) -> None:
        while True:
            try:
                for outcome in await self.check_all():
                    await publish(outcome)
            except Exception:
                log.exception("REST health checks failed")
            self.rounds += 1
            self._wake.clear()
            # Not wait_for: its inner task, woken as it is cancelled, can leave a stop waiting forever (3.11).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
