"""The mock upstream served by uvicorn in a thread of its own (its own
event loop), on a free loopback port: what a test's client meets is a real
HTTP server, streaming and dropping connections as the mock does."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import uvicorn

from loadtest.mock_upstream.app import MockUpstream
from services.cli.nats_server import free_port


class MockServer:
    def __init__(self, mock: MockUpstream | None = None) -> None:
        self.mock = mock or MockUpstream(mcp_token="")
        self.port = free_port()
        config = uvicorn.Config(self.mock, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the mock did not start"
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/mock/stats").json()

    def rest_calls(self) -> dict[str, int]:
        return self.stats()["rest"]["calls"]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive(), "the mock did not shut down"
