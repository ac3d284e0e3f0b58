"""What every Sluice process does first: logging, uvloop, connect to NATS."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
READY_PREFIX = "sluice.v1.control.ready."
log = logging.getLogger("sluice")


def setup_logging(name: str) -> None:
    logging.basicConfig(
        level=os.environ.get("SLUICE_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
    )
    # httpx logs every request at INFO: a log line per upstream call is noise
    # at thousands of requests per second, and costs CPU on the hot path.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def nats_url() -> str:
    return os.environ.get("SLUICE_NATS_URL", DEFAULT_NATS_URL)


async def connect(name: str, url: str | None = None) -> Client:
    async def on_error(exc: Exception) -> None:
        log.warning("nats: %r", exc)

    return await nats.connect(
        url or nats_url(),
        name=f"sluice-{name}",
        error_cb=on_error,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        # The request path must not sit behind a slow flusher.
        flusher_queue_size=4096,
    )


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


async def announce_ready(nc: Client, name: str) -> None:
    """Tell the supervisor this process serves (it waits for every stage)."""
    await nc.publish(READY_PREFIX + name, b"")
    await nc.flush()
