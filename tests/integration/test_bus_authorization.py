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
from services.runtime import credentials, process
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
        [sys.executable, "-m", "services.runtime.cli", "nats-user", "create", "billing", "--home", str(stack.home),
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
