"""The mock upstream's ASGI app: OpenAI chat completions, streamed or not."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec

from services.mock_upstream.faults import Behaviour, apply_directives

_WORDS = ("Sluice", "routes", "this", "answer", "through", "a", "mock", "upstream", "for", "testing", "only.")
_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(dict[str, Any]).decode
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream")]


class Stats(msgspec.Struct):
    requests: int = 0
    active_streams: int = 0
    completed_streams: int = 0
    cancelled_streams: int = 0


def _text_of(messages: list[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts += [p.get("text", "") for p in c if isinstance(p, dict)]
    return "\n".join(parts)


def answer_words(n: int) -> list[str]:
    return [(" " if i else "") + _WORDS[i % len(_WORDS)] for i in range(n)]


def _echo_words(messages: list[dict[str, Any]]) -> list[str]:
    words = _text_of(messages[-1:]).split(" ")
    return [(" " if i else "") + w for i, w in enumerate(words)]


class MockUpstream:
    def __init__(self, defaults: Behaviour | None = None) -> None:
        self.defaults = defaults or Behaviour()
        self.stats = Stats()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/mock/stats":
            return await self._send(send, 200, _json.encode(self.stats))
        if path.endswith("/chat/completions") and scope["method"] == "POST":
            return await self._chat(receive, send)
        await self._send(send, 404, b'{"error":{"message":"not found","type":"invalid_request_error"}}')

    async def _send(self, send: Any, status: int, body: bytes, headers: list | None = None) -> None:
        headers = [*(headers or JSON), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _chat(self, receive: Any, send: Any) -> None:
        self.stats.requests += 1
        raw = b""
        while True:
            msg = await receive()
            raw += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        try:
            req = _decode(raw)
            messages = req["messages"]
        except (msgspec.DecodeError, KeyError, TypeError):
            return await self._send(send, 400, b'{"error":{"message":"bad request","type":"invalid_request_error"}}')
        prompt = _text_of(messages)
        b = apply_directives(self.defaults, prompt)
        if b.hang:
            await asyncio.Event().wait()
        if b.latency_ms:
            await asyncio.sleep(b.latency_ms / 1000)
        if b.status != 200:
            err = {"error": {"message": f"mock error {b.status}", "type": "mock_error", "code": f"mock_{b.status}"}}
            headers = JSON + ([(b"retry-after", b"2")] if b.status == 429 else [])
            return await self._send(send, b.status, _json.encode(err), headers)
        words = _echo_words(messages) if b.echo else answer_words(b.chunks)
        usage = {
            "prompt_tokens": len(prompt.split()) + 4 * len(messages),
            "completion_tokens": len(words),
            "total_tokens": len(prompt.split()) + 4 * len(messages) + len(words),
        }
        model = req.get("model", "mock")
        common = {"id": f"chatcmpl-mock-{time.time_ns()}", "created": int(time.time()), "model": model}
        if not req.get("stream"):
            body: dict[str, Any] = {
                **common,
                "object": "chat.completion",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "".join(words)}, "finish_reason": "stop"}
                ],
            }
            if not b.no_usage:
                body["usage"] = usage
            return await self._send(send, 200, _json.encode(body))
        want_usage = bool((req.get("stream_options") or {}).get("include_usage")) and not b.no_usage
        await self._stream(receive, send, common, words, b, usage if want_usage else None)

    async def _stream(
        self, receive: Any, send: Any, common: dict, words: list[str], b: Behaviour, usage: dict | None
    ) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        self.stats.active_streams += 1
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE})
            for i, word in enumerate(words):
                if i == b.cut_after:
                    raise ConnectionAbortedError  # uvicorn drops the connection mid-body
                delta: dict[str, Any] = {"content": word}
                if i == 0:
                    delta["role"] = "assistant"
                chunk = {
                    **common,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
                await send(
                    {"type": "http.response.body", "body": b"data: " + _json.encode(chunk) + b"\n\n", "more_body": True}
                )
                if b.chunk_ms:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), b.chunk_ms / 1000)
                if gone.is_set():
                    self.stats.cancelled_streams += 1
                    return
            tail = {
                **common,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            out = b"data: " + _json.encode(tail) + b"\n\n"
            if usage is not None:
                out += (
                    b"data: "
                    + _json.encode({**common, "object": "chat.completion.chunk", "choices": [], "usage": usage})
                    + b"\n\n"
                )
            await send({"type": "http.response.body", "body": out + b"data: [DONE]\n\n"})
            self.stats.completed_streams += 1
        finally:
            self.stats.active_streams -= 1
            watcher.cancel()


def serve(host: str, port: int, defaults: Behaviour) -> None:
    import uvicorn

    uvicorn.run(
        MockUpstream(defaults),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )
