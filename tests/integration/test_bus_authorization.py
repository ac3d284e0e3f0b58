"""The bus checks who speaks: every connection needs credentials, and an
internal service's may send requests in and read its own inbox, nothing else.
The server refuses the rest; these tests watch it do so."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import subprocess
import sys

import httpx
import msgspec
import nats
import nats.errors
import pytest

from schemas import subjects
from schemas.mcp import decode_catalog, decode_server
from services.bus import credentials, process
from services.bus.kv import KvMirror
from tests.stack import DEMO_KEY, Stack


def chat(reply: str) -> bytes:
    body = {"model": "demo-model", "messages": [{"role": "user", "content": "who may speak? [mock:chunks=2]"}]}
    return msgspec.msgpack.encode({"kind": "chat.request", "reply": reply, "body": body})


async def refusals_for(stack: Stack, user: str, act) -> list[str]:
    """What the server refused while ``act(nc)`` ran on a connection as ``user``."""
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc))

    nc = await stack.connect(user, error_cb=on_error)
    try:
        await act(nc)
        await nc.flush()
        await asyncio.sleep(0.3)  # the server's -ERR comes after the flush's PONG
    finally:
        await nc.close()
    return refused


async def test_a_service_cannot_publish_to_stages_or_events(stack: Stack) -> None:
    before = stack.mock_stats()["requests"]

    async def act(nc: nats.aio.client.Client) -> None:
        inbox = nc.new_inbox()
        await nc.publish(subjects.STAGE_CALL, chat(inbox), headers={"Authorization": f"Bearer {DEMO_KEY}"})
        await nc.publish(subjects.events("provider"), b"forged events")
        await nc.publish(subjects.CONTROL_CANCEL, b"forged cancel")

    refused = await refusals_for(stack, "svc-demo", act)
    for subject in (subjects.STAGE_CALL, subjects.events("provider"), subjects.CONTROL_CANCEL):
        assert any("permissions violation for publish" in r.lower() and subject in r for r in refused), refused
    await asyncio.sleep(0.5)
    assert stack.mock_stats()["requests"] == before  # nothing reached the upstream


async def test_a_service_reads_only_its_own_inbox(stack: Stack) -> None:
    async def act(nc: nats.aio.client.Client) -> None:
        await nc.subscribe("_INBOX.>")
        await nc.subscribe(f"{subjects.PREFIX}.>")

    refused = await refusals_for(stack, "svc-demo", act)
    assert sum("permissions violation for subscription" in r.lower() for r in refused) == 2, refused


async def test_the_service_path_works_with_the_services_credentials(stack: Stack) -> None:
    nc = await stack.connect("svc-demo")
    try:
        inbox = nc.new_inbox()
        assert inbox.startswith("_INBOX.svc.demo.")
        sub = await nc.subscribe(inbox)
        await nc.publish(subjects.IN_CHAT, chat(inbox), headers={"Authorization": f"Bearer {DEMO_KEY}"})
        reply = msgspec.msgpack.decode((await sub.next_msg(timeout=10)).data)
        assert reply["kind"] == "chat.final" and reply["usage"]["completion_tokens"] == 2
    finally:
        await nc.close()


@pytest.mark.parametrize("login", [{}, {"user": "svc-demo", "pass": "guessed"}, {"user": "admin", "pass": ""}])
def test_no_valid_credentials_no_connection(stack: Stack, login: dict) -> None:
    # The NATS protocol by hand: INFO, then CONNECT and PING; the server's answer is all we want.
    host, port = stack.nats_url.removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        assert sock.recv(4096).startswith(b"INFO ")
        sock.sendall(b"CONNECT " + json.dumps({"verbose": False, **login}).encode() + b"\r\nPING\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"-ERR 'Authorization Violation'"), answer


def test_credentials_files_are_private(stack: Stack) -> None:
    folder = stack.home / "creds"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.glob("*.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


async def test_nats_user_create_gives_a_new_service_a_working_login(stack: Stack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.cli", "nats-user", "create", "billing", "--home", str(stack.home),
         "--nats", stack.nats_url],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert "took them" in done.stdout  # the running server reloaded its users
    path = credentials.path_of(stack.home, "svc-billing")
    await asyncio.sleep(0.5)
    nc = await nats.connect(stack.nats_url, **process.auth_options(str(path)))
    try:
        inbox = nc.new_inbox()
        assert inbox.startswith("_INBOX.svc.billing.")
        sub = await nc.subscribe(inbox)
        await nc.publish(subjects.IN_CHAT, chat(inbox), headers={"Authorization": f"Bearer {DEMO_KEY}"})
        assert msgspec.msgpack.decode((await sub.next_msg(timeout=10)).data)["kind"] == "chat.final"
    finally:
        await nc.close()
    # The gateway itself kept serving through the reload.
    resp = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "demo-model", "messages": [{"role": "user", "content": "still here?"}]},
        headers={"authorization": f"Bearer {DEMO_KEY}"},
        timeout=20,
    )
    assert resp.status_code == 200


async def test_a_pipeline_may_what_its_stages_may_under_its_own_name_only(stack: Stack) -> None:
    """The process hosting policy, routing and the provider: it serves their
    subjects, but writes events only under its own name and cannot speak as
    the ingress (resend requests with their reservations) or cancel calls."""

    async def act(nc: nats.aio.client.Client) -> None:
        for subject in (subjects.STAGE_ROUTE, subjects.STAGE_CALL, subjects.IN_CHAT):
            await nc.subscribe(subject, queue="probe")
        await nc.publish(subjects.events("provider"), b"forged events")
        await nc.publish(subjects.FROM_INGRESS, b"forged request")
        await nc.publish(subjects.CONTROL_CANCEL, b"forged cancel")

    refused = await refusals_for(stack, "pipeline", act)
    assert not any("subscription" in r.lower() for r in refused), refused
    for subject in (subjects.events("provider"), subjects.FROM_INGRESS, subjects.CONTROL_CANCEL):
        assert any("permissions violation for publish" in r.lower() and subject in r for r in refused), refused


class JetStreamState(msgspec.Struct):
    """What a purge or delete on JetStream would take away, seen as ``admin``."""

    events: int
    key_revision: int
    sink_consumer_created: object


async def jetstream_state(stack: Stack) -> JetStreamState:
    nc = await stack.connect("admin")
    try:
        js = nc.jetstream()
        events = (await js.stream_info(subjects.EVENTS_STREAM)).state.messages
        key = await (await js.key_value(subjects.KV_KEYS)).get("demo")
        consumer = await js.consumer_info(subjects.EVENTS_STREAM, subjects.SINK_DURABLE)
    finally:
        await nc.close()
    return JetStreamState(events, key.revision or 0, consumer.created)


def kv_delete_and_purge(bucket: str, key: str) -> list[tuple[str, dict[str, str]]]:
    # How nats-py deletes and purges one key: a publish to the key's subject
    # with a header the server's permissions cannot see.
    subject = f"$KV.{bucket}.{key}"
    return [(subject, {"KV-Operation": "DEL"}), (subject, {"KV-Operation": "PURGE", "Nats-Rollup": "sub"})]


@pytest.mark.parametrize("role", ["ingress", "policy", "redact", "route", "cache", "provider", "sink", "pipeline"])
async def test_no_process_role_may_purge_or_delete_on_jetstream(stack: Stack, role: str) -> None:
    """A compromised stage cannot empty the events stream, delete API keys,
    drop a stream or the sink's consumer: the server refuses each, and the
    data is still there afterwards. (The ingress writes API keys for the
    admin API, deletes included: it is refused the bucket's purge instead.)"""
    before = await jetstream_state(stack)
    if before.events == 0:  # this test alone: make some events to keep
        resp = httpx.post(
            f"{stack.base_url}/chat/completions",
            json={"model": "demo-model", "messages": [{"role": "user", "content": "leave a trace"}]},
            headers={"authorization": f"Bearer {DEMO_KEY}"},
            timeout=20,
        )
        assert resp.status_code == 200
        for _ in range(50):
            if (before := await jetstream_state(stack)).events:
                break
            await asyncio.sleep(0.1)
    assert before.events > 0
    keys_stream = f"KV_{subjects.KV_KEYS}"
    probes: list[tuple[str, dict[str, str]]] = [
        (f"$JS.API.STREAM.PURGE.{subjects.EVENTS_STREAM}", {}),
        (f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}", {}),
        (f"$JS.API.STREAM.MSG.DELETE.{subjects.EVENTS_STREAM}", {}),
        (f"$JS.API.CONSUMER.DELETE.{subjects.EVENTS_STREAM}.{subjects.SINK_DURABLE}", {}),
        (f"$JS.API.CONSUMER.DELETE.{subjects.JOBS_STREAM}.{subjects.jobs_consumer('demo')}", {}),
        (f"$JS.API.STREAM.PURGE.{keys_stream}", {}),
        (f"$JS.API.STREAM.DELETE.{keys_stream}", {}),
    ]
    if role != "ingress":
        probes += kv_delete_and_purge(subjects.KV_KEYS, "demo")

    async def act(nc: nats.aio.client.Client) -> None:
        for subject, headers in probes:
            await nc.publish(subject, b"{}", reply=nc.new_inbox(), headers=headers or None)

    refused = await refusals_for(stack, role, act)
    said = [r.lower() for r in refused]  # nats-py hands the server's -ERR on in lower case
    for subject in dict.fromkeys(s for s, _ in probes):
        assert any(f'permissions violation for publish to "{subject.lower()}"' in r for r in said), (subject, said)
    after = await jetstream_state(stack)
    assert after.events >= before.events  # nothing purged (events only come)
    assert after.key_revision == before.key_revision  # the key neither deleted nor purged
    assert after.sink_consumer_created == before.sink_consumer_created  # the same consumer, never deleted


@pytest.mark.xfail(
    strict=True,
    reason="nats-server 2.15 delivers a push consumer's messages onto whatever subject its creator names, "
    "without checking that the creator may publish there (nats-io/nats-server#8274)",
)
async def test_a_consumer_cannot_deliver_where_its_maker_may_not_publish(stack: Stack) -> None:
    """What subject permissions cannot hold: the cache writes its stream and
    makes a consumer on it (its watch), and a consumer's deliver subject is
    in the request's body, not its subject. So a compromised cache could have
    the server deliver what it wrote onto a subject it may not publish to.
    Fails (as expected) until the server checks the deliver subject."""
    probe = f"{subjects.PREFIX}.probe.{nats.nuid.NUID().next().decode()}"
    key = f"probe-{nats.nuid.NUID().next().decode()}"
    admin = await stack.connect("admin")
    cache = await stack.connect("cache")
    try:
        sub = await admin.subscribe(probe)
        await admin.flush()
        await cache.request(f"$KV.{subjects.KV_CACHE}.{key}", b"forged", headers={"Nats-TTL": "10s"}, timeout=5)
        config = {
            "deliver_subject": probe,
            "filter_subject": f"$KV.{subjects.KV_CACHE}.{key}",
            "ack_policy": "none",
            "inactive_threshold": 5_000_000_000,
        }
        stream = f"KV_{subjects.KV_CACHE}"
        request = json.dumps({"stream_name": stream, "config": config}).encode()
        await cache.request(f"$JS.API.CONSUMER.CREATE.{stream}", request, timeout=5)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=1.0)
    finally:
        await cache.close()
        await admin.close()


# --- the MCP gateway's buckets and subject --------------------------------------

MCP_BUCKETS = (subjects.KV_MCP_SERVERS, subjects.KV_MCP_CATALOG, subjects.KV_MCP_SESSIONS)
# Who may write which: the admin API (servers) and the ingress's sessions;
# the provider stage keeps catalogs. Nobody else.
MCP_WRITERS = {
    "ingress": {subjects.KV_MCP_SERVERS, subjects.KV_MCP_SESSIONS},
    "provider": {subjects.KV_MCP_CATALOG},
    "pipeline": {subjects.KV_MCP_CATALOG},
}
# Who keeps a watched copy: every stage an MCP call passes that reads them.
MCP_FOLLOWERS = {"ingress", "policy", "route", "provider", "pipeline"}
USERS = ["ingress", "policy", "redact", "route", "cache", "provider", "sink", "pipeline", "svc-demo"]


@pytest.mark.parametrize("user", USERS)
async def test_each_mcp_bucket_is_written_only_by_its_roles(stack: Stack, user: str) -> None:
    """A delete marker on a key no one uses: the server's permissions see
    only the subject (a put's, too), and a marker changes no record."""
    probe = f"probe-{nats.nuid.NUID().next().decode()}"
    acked: list[str] = []

    async def on_ack(msg: nats.aio.msg.Msg) -> None:
        acked.append(msg.data.decode())

    async def act(nc: nats.aio.client.Client) -> None:
        inbox = nc.new_inbox()
        await nc.subscribe(inbox, cb=on_ack)
        for bucket in MCP_BUCKETS:
            await nc.publish(f"$KV.{bucket}.{probe}", b"", reply=inbox, headers={"KV-Operation": "DEL"})

    refused = [r.lower() for r in await refusals_for(stack, user, act)]
    may = MCP_WRITERS.get(user, set())
    for bucket in MCP_BUCKETS:
        said = any(f'permissions violation for publish to "$kv.{bucket}.{probe.lower()}"' in r for r in refused)
        assert said == (bucket not in may), (user, bucket, refused)
    # Each write allowed reached its stream (the stream's acknowledgement came back).
    assert len([a for a in acked if '"stream"' in a]) == len(may), acked


@pytest.mark.parametrize("user", USERS)
async def test_the_mcp_records_are_followed_by_the_stages_that_read_them(stack: Stack, user: str) -> None:
    nc = await stack.connect(user)
    js = nc.jetstream()

    async def refused(stream: str) -> None:
        # A request the server may not pass on is never answered: it times out.
        with pytest.raises((nats.errors.Error, TimeoutError)):
            await asyncio.wait_for(js.stream_info(stream), 2)

    try:
        looks = []
        for bucket, decode in ((subjects.KV_MCP_SERVERS, decode_server), (subjects.KV_MCP_CATALOG, decode_catalog)):
            mirror = KvMirror(bucket, decode)
            if user in MCP_FOLLOWERS:
                await mirror.start(js, timeout=5)
                if bucket == subjects.KV_MCP_SERVERS:
                    assert "demo-tools" in mirror.items  # the config file's server, seen by this stage
                await mirror.stop()
            else:
                looks.append(refused(f"KV_{bucket}"))
        # Sessions are the ingress's alone: read, written and ended there.
        sessions = f"KV_{subjects.KV_MCP_SESSIONS}"
        if user == "ingress":
            assert (await js.stream_info(sessions)).config.max_age == 24 * 3600
        else:
            looks.append(refused(sessions))
        await asyncio.gather(*looks)  # each refusal waits its 2 s, all at once
    finally:
        await nc.close()


async def test_services_send_mcp_requests_and_only_the_ingress_takes_them(stack: Stack) -> None:
    async def publish(nc: nats.aio.client.Client) -> None:
        await nc.publish(subjects.IN_MCP, b"{}", reply=nc.new_inbox())

    assert await refusals_for(stack, "svc-demo", publish) == []  # a service may ask

    async def take(nc: nats.aio.client.Client) -> None:
        await nc.subscribe(subjects.IN_MCP, queue="mcp-probe")

    assert await refusals_for(stack, "ingress", take) == []
    for user in ("policy", "provider", "pipeline", "svc-demo"):
        refused = await refusals_for(stack, user, take)
        assert any("permissions violation for subscription" in r.lower() for r in refused), (user, refused)


@pytest.mark.parametrize("role", ["ingress", "policy", "route", "provider", "pipeline"])
async def test_no_role_may_purge_or_delete_an_mcp_bucket(stack: Stack, role: str) -> None:
    probes = [f"$JS.API.STREAM.{op}.KV_{b}" for b in MCP_BUCKETS for op in ("PURGE", "DELETE", "UPDATE")]

    async def act(nc: nats.aio.client.Client) -> None:
        for subject in probes:
            await nc.publish(subject, b"{}", reply=nc.new_inbox())

    said = [r.lower() for r in await refusals_for(stack, role, act)]
    for subject in probes:
        assert any(f'permissions violation for publish to "{subject.lower()}"' in r for r in said), (subject, said)
    nc = await stack.connect("admin")
    try:
        servers = await nc.jetstream().key_value(subjects.KV_MCP_SERVERS)
        assert (await servers.get("demo-tools")).value  # still there
    finally:
        await nc.close()
