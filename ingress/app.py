"""The ASGI app: a bare router in front of the endpoint modules.

Bare ASGI rather than a framework on the chat path: measured here, Starlette
halves requests per second for a 1 KB JSON POST (DESIGN.md §6).
"""

from __future__ import annotations

import logging

from ingress import chat, embeddings, messages, models
from ingress.gateway import Gateway
from ingress.http import Receive, Scope, Send, send_error, send_json
from services.config import GatewaySettings
from services.runtime import process

log = logging.getLogger("sluice.ingress")
_POST_ENDPOINTS = {
    "/v1/chat/completions": chat.chat_completions,
    "/v1/messages": messages.create_message,
    "/v1/embeddings": embeddings.create_embeddings,
}


class IngressApp:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.gw: Gateway | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gw
        assert gw is not None, "lifespan not run"
        path, method = scope["path"].rstrip("/"), scope["method"]
        try:
            endpoint = _POST_ENDPOINTS.get(path)
            if endpoint is not None:
                if method != "POST":
                    return await send_error(send, 405, "invalid_request_error", "method_not_allowed", "Use POST.")
                return await endpoint(gw, scope, receive, send)
            if path == "/v1/models" and method == "GET":
                return await models.list_models(gw, scope, send)
            if path == "/healthz":
                return await send_json(send, 200, {"status": "ok", "nats": gw.nc.is_connected})
            await send_error(
                send, 404, "invalid_request_error", "unknown_url", f"Unknown request URL: {method} {path}."
            )
        except Exception:
            log.exception("unhandled error on %s %s", method, path)
            raise

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.gw = Gateway(await process.connect("ingress"), self.settings)
                    await self.gw.start()
                except Exception as exc:
                    log.exception("ingress start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.gw is not None:
                    await self.gw.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
