"""The mock upstream's ASGI app: OpenAI (chat and Responses), Anthropic and
Gemini shapes, streamed or not, plus embeddings, with faults injected by
directives (see ``faults``), an MCP server at /mcp (see ``mcp_server``) and a
plain REST service at /rest/echo/ (see ``rest_service``).

Each request is read by its shape's module into one ``Answer`` plan; the app
owns what is common: directives, latency, errors, and pacing the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import msgspec

from loadtest.mock_upstream import anthropic_shape, gemini_shape, media, openai_shape, responses_shape
from loadtest.mock_upstream.answer import Answer, plan
from loadtest.mock_upstream.batch_shape import MockBatches, is_batch
from loadtest.mock_upstream.faults import Behaviour, apply_directives, holds_tool_result
from loadtest.mock_upstream.mcp_server import MockMcp, upstream_of
from loadtest.mock_upstream.rest_service import RestEcho, RestStats, is_rest
from loadtest.mock_upstream.sse import Frame

_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(dict[str, Any]).decode
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream")]


class Stats(msgspec.Struct):
    requests: int = 0
    # Non-streamed answers sent with 200 (the reference for "the upstream answered").
    completed_requests: int = 0
    active_streams: int = 0
    completed_streams: int = 0
    cancelled_streams: int = 0
    # Requests being answered now, and the most there ever were at once.
    active_requests: int = 0
    peak_active_requests: int = 0
    # Requests per named upstream (paths under "/@<name>/").
    by_upstream: dict[str, int] = {}
    # Requests whose body was byte for byte one the mock had already seen:
    # a gateway that sends one request twice shows here (tests give each
    # request a prompt of its own).
    repeated: int = 0
    # The REST service's own counts (``rest_service``): per method and route, streams cut and completed.
    rest: RestStats = msgspec.field(default_factory=RestStats)


class Shape(msgspec.Struct):
    """How one API family reads a request and renders an answer or an error."""

    read: Callable[[dict[str, Any]], tuple[str, str, int, list[tuple[str, dict]]]]
    # (the answer, the model named); the Responses shape's takes the request instead of the model
    complete: Callable[[Answer, Any], dict[str, Any]]
    error: Callable[[int], dict[str, Any]]


OPENAI = Shape(openai_shape.read, openai_shape.complete, openai_shape.error)
ANTHROPIC = Shape(anthropic_shape.read, anthropic_shape.complete, anthropic_shape.error)
GEMINI = Shape(gemini_shape.read, gemini_shape.complete, gemini_shape.error)
RESPONSES = Shape(responses_shape.read, responses_shape.complete, responses_shape.error)


# Request bodies (and answers' usage) the mock keeps for GET /mock/requests (/mock/usage).
RECENT = 200
SEEN_MAX = 1_000_000


class MockUpstream:
    def __init__(self, defaults: Behaviour | None = None, mcp_token: str | None = None) -> None:
        """``mcp_token``: the bearer token /mcp requires (default: $MOCK_MCP_TOKEN; "" or none: open)."""
        self.defaults = defaults or Behaviour()
        self.mcp = MockMcp((mcp_token if mcp_token is not None else os.environ.get("MOCK_MCP_TOKEN")) or None)
        self.stats = Stats()
        # Digests of the bodies seen (bounded: forgotten all at once past SEEN_MAX).
        self._seen: set[bytes] = set()
        # The last request body, as it arrived (GET /mock/last-request), and
        # the last RECENT ones (GET /mock/requests?last=N, newest first): what
        # a provider would have seen.
        self.last_request = b"{}"
        # Its headers (GET /mock/last-headers, an object: the last of a repeated name).
        self.last_headers: list[tuple[bytes, bytes]] = []
        self.recent: deque[bytes] = deque(maxlen=RECENT)
        # The tokens counted for each answer made, in the order made (GET /mock/usage?last=N,
        # newest first): {"prompt_tokens", "completion_tokens"}, as its usage says them, or
        # null for an answer sent without usage. What a gateway's rows should hold.
        self.usages: deque[bytes] = deque(maxlen=RECENT)
        # One mock plays several upstreams: "/@a/v1/..." is upstream "a",
        # whose own behaviour (e.g. failing with 500) is set over HTTP.
        self.upstreams: dict[str, Behaviour] = {}
        self.rest = RestEcho(self.stats.rest)
        # The provider batch APIs (``batch_shape``): files and batches in memory, counted apart from requests.
        self.batches = MockBatches(self)

    def _newest(self, kept: deque[bytes], scope: dict) -> bytes:
        query = parse_qs(scope.get("query_string", b"").decode())
        try:
            n = max(0, min(RECENT, int(query.get("last", ["10"])[0])))
        except ValueError:
            n = 10
        newest = list(kept)[::-1][:n]
        return b"[" + b",".join(newest) + b"]"

    def _counted(self, b: Behaviour, prompt_tokens: int, completion_tokens: int) -> None:
        counted = None if b.no_usage else {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        self.usages.append(_json.encode(counted))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/mcp" or (path.startswith("/@") and path.endswith("/mcp") and path.count("/") == 2):
            return await self._mcp(path, scope, receive, send)
        if path.startswith("/mock/mcp/"):
            return await self._mcp_control(scope["method"], path.removeprefix("/mock/mcp/"), receive, send)
        if path == "/mock/stats":
            if scope["method"] == "DELETE":  # start measuring the peak afresh
                self.stats.peak_active_requests = self.stats.active_requests
            return await self._send(send, 200, _json.encode(self.stats))
        if path == "/mock/last-request":
            return await self._send(send, 200, self.last_request)
        if path == "/mock/last-headers":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.last_headers}
            return await self._send(send, 200, _json.encode(headers))
        if path == "/mock/requests":
            return await self._send(send, 200, self._newest(self.recent, scope))
        if path == "/mock/usage":
            return await self._send(send, 200, self._newest(self.usages, scope))
        if path == "/mock/batches":
            return await self.batches.control(scope, receive, send)
        if path.startswith("/mock/upstreams/"):
            return await self._set_upstream(scope["method"], path.removeprefix("/mock/upstreams/"), receive, send)
        name, _, under = path[2:].partition("/") if path.startswith("/@") else ("", "", path[1:])
        if is_rest("/" + under):
            return await self._rest(name, "/" + under, scope, receive, send)
        if is_batch("/" + under):  # GET and DELETE too, before the chat routes' POST-only door
            return await self.batches.handle(name, "/" + under, scope, receive, send)
        if scope["method"] != "POST":
            return await self._send(send, 404, _json.encode(openai_shape.error(404)))
        raw = await _read_body(receive)
        # Images, audio, moderation and rerank: each shape reads its own body (multipart too).
        media_shape = media.shape_for("/" + under)
        req: dict[str, Any] = {}
        if media_shape is None:
            try:
                req = _decode(raw)
            except msgspec.DecodeError:
                return await self._send(send, 400, _json.encode(openai_shape.error(400)))
        self.stats.requests += 1
        self._count_repeat(raw)
        self.last_request = raw
        self.last_headers = scope["headers"]
        self.recent.append(raw)
        base = self.defaults
        if path.startswith("/@"):
            name, _, rest = path[2:].partition("/")
            path = "/" + rest
            base = self.upstreams.get(name, self.defaults)
            self.stats.by_upstream[name] = self.stats.by_upstream.get(name, 0) + 1
        stats = self.stats
        stats.active_requests += 1
        stats.peak_active_requests = max(stats.peak_active_requests, stats.active_requests)
        try:
            if media_shape is not None:
                await media_shape.handle(self, base, path, scope, raw, send)
            else:
                await self._route(path, base, req, receive, send)
        finally:
            stats.active_requests -= 1

    async def _lifespan(self, receive: Any, send: Any) -> None:
        """The MCP session manager runs from startup to shutdown."""
        await receive()  # lifespan.startup
        started = False
        try:
            async with self.mcp.running():
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
        except Exception as exc:  # uvicorn reports it (and stops, at startup)
            await send({"type": f"lifespan.{'shutdown' if started else 'startup'}.failed", "message": repr(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def _mcp(self, path: str, scope: dict, receive: Any, send: Any) -> None:
        """/mcp, or "/@<name>/mcp": one instance of the server that PUT
        /mock/upstreams/<name> can make slow, hang or fail (its status, as a
        whole HTTP answer), e.g. to take one instance of several down."""
        name = upstream_of(path)
        b = self.upstreams.get(name, self.defaults) if name is not None else self.defaults
        if b.hang:
            await asyncio.Event().wait()
        if b.latency_ms:
            await asyncio.sleep(b.latency_ms / 1000)
        if b.status != 200:
            error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": f"mock status {b.status}"}}
            return await self._send(send, b.status, _json.encode(error))
        await self.mcp.handle(scope, receive, send)

    async def _rest(self, name: str, path: str, scope: dict, receive: Any, send: Any) -> None:
        """The REST service; a named instance ("/@<name>/rest/echo/...") behaves
        as PUT /mock/upstreams/<name> set: hangs, waits, or answers its status."""
        b = self.defaults
        if name:
            b = self.upstreams.get(name, self.defaults)
            self.stats.by_upstream[name] = self.stats.by_upstream.get(name, 0) + 1
        if b.hang:
            await asyncio.Event().wait()
        if b.latency_ms:
            await asyncio.sleep(b.latency_ms / 1000)
        if b.status != 200:
            await _read_body(receive)
            return await self._send(send, b.status, _json.encode({"status": b.status}))
        await self.rest.handle(path, scope, receive, send)

    async def _mcp_control(self, method: str, what: str, receive: Any, send: Any) -> None:
        """GET stats, POST reset; PUT token {"token": "t"} (null: none) sets the bearer token /mcp requires."""
        if what == "stats" and method == "GET":
            return await self._send(send, 200, _json.encode(self.mcp.stats))
        if what == "reset" and method == "POST":
            self.mcp.reset()
            return await self._send(send, 200, b"{}")
        if what == "token" and method == "PUT":
            try:
                token = _decode(await _read_body(receive)).get("token")
            except msgspec.DecodeError:
                token = 0
            if token is not None and (not isinstance(token, str) or not token):
                return await self._send(send, 400, _json.encode(openai_shape.error(400)))
            self.mcp.token = token
            return await self._send(send, 200, b"{}")
        await self._send(send, 404, _json.encode(openai_shape.error(404)))

    def _count_repeat(self, raw: bytes) -> None:
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        if digest in self._seen:
            self.stats.repeated += 1
            return
        if len(self._seen) >= SEEN_MAX:
            self._seen.clear()
        self._seen.add(digest)

    async def _route(self, path: str, base: Behaviour, req: dict, receive: Any, send: Any) -> None:
        if path.endswith("/chat/completions"):
            await self._chat(OPENAI, base, req, req.get("model", "mock"), bool(req.get("stream")), receive, send)
        elif path.endswith("/responses"):  # /v1/responses; Azure's /openai/responses and /openai/v1/responses
            await self._responses(base, req, receive, send)
        elif path.endswith("/v1/messages"):
            await self._chat(ANTHROPIC, base, req, req.get("model", "mock"), bool(req.get("stream")), receive, send)
        elif path.endswith("/v1/messages/count_tokens"):
            await self._count_tokens(base, req, send)
        elif ":generateContent" in path or ":streamGenerateContent" in path:
            refused = gemini_shape.refuse(req)
            if refused is not None:
                return await self._send(send, 400, _json.encode(refused))
            model = path.rsplit("/", 1)[-1].split(":", 1)[0]
            await self._chat(GEMINI, base, req, model, ":streamGenerateContent" in path, receive, send)
        elif path.endswith("/embeddings"):
            await self._embed(OPENAI, base, openai_shape.embeddings, req, send)
        elif path.endswith(":batchEmbedContents"):
            await self._embed(GEMINI, base, gemini_shape.embeddings, req, send)
        else:
            await self._send(send, 404, _json.encode(openai_shape.error(404)))

    async def _set_upstream(self, method: str, name: str, receive: Any, send: Any) -> None:
        """PUT {"directives": "[mock:status=500]"}: upstream ``name`` behaves so
        until DELETE (directives in a prompt still apply on top)."""
        if method == "DELETE":
            self.upstreams.pop(name, None)
        elif method == "PUT":
            try:
                directives = str(_decode(await _read_body(receive)).get("directives", ""))
            except msgspec.DecodeError:
                return await self._send(send, 400, _json.encode(openai_shape.error(400)))
            self.upstreams[name] = apply_directives(self.defaults, directives)
        else:
            return await self._send(send, 404, _json.encode(openai_shape.error(404)))
        await self._send(send, 200, b"{}")

    async def _send(self, send: Any, status: int, body: bytes, headers: list | None = None) -> None:
        headers = [*(headers or JSON), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _fault(self, shape: Shape, b: Behaviour, send: Any) -> bool:
        """Apply latency and errors; True when the request was answered with an error."""
        if b.hang:
            await asyncio.Event().wait()
        if b.latency_ms:
            await asyncio.sleep(b.latency_ms / 1000)
        if b.status == 200:
            return False
        headers = JSON + ([(b"retry-after", b"2")] if b.status == 429 else [])
        await self._send(send, b.status, _json.encode(shape.error(b.status)), headers)
        return True

    async def _chat(
        self, shape: Shape, base: Behaviour, req: dict, model: str, streamed: bool, receive: Any, send: Any
    ) -> None:
        try:
            prompt, last, count, tools = shape.read(req)
        except (KeyError, TypeError, AttributeError):
            return await self._send(send, 400, _json.encode(shape.error(400)))
        b = apply_directives(base, prompt)
        if b.tool_once:
            b.tool = not holds_tool_result(_json.encode(req))
        if await self._fault(shape, b, send):
            return
        answer = plan(prompt, last, count, tools, b, *_structured(req))
        if shape is OPENAI and isinstance(req.get("n"), int) and 1 < req["n"] <= 8:
            answer.choices = req["n"]
            answer.completion_tokens *= req["n"]
        self._counted(b, answer.prompt_tokens, answer.completion_tokens)
        if not streamed:
            await self._send(send, 200, _json.encode(shape.complete(answer, model)))
            self.stats.completed_requests += 1
            return
        if shape is OPENAI:
            want_usage = bool((req.get("stream_options") or {}).get("include_usage"))
            frames = openai_shape.stream(answer, model, want_usage)
        elif shape is ANTHROPIC:
            frames = anthropic_shape.stream(answer, model)
        else:
            frames = gemini_shape.stream(answer, model)
        await self._stream(receive, send, frames, b)

    async def _count_tokens(self, base: Behaviour, req: dict, send: Any) -> None:
        """Anthropic's token count: what a message of this request would report as its input tokens."""
        try:
            prompt, _, messages, _ = anthropic_shape.read(req)
        except (KeyError, TypeError, AttributeError):
            return await self._send(send, 400, _json.encode(anthropic_shape.error(400)))
        if await self._fault(ANTHROPIC, apply_directives(base, prompt), send):
            return
        await self._send(send, 200, _json.encode(anthropic_shape.count(prompt, messages)))
        self.stats.completed_requests += 1

    async def _responses(self, base: Behaviour, req: dict, receive: Any, send: Any) -> None:
        refused = responses_shape.refuse(req)
        if refused is not None:
            return await self._send(send, 400, _json.encode(refused))
        try:
            prompt, last, count, tools = responses_shape.read(req)
        except (KeyError, TypeError, AttributeError):
            return await self._send(send, 400, _json.encode(responses_shape.error(400)))
        b = apply_directives(base, prompt)
        if b.tool_once:
            b.tool = not holds_tool_result(_json.encode(req))
        if await self._fault(RESPONSES, b, send):
            return
        answer = responses_shape.with_arguments(
            plan(prompt, last, count, tools, b, *responses_shape.structured(req)), tools, last
        )
        self._counted(b, *responses_shape.counted(answer, req))
        if not req.get("stream"):
            await self._send(send, 200, _json.encode(responses_shape.complete(answer, req)))
            self.stats.completed_requests += 1
            return
        await self._stream(receive, send, responses_shape.stream(answer, req), b)

    async def _embed(self, shape: Shape, base: Behaviour, render: Callable[[dict], dict], req: dict, send: Any) -> None:
        b = apply_directives(base, _json.encode(req).decode())
        if await self._fault(shape, b, send):
            return
        try:
            body = render(req)
        except (KeyError, TypeError, AttributeError, ValueError):
            return await self._send(send, 400, _json.encode(shape.error(400)))
        await self._send(send, 200, _json.encode(body))
        self.stats.completed_requests += 1

    async def _stream(self, receive: Any, send: Any, frames: list[Frame], b: Behaviour) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        self.stats.active_streams += 1
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE})
            words = 0
            # Frames between words (the role, the finish, usage, [DONE]) ride
            # in one write with their neighbours, as a real server's would.
            pending = b""
            for frame in frames:
                pending += frame.data
                if not frame.word or b.burst:
                    continue
                if words == b.cut_after:
                    raise ConnectionAbortedError  # uvicorn drops the connection mid-body
                words += 1
                await send({"type": "http.response.body", "body": pending, "more_body": True})
                pending = b""
                if b.chunk_ms:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), b.chunk_ms / 1000)
                if gone.is_set():
                    self.stats.cancelled_streams += 1
                    return
            await send({"type": "http.response.body", "body": pending})
            self.stats.completed_streams += 1
        finally:
            self.stats.active_streams -= 1
            watcher.cancel()


def _structured(req: dict) -> tuple[dict | None, bool]:
    """The JSON Schema a request asks its answer to match (OpenAI's
    ``response_format``, Gemini's ``responseJsonSchema``), and whether the
    conversation already holds an answer (a request to repair one)."""
    fmt = req.get("response_format") if isinstance(req.get("response_format"), dict) else {}
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
    config = req.get("generationConfig") if isinstance(req.get("generationConfig"), dict) else {}
    schema = schema or config.get("responseJsonSchema") or config.get("responseSchema")
    turns = req.get("messages") or req.get("contents") or []
    answered = any(isinstance(t, dict) and t.get("role") in ("assistant", "model") for t in turns)
    return (schema if isinstance(schema, dict) else None), answered


async def _read_body(receive: Any) -> bytes:
    raw = b""
    while True:
        msg = await receive()
        raw += msg.get("body", b"")
        if not msg.get("more_body"):
            return raw


def run_mock(host: str, port: int, defaults: Behaviour) -> None:
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
