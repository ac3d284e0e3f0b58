"""A bare ASGI server on ``asyncio.Protocol`` and httptools, to measure
what uvicorn costs the ingress (issue 29's first lever) before writing a
real one: HTTP/1.1 keep-alive, a request's body read whole, answers with a
length written in one write (head and body together), streamed answers
chunked. It is a measuring tool, not a server to run: no limits, no
timeouts, no pipelining, no WebSocket, no 100-continue.

    python -m loadtest.lean_asgi_server --port PORT   (the ingress's environment, as ``python -m ingress`` has)
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

import httptools
import uvloop

from ingress.app import IngressApp
from ingress.peer import behind_proxies
from services import config as config_mod
from services.bus import process

Message = MutableMapping[str, Any]
App = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class _Request(asyncio.Protocol):
    def __init__(self, app: App, server: tuple[str, int]) -> None:
        self.app, self.server = app, server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.gone = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.gone.done():
            self.gone.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        parsed = httptools.parse_url(self.url)
        assert self.transport is not None
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": self.parser.get_method().decode(),
            "scheme": "http",
            "path": parsed.path.decode("latin-1"),
            "raw_path": parsed.path,
            "query_string": parsed.query or b"",
            "root_path": "",
            "headers": self.headers,
            "client": self.transport.get_extra_info("peername"),
            "server": self.server,
        }
        body = b"".join(self.body)
        keep = self.parser.should_keep_alive()
        self.url, self.headers, self.body = b"", [], []
        asyncio.get_running_loop().create_task(self._answer(scope, body, keep))

    async def _answer(self, scope: Message, body: bytes, keep: bool) -> None:
        transport = self.transport
        assert transport is not None
        sent = False
        head: list[bytes] = []
        chunked = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await self.gone
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal chunked
            if message["type"] == "http.response.start":
                status = message["status"]
                head.append(b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"")))
                named = set()
                for name, value in message.get("headers", []):
                    named.add(name.lower())
                    head.append(b"%s: %s\r\n" % (name, value))
                chunked = b"content-length" not in named
                if chunked:
                    head.append(b"transfer-encoding: chunked\r\n")
                if not keep:
                    head.append(b"connection: close\r\n")
                head.append(b"\r\n")
                return
            data, more = message.get("body", b""), message.get("more_body", False)
            out = [*head] if head else []
            head.clear()
            if chunked:
                if data:
                    out += [b"%x\r\n" % len(data), data, b"\r\n"]
                if not more:
                    out.append(b"0\r\n\r\n")
            elif data:
                out.append(data)
            if out:
                transport.writelines(out)  # the head goes with the first body: one write, not two
            if not more and not keep:
                transport.close()

        await self.app(scope, receive, send)


async def serve(app: App, port: int) -> None:
    queue: asyncio.Queue[Message] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})
    started = asyncio.get_running_loop().create_future()

    async def send(message: Message) -> None:
        if message["type"] == "lifespan.startup.complete" and not started.done():
            started.set_result(None)

    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, queue.get, send))
    await started
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Request(app, ("127.0.0.1", port)), "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()
    lifespan.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.lean_asgi_server")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    process.setup_logging("ingress")
    # As ``python -m ingress`` serves it.
    uvloop.run(serve(behind_proxies(IngressApp(config_mod.settings_from_env())), args.port))


if __name__ == "__main__":
    main()
