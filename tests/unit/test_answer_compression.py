"""Answers compressed as the client asks (ingress.compression): what
Accept-Encoding chooses, and what the send wrapper hands the server, read
back with the client's own decoder."""

from __future__ import annotations

import json
import os
import zlib

import pytest

from ingress import compression
from ingress.compression import DEFLATE, GZIP, MIN_BYTES, OFF_LOOP_BYTES, ZSTD, Compression, negotiate, zstd
from ingress.http import JSON_HEADERS, SSE_HEADERS, Message, send_bytes


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("gzip, deflate", GZIP),  # the openai SDK
        ("gzip, deflate, br, zstd", ZSTD),  # equal weights: ours decide
        ("deflate", DEFLATE),
        ("x-gzip", GZIP),
        ("GZip ; Q=1.0", GZIP),
        ("gzip;q=0.5, zstd;q=0.4", GZIP),
        ("zstd;q=0.2, gzip;q=0.9, deflate", DEFLATE),
        ("*", ZSTD),
        ("zstd;q=0, *", GZIP),  # q=0 refuses; * stands for the rest
        ("", ""),
        ("identity", ""),
        ("br", ""),
        ("gzip;q=0", ""),
        ("*;q=0", ""),
        ("gzip;q=0.5, identity", ""),  # identity preferred
        ("gzip, identity;q=0.5", GZIP),
        ("gzip;q=2", ""),  # not a q-value: ignored
        ("gzip;q=nan", ""),
        ("gzip;q=abc, deflate", DEFLATE),
        ("gzip;level=9", GZIP),  # other parameters do not matter
        (",,, ;q=1, gzip", GZIP),
    ],
)
def test_accept_encoding_chooses_the_coding(accept: str, coding: str) -> None:
    assert negotiate(accept) == coding


def test_a_hostile_accept_encoding_is_read_only_so_far() -> None:
    many = ", ".join(f"x{i}" for i in range(compression.MAX_CODINGS)) + ", gzip"
    assert negotiate(many) == ""  # past the codings read
    assert negotiate(", ".join(f"x{i}" for i in range(compression.MAX_CODINGS - 1)) + ", gzip") == GZIP
    out = _Collect()
    assert Compression().wrap(scope(" " * compression.MAX_ACCEPT + "gzip"), out) is out


class _Collect:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def start(self) -> Message:
        assert self.messages[0]["type"] == "http.response.start"
        return self.messages[0]

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.start["headers"] if k == name]

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.messages[1:]]


def scope(accept: str | None, method: str = "POST") -> dict[str, object]:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    if accept is not None:
        headers.append((b"accept-encoding", accept.encode("latin-1")))
    return {"type": "http", "method": method, "headers": headers}


def decode(coding: str, data: bytes) -> bytes:
    if coding == ZSTD:
        return zstd.decompress(data)
    return zlib.decompress(data, 31 if coding == GZIP else 15)


def answer(size: int) -> bytes:
    """A JSON answer of exactly ``size`` bytes."""
    words = [f"word{i % 97} " for i in range(size)]
    return json.dumps({"object": "chat.completion", "content": "".join(words)[: size - 44]}).encode()


@pytest.mark.parametrize("accept", [None, "identity", "br", "gzip;q=0"])
def test_a_client_that_asks_for_no_coding_we_offer_gets_the_endpoints_own_send(accept: str | None) -> None:
    out = _Collect()
    assert Compression().wrap(scope(accept), out) is out


def test_an_answer_to_head_is_never_compressed() -> None:
    out = _Collect()
    assert Compression().wrap(scope("gzip", "HEAD"), out) is out


@pytest.mark.parametrize(("accept", "coding"), [("gzip, deflate", GZIP), ("deflate", DEFLATE), ("zstd", ZSTD)])
async def test_a_whole_answer_is_compressed_with_its_length_and_coding(accept: str, coding: str) -> None:
    out = _Collect()
    body = answer(8000)
    await send_bytes(Compression().wrap(scope(accept), out), 200, body, JSON_HEADERS)
    [sent] = out.bodies()
    assert decode(coding, sent) == body
    assert len(sent) < len(body) / 2
    assert out.header(b"content-encoding") == [coding.encode()]
    assert out.header(b"content-length") == [str(len(sent)).encode()]  # replaced, not added
    assert out.header(b"vary") == [b"accept-encoding"]
    assert out.header(b"content-type") == [b"application/json"]
    assert out.start["status"] == 200 and "more_body" not in out.messages[1]


@pytest.mark.parametrize("coding", [GZIP, ZSTD])
async def test_answers_in_a_row_each_decode_alone(coding: str) -> None:
    """The zstd context kept for whole answers starts each one afresh."""
    comp = Compression()
    for size in (MIN_BYTES, 5000, 3000):  # the first one exactly at the threshold
        out = _Collect()
        body = answer(size)
        await send_bytes(comp.wrap(scope(coding), out), 200, body, JSON_HEADERS)
        assert decode(coding, out.bodies()[0]) == body


async def test_an_answer_below_the_threshold_goes_as_it_is() -> None:
    out = _Collect()
    body = answer(MIN_BYTES - 1)
    assert len(body) == MIN_BYTES - 1 and len(answer(MIN_BYTES)) == MIN_BYTES
    await send_bytes(Compression().wrap(scope("gzip"), out), 200, body, JSON_HEADERS)
    assert out.bodies() == [body]
    assert out.header(b"content-encoding") == [] and out.header(b"content-length") == [str(len(body)).encode()]


async def test_a_body_that_does_not_shrink_goes_as_it_is() -> None:
    out = _Collect()
    body = os.urandom(4000)
    await send_bytes(Compression().wrap(scope("gzip"), out), 200, body, [(b"content-type", b"text/plain")])
    assert out.bodies() == [body] and out.header(b"content-encoding") == []


@pytest.mark.parametrize("coding", [GZIP, ZSTD])
async def test_a_large_answer_is_compressed_off_the_loop_and_decodes(coding: str) -> None:
    floats = json.dumps({"data": [[(i * 7919 % 10007) / 10007 - 0.5 for i in range(k, k + 1536)] for k in range(60)]})
    text = json.dumps({"content": " ".join(f"line {i} of a long answer" for i in range(20000))})
    for body in (floats.encode(), text.encode()):  # digits (Huffman coding alone), and text (back-references)
        assert len(body) >= OFF_LOOP_BYTES
        out = _Collect()
        await send_bytes(Compression().wrap(scope(coding), out), 200, body, JSON_HEADERS)
        [sent] = out.bodies()
        assert decode(coding, sent) == body and len(sent) < len(body) / 2


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (200, [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]),  # already coded
        (200, [(b"content-type", b"audio/mpeg")]),
        (200, [(b"content-type", b"image/png")]),
        (200, [(b"content-type", b"application/octet-stream")]),
        (200, []),  # no type: not guessed
        (206, [(b"content-type", b"text/plain")]),
        (304, [(b"content-type", b"application/json")]),
        (204, [(b"content-type", b"application/json")]),
    ],
)
async def test_what_is_never_compressed(status: int, headers: list[tuple[bytes, bytes]]) -> None:
    out = _Collect()
    body = answer(6000)
    start = {"type": "http.response.start", "status": status, "headers": headers}
    send = Compression().wrap(scope("gzip, deflate, zstd"), out)
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": body})
    assert out.messages[0] == start
    assert out.bodies() == [body, body]


def _events(n: int) -> list[bytes]:
    chunk = {"object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {}}]}
    out = []
    for i in range(n):
        chunk["choices"][0]["delta"] = {"content": f"w{i} "}
        out.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    return [*out, b"data: [DONE]\n\n"]


class _Reader:
    """The client's decoder, fed as the bytes arrive."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._z = zstd.ZstdDecompressor() if coding == ZSTD else zlib.decompressobj(31 if coding == GZIP else 15)

    def feed(self, data: bytes) -> bytes:
        return self._z.decompress(data)

    @property
    def ended(self) -> bool:
        return self._z.eof


@pytest.mark.parametrize(("accept", "coding"), [("gzip, deflate", GZIP), ("deflate", DEFLATE), ("zstd", ZSTD)])
async def test_a_streams_every_message_decodes_to_exactly_the_events_sent_so_far(accept: str, coding: str) -> None:
    out = _Collect()
    send = Compression().wrap(scope(accept), out)
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    assert out.header(b"content-encoding") == [coding.encode()]  # the head goes at once
    assert out.header(b"content-length") == [] and out.header(b"vary") == [b"accept-encoding"]
    reader = _Reader(coding)
    events = _events(21)
    for i, event in enumerate(events):
        last = i == len(events) - 1
        await send({"type": "http.response.body", "body": event, "more_body": not last})
        message = out.messages[-1]
        assert message["more_body"] is not last
        assert reader.feed(message["body"]) == event  # nothing held back for later
        assert reader.ended is last
    total = sum(len(b) for b in out.bodies())
    assert total < sum(map(len, events)) / 3


@pytest.mark.parametrize("coding", [GZIP, ZSTD])
async def test_a_json_answer_sent_in_parts_is_compressed_per_part(coding: str) -> None:
    """A body in several messages (a file's slices) loses its length: the server frames it."""
    out = _Collect()
    send = Compression().wrap(scope(coding), out)
    parts = [answer(3000), b"", answer(100), answer(5000)]
    headers = [(b"content-type", b"application/json"), (b"content-length", str(sum(map(len, parts))).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    assert out.messages == []  # held until the first body tells whole from parts
    reader = _Reader(coding)
    for part in parts:
        await send({"type": "http.response.body", "body": part, "more_body": True})
        assert reader.feed(out.messages[-1]["body"]) == part
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    assert reader.feed(out.messages[-1]["body"]) == b"" and reader.ended
    assert out.header(b"content-length") == [] and out.header(b"content-encoding") == [coding.encode()]


async def test_jsonl_sent_in_parts_with_a_length_streams_compressed_without_it() -> None:
    out = _Collect()
    send = Compression().wrap(scope("gzip"), out)
    headers = [(b"content-type", b"application/jsonl"), (b"content-length", b"999")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"a": 1}\n' * 200, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    assert out.header(b"content-length") == []
    assert zlib.decompress(b"".join(out.bodies()), 31) == b'{"a": 1}\n' * 200


@pytest.mark.parametrize(
    ("header", "takes_gzip"),
    [("gzip, deflate", True), ("gzip;q=0, deflate", False), ("*", True), ("*;q=0", False), ("", False), ("br", False)],
)
def test_accepts_reads_q_values_not_substrings(header: str, takes_gzip: bool) -> None:
    # The dashboard's script is kept gzipped only: "gzip;q=0" must get it plain.
    assert compression.accepts(header, "gzip") is takes_gzip
