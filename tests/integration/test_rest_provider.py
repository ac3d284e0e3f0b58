"""The provider stage's REST side on a real nats-server: the services'
records followed from KV (a call uses the record as it is now, its header
rules included) and the instances' health checks heard on the health
subject, as every routing replica hears a try's outcome."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from nats.aio.client import Client

from schemas import subjects
from schemas.envelope import Deployment
from schemas.health import TryOutcome, decode_try
from schemas.rest import HeaderRule, RestCall, RestInstance, RestService, kv_encode
from services.bus import process
from services.bus.portal_buckets import ensure_buckets
from services.cli.nats_server import free_port
from services.providers.call import CallProgress
from tests.unit.mock_server import MockServer
from workers.provider import RestSide

TOKEN_ENV = "H2_REST_PROVIDER_TEST_TOKEN"


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    server = MockServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await process.connect("rest-provider-test", nats_url)
    await ensure_buckets(client.jetstream())
    yield client
    await client.close()


async def eventually(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_calls_follow_the_record_in_kv_and_health_checks_reach_the_routing_replicas(
    nc: Client, mock: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "t0ken")
    heard: list[TryOutcome] = []

    async def on_health(msg) -> None:  # type: ignore[no-untyped-def]
        heard.append(decode_try(msg.data))

    sub = await nc.subscribe(subjects.HEALTH_ATTEMPT, cb=on_health)
    side = RestSide(health_s=0.2)
    await side.start(nc.jetstream(), nc)
    try:
        kv = await nc.jetstream().key_value(subjects.KV_SERVICES)
        base = f"{mock.url}/rest/echo"
        service = RestService(
            slug="probe",
            instances=[
                RestInstance(url=base, health_path="/status/200"),
                RestInstance(url=f"http://127.0.0.1:{free_port()}", health_path="/health"),
            ],
            add_headers=[HeaderRule(name="x-token", env=TOKEN_ENV)],
        )
        await kv.put(service.key, kv_encode(service))
        await eventually(lambda: service.key in side.services.items)
        dep = Deployment(name="rest:probe.v1:0", provider="rest", base_url=base, upstream_model="probe")

        async def nothing(*_: object) -> None:
            return None

        outcome = await side.caller.call(dep, RestCall(service="probe", path="/x"), CallProgress(), nothing)
        assert json.loads(outcome.data)["headers"]["x-token"] == "t0ken"
        await eventually(lambda: {o.deployment for o in heard} >= {"rest:probe.v1:0", "rest:probe.v1:1"})
        assert {o.deployment: o.ok for o in heard} == {"rest:probe.v1:0": True, "rest:probe.v1:1": False}
        await kv.delete(service.key)
        await eventually(lambda: service.key not in side.services.items)
    finally:
        await side.stop()
        await sub.unsubscribe()
