"""W3C trace context: a caller's ``traceparent`` (over HTTP, or as a NATS
header from a service on the bus) lands on its request's row; an invalid one
is ignored, never refused; a trace id planted in an envelope is not taken."""

from __future__ import annotations

import asyncio

import msgspec
import openai

from tests.integration.test_nats_direct import envelope
from tests.stack import DEMO_KEY, Stack

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def ask(stack: Stack, traceparent: str, stream: bool = False) -> str:
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=20) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="demo-model",
            messages=[{"role": "user", "content": "traced [mock:chunks=2]"}],
            stream=stream,
            extra_headers={"traceparent": traceparent},
        )
        if stream:
            list(raw.parse())
        return raw.headers["x-request-id"]


def test_an_http_callers_trace_id_is_on_its_row(stack: Stack) -> None:
    for stream in (False, True):
        assert stack.request_row(ask(stack, TRACEPARENT, stream))["trace_id"] == TRACE
    found = stack.query("trace", trace_id=TRACE)
    assert len(found["rows"]) >= 2


def test_an_invalid_traceparent_is_ignored_not_refused(stack: Stack) -> None:
    row = stack.request_row(ask(stack, f"00-{TRACE.upper()}-00f067aa0ba902b7-01"))
    assert row["status"] == 200 and row["trace_id"] == ""


async def over_the_bus(stack: Stack, headers: dict[str, str], **fields: object) -> dict:
    nc = await stack.connect()
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(
            "sluice.v1.in.chat",
            envelope(inbox, "traced [mock:chunks=2]", **fields),
            headers={"Authorization": f"Bearer {DEMO_KEY}", **headers},
        )
        return msgspec.msgpack.decode((await sub.next_msg(timeout=10)).data)
    finally:
        await nc.close()


def test_a_bus_callers_traceparent_header_is_on_its_row_and_a_planted_field_is_not(stack: Stack) -> None:
    final = asyncio.run(over_the_bus(stack, {"traceparent": TRACEPARENT}))
    assert final["kind"] == "chat.final"
    assert stack.request_row(final["id"])["trace_id"] == TRACE
    planted = asyncio.run(over_the_bus(stack, {}, trace_id="f" * 32))
    assert stack.request_row(planted["id"])["trace_id"] == ""
    # Refused before anything else (no key): the planted id is not kept on the refusal's row either.
    nc_final = asyncio.run(over_the_bus(stack, {"Authorization": "Bearer sk-nobody"}, trace_id="f" * 32))
    assert nc_final["kind"] == "chat.failure" and nc_final["status"] == 401
    assert stack.request_row(nc_final["id"])["trace_id"] == ""
