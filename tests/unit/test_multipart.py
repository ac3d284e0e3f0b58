"""``ingress.multipart.read_form`` against well-formed forms (as httpx, and so
the OpenAI SDK, writes them) and hostile bodies: every body ends in a form
or a 400/413, files reach the store as they stream, never buffered."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator

import httpx
import pytest

from ingress import multipart
from ingress.http import ClientDisconnected, Message, Scope
from ingress.multipart import clean_filename, read_form
from schemas.errors import GatewayError, InvalidRequest, RequestTimeout, RequestTooLarge, UnsupportedEncoding
from schemas.tasks import BlobRef

B = "sluiceboundary7MA4YWxkTrZu0gW"


def scope(content_type: str = f"multipart/form-data; boundary={B}") -> Scope:
    return {"type": "http", "headers": [(b"content-type", content_type.encode())]}


def receiver(body: bytes, sizes: list[int] | None = None) -> tuple[object, list[int]]:
    """An ASGI ``receive`` handing ``body`` in pieces of ``sizes`` (cycled; all
    at once if none); and the count of messages it handed."""
    pieces: list[bytes] = []
    at, i = 0, 0
    while at < len(body) or not pieces:
        size = sizes[i % len(sizes)] if sizes else len(body) or 1
        pieces.append(body[at : at + size])
        at += size
        i += 1
    handed = [0]

    async def receive() -> Message:
        n = handed[0]
        handed[0] += 1
        if n >= len(pieces):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": pieces[n], "more_body": n < len(pieces) - 1}

    return receive, handed


class Store:
    """Keeps files in a dict, as the object store would (slice by slice)."""

    def __init__(self) -> None:
        self.kept: dict[str, bytes] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.cancelled = 0

    async def __call__(self, field: str, filename: str, content_type: str, chunks: AsyncIterator[bytes]) -> BlobRef:
        self.calls.append((field, filename, content_type))
        data = bytearray()
        try:
            async for piece in chunks:
                assert isinstance(piece, bytes) and piece
                data += piece
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        name = f"acme/upload/{len(self.kept):024d}"
        self.kept[name] = bytes(data)
        return BlobRef(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(), filename=filename)


def part(name: str, value: bytes, filename: str | None = None, content_type: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"Content-Disposition: {disposition}\r\n" + (f"Content-Type: {content_type}\r\n" if content_type else "")
    return f"--{B}\r\n{head}\r\n".encode() + value + b"\r\n"


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{B}--\r\n".encode()


async def read(body: bytes, store: Store | None = None, sizes: list[int] | None = None, **limits: float):
    receive, _ = receiver(body, sizes)
    return await read_form(
        scope(),
        receive,  # type: ignore[arg-type]
        store or Store(),
        max_field_bytes=int(limits.get("max_field_bytes", 65536)),
        timeout_s=limits.get("timeout_s", 5.0),
    )


AUDIO = bytes(range(256)) * 40 + b"\r\n--" + B[:10].encode() + b"\r\n\r\n--"  # boundary-like bytes inside


@pytest.mark.parametrize("sizes", [None, [1], [7, 3], [65536], [len(B) + 3]])
async def test_fields_and_files_as_they_come_in_any_slicing(sizes: list[int] | None) -> None:
    store = Store()
    body = form(
        part("model", b"whisper-1"),
        part("file", AUDIO, "speech.wav", "audio/wav"),
        part("image[]", b"\x89PNG one", "a.png", "image/png"),
        part("image[]", b"\x89PNG two", "b.png", "image/png"),
        part("timestamp_granularities[]", b"word"),
        part("timestamp_granularities[]", b"segment"),
        part("prompt", "caf\u00e9 \r\n--x".encode()),
    )
    got = await read(body, store, sizes)
    assert got.fields == {
        "model": ["whisper-1"],
        "timestamp_granularities[]": ["word", "segment"],
        "prompt": ["caf\u00e9 \r\n--x"],
    }
    assert [store.kept[r.name] for r in got.files["file"]] == [AUDIO]
    assert [store.kept[r.name] for r in got.files["image[]"]] == [b"\x89PNG one", b"\x89PNG two"]
    assert store.calls[0] == ("file", "speech.wav", "audio/wav")


async def test_a_form_as_httpx_and_the_openai_sdk_write_it() -> None:
    request = httpx.Request(
        "POST",
        "http://x/v1/audio/transcriptions",
        data={"model": "whisper-1", "response_format": "json"},
        files={"file": ("clip.mp3", b"ID3" + bytes(5000), "audio/mpeg")},
    )
    body = request.read()
    receive, _ = receiver(body, [1000])
    store = Store()
    got = await read_form(
        {"type": "http", "headers": [(b"content-type", request.headers["content-type"].encode())]},
        receive,  # type: ignore[arg-type]
        store,
        max_field_bytes=1000,
        timeout_s=5,
    )
    assert got.fields == {"model": ["whisper-1"], "response_format": ["json"]}
    (ref,) = got.files["file"]
    assert store.kept[ref.name] == b"ID3" + bytes(5000) and ref.filename == "clip.mp3"


async def test_a_compressed_upload_is_refused_before_its_body_is_read() -> None:
    receive, handed = receiver(form(part("a", b"b")))
    compressed = scope()
    compressed["headers"].append((b"content-encoding", b"gzip"))
    with pytest.raises(UnsupportedEncoding) as refused:
        await read_form(compressed, receive, Store(), max_field_bytes=100, timeout_s=1)  # type: ignore[arg-type]
    assert refused.value.status == 415 and handed[0] == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=" + "a" * 71,
        "multipart/form-data; boundary=bad\x01char",
        "multipart/mixed; boundary=abc",
        "text/plain; boundary=abc",
    ],
)
async def test_a_body_that_is_not_multipart_form_data_is_refused(content_type: str) -> None:
    receive, handed = receiver(form(part("a", b"b")))
    with pytest.raises(InvalidRequest) as refused:
        await read_form(scope(content_type), receive, Store(), max_field_bytes=100, timeout_s=1)  # type: ignore[arg-type]
    assert refused.value.status == 400 and refused.value.code == "invalid_content_type"
    assert handed[0] == 0  # refused before reading the body


async def test_a_quoted_boundary_is_taken() -> None:
    receive, _ = receiver(form(part("a", b"b")))
    got = await read_form(
        scope(f'multipart/form-data; boundary="{B}"'),
        receive,  # type: ignore[arg-type]
        Store(),
        max_field_bytes=100,
        timeout_s=1,
    )
    assert got.fields == {"a": ["b"]}


async def test_text_fields_are_bounded_in_all() -> None:
    body = form(part("a", b"x" * 600), part("b", b"y" * 600))
    with pytest.raises(RequestTooLarge):
        await read(body, max_field_bytes=1000)
    assert (await read(body, max_field_bytes=1200)).fields["b"] == ["y" * 600]


async def test_too_many_parts_are_refused() -> None:
    body = form(*(part(f"f{i}", b"v") for i in range(multipart.MAX_PARTS + 1)))
    with pytest.raises(RequestTooLarge):
        await read(body)
    assert len((await read(form(*(part(f"f{i}", b"v") for i in range(multipart.MAX_PARTS))))).fields) == 64


async def test_a_body_of_framing_alone_is_bounded() -> None:
    # A preamble with no boundary in it is skipped, but not for ever.
    receive, handed = receiver(b"x" * (multipart.FRAMING_BYTES + 100_000), [8192])
    with pytest.raises(RequestTooLarge):
        await read_form(scope(), receive, Store(), max_field_bytes=100, timeout_s=1)  # type: ignore[arg-type]
    assert handed[0] * 8192 < multipart.FRAMING_BYTES + 20_000


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\voice memo.m4a", "voice memo.m4a"),
        ("a\x00b\r\nc\u202e.wav", "abc.wav"),
        ("..", ""),
        ("/", ""),
        ("  spaced.mp3  ", "spaced.mp3"),
        ("x" * 300 + ".wav", "x" * 255),
        ("r\u00e9sum\u00e9.png", "r\u00e9sum\u00e9.png"),
    ],
)
def test_file_names_keep_only_a_clean_base_name(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean


async def test_a_file_name_with_a_path_reaches_the_store_as_its_base_name() -> None:
    store = Store()
    await read(form(part("file", b"abc", "../../../etc/cron.d/evil", "audio/wav")), store)
    assert store.calls == [("file", "evil", "audio/wav")]


async def test_an_odd_part_content_type_is_octets() -> None:
    store = Store()
    await read(form(part("file", b"abc", "a.wav", "audio/wav\x7f<script>"), part("g", b"1", "b", None)), store)
    assert [c[2] for c in store.calls] == ["application/octet-stream", "application/octet-stream"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        form(),  # no parts
        form(part("a", b"b"))[:-10],  # cut before its end
        f"--{B}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{B}--\r\n".encode(),  # no Content-Disposition
        f'--{B}\r\nContent-Disposition: form-data; filename="a"\r\n\r\nx\r\n--{B}--\r\n'.encode(),  # no name
        f"--{B}\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--{B}--\r\n".encode(),
        f'--{B}\r\nContent-Disposition: form-data; name="a\x01"\r\n\r\nx\r\n--{B}--\r\n'.encode(),
        f"--{B}\nContent-Disposition: form-data; name=a\n\nx\n--{B}--\n".encode(),  # LF line ends
        form(part("a", b"\xff\xfe not utf-8")),
        f"--{B}\r\n" + "X-Pad: y\r\n" * 20 + f"Content-Disposition: form-data; name=a\r\n\r\nx\r\n--{B}--\r\n",
    ],
)
async def test_malformed_bodies_are_refused(body: bytes | str) -> None:
    with pytest.raises((InvalidRequest, RequestTooLarge)) as refused:
        await read(body.encode() if isinstance(body, str) else body)
    assert refused.value.status in (400, 413)


async def test_a_client_that_leaves_mid_file_cuts_the_store_short() -> None:
    store = Store()
    body = form(part("model", b"m"), part("file", bytes(200_000), "a.wav", "audio/wav"))
    receive, _ = receiver(body[:100_000] + b"", [10_000])  # then: http.disconnect

    async def leaving() -> Message:
        message = await receive()  # type: ignore[operator]
        if message.get("type") == "http.request":
            message["more_body"] = True
        return message

    with pytest.raises(ClientDisconnected):
        await read_form(scope(), leaving, store, max_field_bytes=100, timeout_s=1)
    assert store.cancelled == 1 and store.kept == {}


async def test_a_silent_body_times_out_as_the_json_door_does() -> None:
    first = form(part("model", b"m"))[:30]

    async def stalls() -> Message:
        if not stalls.sent:  # type: ignore[attr-defined]
            stalls.sent = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": first, "more_body": True}
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    stalls.sent = False  # type: ignore[attr-defined]
    with pytest.raises(RequestTimeout) as late:
        await read_form(scope(), stalls, Store(), max_field_bytes=100, timeout_s=0.05)
    assert late.value.status == 408


async def test_the_store_refusing_a_file_refuses_the_form() -> None:
    async def capped(field: str, filename: str, content_type: str, chunks: AsyncIterator[bytes]) -> BlobRef:
        size = 0
        async for piece in chunks:
            size += len(piece)
            if size > 50_000:
                raise RequestTooLarge("too big", code="file_too_large")
        return BlobRef(name="acme/upload/" + "a" * 24, size=size)

    receive, handed = receiver(form(part("file", bytes(1_000_000), "a.wav")), [4096])
    with pytest.raises(RequestTooLarge) as refused:
        await read_form(scope(), receive, capped, max_field_bytes=100, timeout_s=1)  # type: ignore[arg-type]
    assert refused.value.code == "file_too_large"
    assert handed[0] * 4096 < 50_000 + (multipart.PIPE_SLICES + 3) * 4096  # stopped reading soon after


async def test_a_slow_store_holds_the_body_back_rather_than_buffer_it() -> None:
    release = asyncio.Event()
    taken: list[int] = []

    async def slow(field: str, filename: str, content_type: str, chunks: AsyncIterator[bytes]) -> BlobRef:
        async for piece in chunks:
            taken.append(len(piece))
            if len(taken) == 1:
                await release.wait()
        return BlobRef(name="acme/upload/" + "a" * 24, size=sum(taken))

    body = form(part("file", bytes(1_000_000), "a.wav"))
    receive, handed = receiver(body, [8192])
    reading = asyncio.ensure_future(
        read_form(scope(), receive, slow, max_field_bytes=100, timeout_s=5)  # type: ignore[arg-type]
    )
    for _ in range(200):  # let the reader run as far as it can
        await asyncio.sleep(0)
    assert len(taken) == 1
    assert handed[0] <= multipart.PIPE_SLICES + 3  # the pipe's slices, the one taken, the one waiting
    release.set()
    got = await asyncio.wait_for(reading, 5)
    assert got.files["file"][0].size == 1_000_000


async def test_hostile_bodies_end_in_a_form_or_a_refusal() -> None:
    """A few hundred cut, garbled and reshuffled forms: never an unexpected
    exception, never a hang, every file the store started either kept or cut short."""
    rng = random.Random(28)
    base = form(
        part("model", b"gpt-image-1"),
        part("prompt", b"a lighthouse at dusk"),
        part("image[]", bytes(rng.randrange(256) for _ in range(1500)), "a.png", "image/png"),
        part("image[]", b"\r\n--" + B[:-1].encode() + b"\r\n", "b.png", "image/png"),  # almost a boundary
        part("n", b"2"),
    )
    outcomes: dict[str, int] = {}
    for _ in range(400):
        body = bytearray(base)
        for _ in range(rng.randrange(0, 3)):  # none: only sliced differently, which must still read
            op = rng.randrange(6)
            at = rng.randrange(len(body) + 1)
            if op == 0:
                del body[at:]
            elif op == 1 and body:
                body[rng.randrange(len(body))] = rng.randrange(256)
            elif op == 2:
                body[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
            elif op == 3:
                body[at:at] = rng.choice([b"\r\n", b"--", B.encode(), f"\r\n--{B}\r\n".encode(), b'"; filename="'])
            elif op == 4:
                end = min(len(body), at + rng.randrange(1, 200))
                del body[at:end]
            else:
                body = body[:at] + body[at:] * 2
        sizes = [rng.choice([3, 5, 64, 1000, 65536])]
        store = Store()
        try:
            got = await asyncio.wait_for(read(bytes(body), store, sizes, max_field_bytes=2000), 5)
        except GatewayError as exc:
            assert exc.status in (400, 413), exc
            assert len(store.calls) == len(store.kept) + store.cancelled  # none left running
            outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
            continue
        assert got.fields or got.files
        assert {r.name for refs in got.files.values() for r in refs} <= set(store.kept)
        outcomes["form"] = outcomes.get("form", 0) + 1
    assert outcomes.get("form", 0) > 50 and outcomes.get("InvalidRequest", 0) > 50, outcomes
