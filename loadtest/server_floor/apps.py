"""The smallest app each server interface allows, answering a chat
completion's bytes: what is left of a request's CPU is the server's own.
Run by ``run.sh``."""

from typing import Any

BODY = (
    b'{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}'
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def rsgi(scope: Any, proto: Any) -> None:
    await proto()
    proto.response_bytes(200, [("content-type", "application/json")], BODY)
