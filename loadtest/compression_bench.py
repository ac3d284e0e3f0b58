"""What compressing answers costs and saves (issue 29), in seconds, no servers.

1. ``make bench``'s 21-chunk stream (``nginx_bench.sse_answer()``), one
   message per event through the send wrapper: bytes, CPU per stream, and
   memory per open compressed stream (1,000 held open).
2. Whole answers of 64 B to 64 KB (chat completions of English-like text):
   CPU per answer, bytes saved, CPU per KB saved, and TCP segments of the
   answer with a typical header block, plain and compressed. Below the size
   where compressing first saves a segment, it only costs CPU: that size is
   ``ingress.compression.MIN_BYTES``.
3. Levels: gzip and zstd levels on a 64 KB answer and a 1.6 MB embeddings one.
4. A ~20 MB embeddings answer (700 inputs x 1536 floats, as
   ``tests/e2e/test_large_answers.py``; and the same as base64, the openai
   SDK's default encoding), through ``Compression``'s send as the gateway
   sends it: bytes, CPU and wall time.
5. The cost for a client that asks for nothing (one header scan).

    python -m loadtest.compression_bench
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import random
import struct
import time
import timeit
import zlib
from collections.abc import Callable
from pathlib import Path

import msgspec

from ingress import compression
from ingress.compression import Compression, zstd
from ingress.http import JSON_HEADERS, Message, send_bytes
from loadtest.mock_upstream.answer import vector
from loadtest.nginx_bench import sse_answer

# A TCP segment's payload on Ethernet with timestamps (1500 - 20 - 20 - 12).
MSS = 1448
# The status line and headers of a chat answer as uvicorn sends it (date, server, content-type and -length,
# x-request-id, x-sluice-deployment, -attempts, -cost-pico-usd), without and with a key's six rate-limit headers;
# a compressed one adds content-encoding and vary.
HEADERS_BARE = 265
HEADERS_LIMITED = 465
CODED_HEADERS = len("content-encoding: gzip\r\nvary: accept-encoding\r\n")
SIZES = (64, 128, 256, 512, 1024, 1400, 2048, 4096, 16384, 65536)
WORDS = [w for w in (Path(__file__).parent.parent / "README.md").read_text().split() if w.isalpha()]


def chat_answer(size: int, rng: random.Random) -> bytes:
    answer = {
        "id": "chatcmpl-0123456789abcdef",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 250, "completion_tokens": 21, "total_tokens": 271},
    }
    room = size - len(json.dumps(answer))
    if room < 0:  # smaller than any chat answer: some other small JSON answer
        answer, room = {"object": "text", "content": ""}, size - 30
    text = ""
    while len(text) < room:
        text += rng.choice(WORDS) + " "
    if "choices" in answer:
        answer["choices"][0]["message"]["content"] = text[: max(0, room)]
    else:
        answer["content"] = text[: max(0, room)]
    return json.dumps(answer).encode()


def embeddings_answer(inputs: int, dimensions: int, as_base64: bool) -> bytes:
    data = []
    for i in range(inputs):
        floats = vector(f"text{i}", dimensions)
        value: object = base64.b64encode(struct.pack(f"<{dimensions}f", *floats)).decode() if as_base64 else floats
        data.append({"object": "embedding", "index": i, "embedding": value})
    usage = {"prompt_tokens": inputs, "total_tokens": inputs}
    return msgspec.json.encode({"object": "list", "data": data, "model": "text-embedding-3-small", "usage": usage})


def best_us(fn: Callable[[], object], size: int) -> float:
    number = max(5, min(2000, 400_000 // max(size, 1)))
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def segments(size: int, headers: int) -> int:
    return -(-(size + headers) // MSS)


def whole_table(comp: Compression) -> None:
    print("\n2. whole answers (chat completions): CPU us to compress, bytes after, CPU us per KB saved, segments")
    print(
        f"   {'bytes':>6} | {'gzip us':>7} {'bytes':>6} {'us/KB':>6} | {'zstd us':>7} {'bytes':>6} {'us/KB':>6} |"
        f" segments plain/gzip/zstd, {HEADERS_BARE} B / {HEADERS_LIMITED} B of headers"
    )
    rng = random.Random(29)
    for size in SIZES:
        body = chat_answer(size, rng)
        row = [f"   {len(body):>6} |"]
        after = {}
        for coding in (compression.GZIP, compression.ZSTD):
            us = best_us(lambda c=coding, b=body: _whole_sync(comp, c, b), len(body))
            out = len(_whole_sync(comp, coding, body))
            saved = len(body) - out
            per_kb = f"{us / (saved / 1024):6.1f}" if saved > 0 else "     -"
            row.append(f"{us:7.1f} {out:6} {per_kb} |")
            after[coding] = out
        segs = [
            f"{segments(len(body), h)}/"
            + "/".join(str(segments(after[c], h + CODED_HEADERS)) for c in (compression.GZIP, compression.ZSTD))
            for h in (HEADERS_BARE, HEADERS_LIMITED)
        ]
        print(" ".join(row), "  ".join(segs))
    for headers in (HEADERS_BARE, HEADERS_LIMITED):
        first = next(n for n in range(256, 4096, 16) if _saves_a_segment(comp, chat_answer(n, rng), headers))
        print(f"   with {headers} B of headers, compressing first saves a segment at {first} B of body")
    print(f"   ingress.compression.MIN_BYTES = {compression.MIN_BYTES}")


def _saves_a_segment(comp: Compression, body: bytes, headers: int) -> bool:
    plain = segments(len(body), headers)
    codings = (compression.GZIP, compression.ZSTD)
    return all(segments(len(_whole_sync(comp, c, body)), headers + CODED_HEADERS) < plain for c in codings)


def _whole_sync(comp: Compression, coding: str, body: bytes) -> bytes:
    """What ``Compression.whole`` does on the loop for an answer below ``OFF_LOOP_BYTES``."""
    coro = comp.whole(coding, body)
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("a small answer is compressed without awaiting anything")


def levels_table() -> None:
    print("\n3. levels: CPU ms and bytes after")
    text = chat_answer(65536, random.Random(7))
    floats = embeddings_answer(50, 1536, False)
    for name, body in (("64 KB chat answer", text), (f"{len(floats) / 1e6:.1f} MB embeddings", floats)):
        cells = []
        for level in (1, 4, 6, 9):
            cpu = best_us(lambda lv=level, b=body: zlib.compress(b, lv, wbits=31), len(body)) / 1000
            cells.append(f"gzip-{level} {cpu:6.2f} ms {len(zlib.compress(body, level, wbits=31)):>7}")
        for level in (1, 3, 6):
            cpu = best_us(lambda lv=level, b=body: zstd.compress(b, lv), len(body)) / 1000
            cells.append(f"zstd-{level} {cpu:6.2f} ms {len(zstd.compress(body, level)):>7}")
        print(f"   {name} ({len(body)} B):\n     " + "\n     ".join(cells))


class Collect:
    """A fake server's send: keeps what it is sent."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")


def scope_for(accept: str | None) -> dict[str, object]:
    headers = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"), (b"authorization", b"Bearer x")]
    if accept is not None:
        headers.append((b"accept-encoding", accept.encode()))
    return {"type": "http", "method": "POST", "headers": headers}


async def send_whole(comp: Compression, accept: str, body: bytes) -> Collect:
    out = Collect()
    send = comp.wrap(scope_for(accept), out)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return out


def embeddings(comp: Compression) -> None:
    print("\n4. a ~20 MB embeddings answer (700 inputs x 1536), through the send wrapper")
    for label, body in (
        ("floats", embeddings_answer(700, 1536, False)),
        ("base64", embeddings_answer(700, 1536, True)),
    ):
        for accept in ("gzip, deflate", "zstd"):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            out = asyncio.run(send_whole(comp, accept, body))
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            sent = out.body()
            print(
                f"   {label} {len(body) / 1e6:5.1f} MB, {accept:13}: {len(sent) / 1e6:5.2f} MB"
                f" ({len(body) / len(sent):4.2f}x), CPU {cpu * 1000:6.1f} ms, wall {wall * 1000:6.1f} ms"
                f" (compressed on a worker thread)"
            )


async def send_stream(comp: Compression, accept: str | None, events: list[bytes]) -> Collect:
    out = Collect()
    send = comp.wrap(scope_for(accept), out)
    headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for event in events[:-1]:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": events[-1]})
    return out


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def stream(comp: Compression) -> None:
    events = [e.encode() + b"\n\n" for e in sse_answer().split("\n\n") if e]
    plain = sum(map(len, events))
    print(f"1. the 21-chunk stream: {len(events)} events (21 chunks, the finish, [DONE]), {plain} B, a message each")
    for accept in ("gzip, deflate", "zstd"):
        sent = asyncio.run(send_stream(comp, accept, events)).body()
        us = best_us(lambda a=accept: asyncio.run(send_stream(comp, a, events)), plain)
        base = best_us(lambda: asyncio.run(send_stream(comp, None, events)), plain)
        print(
            f"   {accept:13}: {len(sent)} B ({plain / len(sent):.1f}x), CPU {us - base:5.1f} us per stream more than"
            f" sent plain ({(us - base) / len(events):.1f} us per event)"
        )
        gc.collect()
        before, held = rss(), []
        for _ in range(1000):
            encoder = compression.stream_encoder(compression.ZSTD if accept == "zstd" else compression.GZIP)
            for event in events[:3]:
                encoder.flush(event)
            held.append(encoder)
        print(f"   {'':13}  memory per open compressed stream: {(rss() - before) / 1000 / 1024:.0f} KB (1,000 held)")
        del held


def overhead(comp: Compression) -> None:
    print("\n5. per request: a client that asks for nothing, and one that asks for gzip with a small answer")
    body = chat_answer(512, random.Random(3))
    plain = asyncio.run(answers_us(comp, None, body))
    asked = asyncio.run(answers_us(comp, "gzip, deflate", body))
    ns = best_us(lambda: comp.wrap(scope_for(None), _noop_send), 1) * 1000
    print(f"   wrap() without Accept-Encoding: {ns:.0f} ns, and the endpoint's own send comes back")
    print(
        f"   a {len(body)} B answer (below MIN_BYTES) sent with Accept-Encoding: gzip, deflate: +{asked - plain:.1f} us"
    )


async def answers_us(comp: Compression, accept: str | None, body: bytes, n: int = 50_000) -> float:
    """Microseconds per answer sent through ``wrap``'s send (best of three runs of ``n``)."""
    scope = scope_for(accept)
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(n):
            await send_bytes(comp.wrap(scope, _noop_send), 200, body, JSON_HEADERS)
        runs.append((time.perf_counter() - started) / n * 1e6)
    return min(runs)


async def _noop_send(message: Message) -> None:
    return None


def main() -> None:
    comp = Compression()
    stream(comp)  # first: its memory figure is read before the large answers grow the heap
    whole_table(comp)
    levels_table()
    embeddings(comp)
    overhead(comp)


if __name__ == "__main__":
    main()
