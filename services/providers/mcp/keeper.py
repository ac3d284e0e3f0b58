"""Keeps every registered MCP server's catalog current: what it offers and
which of its instances answer.

A server is listed when the keeper starts, when its record changes, when
it announces a change (``notifications/*/list_changed``) and every
``refresh_s`` (the health check). A catalog is written only when what it
says changed, so a quiet server costs the bucket nothing, and several
provider replicas keeping the same servers write the same content.

When no instance answers, the catalog keeps the tools, prompts and
resources last listed, with no healthy instance and the reason: a server
down for a minute should not make its tools vanish from every client's
list (clients cache tool lists; routing still knows not to expect much).

Nothing here knows of NATS: the stage gives the keeper the servers and the
stored catalogs (its KV mirrors) and how to write and delete a catalog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import msgspec

from schemas.mcp import McpServer, ServerCatalog
from services.providers.mcp import catalog
from services.providers.mcp.pool import McpPool

log = logging.getLogger("sluice.mcp")

REFRESH_S = 30.0

Write = Callable[[ServerCatalog], Awaitable[None]]
Delete = Callable[[str], Awaitable[None]]


class CatalogKeeper:
    def __init__(
        self,
        pool: McpPool,
        servers: Mapping[str, McpServer],
        stored: Mapping[str, ServerCatalog],
        write: Write,
        delete: Delete,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self.pool = pool
        self.servers = servers
        self.stored = stored
        self._write = write
        self._delete = delete
        self.refresh_s = refresh_s
        pool.on_list_changed = self.refresh
        self._running: dict[str, asyncio.Task[None]] = {}
        # Servers asked for again while a listing of theirs ran.
        self._again: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._started = False
        # Listings done, and catalogs written (for tests and status).
        self.listed = 0
        self.written = 0

    def start(self) -> None:
        self._started = True
        for name in list(self.servers):
            self.refresh(name)
        self._ticker = asyncio.create_task(self._tick(), name="mcp-catalog-ticker")

    def server_changed(self, name: str, old: McpServer | None, new: McpServer | None) -> None:
        """A record of the servers' bucket changed (the mirror's callback)."""
        if new is None:
            self.pool.forget(name)
            self._spawn(self._forget(name))
            return
        self.pool.sync(new)
        if self._started:
            self.refresh(name)

    def refresh(self, name: str) -> None:
        """List ``name`` now, or again once the listing under way ends."""
        running = self._running.get(name)
        if running is not None and not running.done():
            self._again.add(name)
            return
        self._running[name] = asyncio.create_task(self._refresh(name), name=f"mcp-catalog-{name}")

    async def stop(self) -> None:
        tasks = [t for t in (self._ticker, *self._running.values(), *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            for name in list(self.servers):
                self.refresh(name)

    async def _refresh(self, name: str) -> None:
        while True:
            self._again.discard(name)
            server = self.servers.get(name)
            if server is None:
                return
            try:
                found = await self.pool.listing(server, time.time_ns() // 1_000_000)
                self.listed += 1
                if self.servers.get(name) is not None:  # not deleted while it was listed
                    await self._keep(self._with_last_known(found))
            except Exception:
                log.exception("MCP server %s: keeping its catalog failed", name)
            if name not in self._again:
                return

    def _with_last_known(self, found: ServerCatalog) -> ServerCatalog:
        last = self.stored.get(found.server)
        if found.healthy or last is None:
            return found
        return msgspec.structs.replace(last, healthy=[], error=found.error, refreshed_at_ms=found.refreshed_at_ms)

    async def _keep(self, found: ServerCatalog) -> None:
        if catalog.same(found, self.stored.get(found.server)):
            return
        await self._write(found)
        self.written += 1
        log.info(
            "MCP server %s: %d tools, %d prompts, %d resources; healthy %s%s",
            found.server,
            len(found.tools),
            len(found.prompts),
            len(found.resources),
            found.healthy,
            f" ({found.error})" if found.error else "",
        )

    async def _forget(self, name: str) -> None:
        running = self._running.pop(name, None)
        if running is not None:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        try:
            await self._delete(name)
        except Exception:
            log.exception("MCP server %s: deleting its catalog failed", name)
        if name in self.servers:  # registered again meanwhile: its listing was cancelled above
            self.refresh(name)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
