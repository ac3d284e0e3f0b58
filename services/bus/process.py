"""What every Sluice process does first: logging, uvloop, connect to NATS,
and tell the supervisor that it serves and that it is alive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats
from nats.aio.client import Client

from schemas import bus, subjects
from schemas.lifecycle import Beat
from services.bus import credentials

T = TypeVar("T")
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
HEARTBEAT_S = 1.0
log = logging.getLogger("sluice")


def setup_logging(name: str) -> None:
    logging.basicConfig(
        level=os.environ.get("SLUICE_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {instance_name(name)} %(levelname)s %(message)s",
    )
    # httpx logs every request at INFO: a log line per upstream call is noise
    # at thousands of requests per second, and costs CPU on the hot path.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def instance_name(role: str) -> str:
    """This process's own name (``provider-1``); the supervisor sets it, a
    process started by hand goes by its role."""
    return os.environ.get("SLUICE_PROCESS_NAME", role)


def die_with_parent() -> None:
    """For ``Popen(preexec_fn=...)``: on Linux the child gets SIGTERM when its
    parent (the supervisor) dies, even by SIGKILL, so nothing is left behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def nats_url() -> str:
    return os.environ.get("SLUICE_NATS_URL", DEFAULT_NATS_URL)


def servers(url: str) -> list[str]:
    """The URLs of a comma-separated list (a cluster's nodes): nats-py fails
    over among them, and learns further nodes from the cluster itself."""
    return [u.strip() for u in url.split(",") if u.strip()]


def auth_options(creds_path: str | None = None) -> dict[str, str]:
    """nats-py connect options for the credentials file named (or in
    SLUICE_NATS_CREDS): user, password and the inbox prefix the user may read."""
    path = creds_path or os.environ.get("SLUICE_NATS_CREDS")
    if not path:
        return {}
    creds = credentials.load(path)
    return {"user": creds.user, "password": creds.password, "inbox_prefix": creds.inbox_prefix}


async def connect(name: str, url: str | None = None, creds_path: str | None = None) -> Client:
    async def on_error(exc: Exception) -> None:
        log.warning("nats: %r", exc)

    return await nats.connect(
        servers(url or nats_url()),
        name=f"sluice-{name}",
        error_cb=on_error,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        # The request path must not sit behind a slow flusher.
        flusher_queue_size=4096,
        **auth_options(creds_path),
    )


class GatewayNotRunning(Exception):
    """A command-line tool found no Sluice NATS to talk to."""


async def connect_tool(url: str, creds_path: str | None = None) -> Client:
    """A connection for a command-line tool: one try, a short wait, and a
    plain message when nothing answers, not a retry loop."""

    async def quiet(exc: Exception) -> None:  # the one message below says it all
        pass

    try:
        return await nats.connect(
            servers(url),
            name="sluice-cli",
            allow_reconnect=False,
            connect_timeout=2,
            # nats-py counts the first connection among these; 0 would mean "for ever".
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            error_cb=quiet,
            **auth_options(creds_path),
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise GatewayNotRunning(f"no Sluice gateway answers at {url} ({exc}); is `sluice up` running?") from None


def run_tool(url: str, creds_path: str | None, work: Callable[[Client], Awaitable[T]]) -> T:
    """One command-line tool's work over one connection, closed afterwards."""

    async def session() -> T:
        nc = await connect_tool(url, creds_path)
        try:
            return await work(nc)
        finally:
            await nc.close()

    return asyncio.run(session())


def run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` on uvloop; SIGTERM/SIGINT set ``stop``."""
    import uvloop

    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    uvloop.run(wrapper())


async def jetstream_ready(op: Callable[[], Awaitable[T]], what: str, within_s: float = 20.0) -> T:
    """``op`` (a JetStream API call a process makes as it starts), tried again
    while JetStream does not answer yet: a cluster that just started, or
    that is busy making its replicated streams, may take seconds to, and a
    stage that gave up would fail the whole start."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            return await op()
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("%s: JetStream did not answer (%r); trying again", what, exc)
            await asyncio.sleep(0.5)


async def announce_ready(nc: Client, name: str) -> None:
    """Tell the supervisor this process serves (start-up waits for every one)."""
    await nc.publish(f"{subjects.CONTROL_READY}.{name}", b"")
    await nc.flush()


async def written(nc: Client) -> None:
    """Wait until what was published so far is written to the connection's
    socket (not until the server has it: that would be a round trip). nats-py
    writes from a task of its own, so without this, bytes published before
    an upstream call may leave after it."""
    # nats-py has no public call for this; ``flush`` would PING the server.
    # Writing the pending bytes ourselves, at once, was measured (make bench,
    # 64 connections): nats-server's CPU per request went from ~75 to ~140 µs,
    # each request's messages in a write of their own; through the flusher
    # task, what other requests published meanwhile goes in the same write.
    await nc._flush_pending(force_flush=True)


class Heartbeat:
    """Publishes ``<name>`` alive once a second from the process's event loop:
    a process that is stopped, deadlocked or stuck in a loop stops beating,
    and the supervisor replaces it. The beat (``Beat``) names the stages the
    process serves, for the ingress's readiness check, and the requests it
    holds, for ``sluice status``."""

    def __init__(
        self, nc: Client, name: str, serves: tuple[str, ...] = (), in_flight: Callable[[], int] = lambda: 0
    ) -> None:
        self._nc = nc
        self._subject = f"{subjects.CONTROL_HEARTBEAT}.{name}"
        self._serves = list(serves)
        self._in_flight = in_flight
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat(), name="heartbeat")

    async def _beat(self) -> None:
        while True:
            beat = Beat(serves=self._serves, in_flight=self._in_flight(), pid=os.getpid())
            with contextlib.suppress(nats.errors.Error):  # reconnecting: the next beat will do
                await self._nc.publish(self._subject, bus.encode(beat))
            await asyncio.sleep(HEARTBEAT_S)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
