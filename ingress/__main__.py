"""``python -m ingress``: serve the ingress with uvicorn (httptools, uvloop)."""

from __future__ import annotations

import argparse
import asyncio
import socket
import time

import uvicorn

from ingress.app import IngressApp
from ingress.peer import behind_proxies
from services import config as config_mod
from services.bus import process


def shared_listener(host: str, port: int) -> socket.socket:
    """A listening socket that other ingress replicas may bind too: the
    kernel spreads new connections across them (SO_REUSEPORT), and when one
    replica stops, the others keep taking the port's connections. Only
    processes of the same user may join a port so bound."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


# On SIGTERM, connections already open are served this long more, each
# answer saying "Connection: close", before uvicorn's own shutdown closes the
# idle ones: a client about to send on a kept-alive connection gets its
# answer rather than a reset, and its next request opens a connection that
# the kernel gives to another replica.
LAME_DUCK_S = 1.0


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: IngressApp) -> None:
        super().__init__(config)
        self.app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            await self.app.serving()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # new connections go to the other replicas now
        for sock in sockets or []:
            sock.close()
        self.app.draining = True
        until = time.monotonic() + min(LAME_DUCK_S, self.config.timeout_graceful_shutdown or 0)
        while self.server_state.connections and time.monotonic() < until and not self.force_exit:
            await asyncio.sleep(0.05)
        await super().shutdown(sockets)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ingress")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    process.setup_logging("ingress")
    settings = config_mod.settings_from_env()
    app = IngressApp(settings)
    config = uvicorn.Config(
        # uvicorn's proxy headers, applied by us: the REST door needs the peer they replace.
        behind_proxies(app),
        proxy_headers=False,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=settings.max_body_bytes,
        lifespan="on",
        access_log=False,
        log_level="warning",
        # SIGTERM: stop accepting, let requests in flight finish (bounded).
        timeout_graceful_shutdown=settings.drain_s,
    )
    DrainingServer(config, app).run(sockets=[shared_listener(args.host, args.port)])


if __name__ == "__main__":
    main()
