"""Compressed request bodies (``ingress/body_coding.py`` through
``ingress.http.read_body``): each coding read as it arrives, in any split,
and refused, never expanded, past the limit."""

from __future__ import annotations

import gzip
import zlib

import pytest

from ingress import body_coding
from ingress.body_coding import zstd
from ingress.http import read_body
from schemas.errors import InvalidRequest, RequestTooLarge, UnsupportedEncoding

BODY = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"hello " * 2000 + b'"}]}'
ENCODE = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": zstd.compress,
}


def scope(coding: str) -> dict:
    return {"headers": [(b"content-type", b"application/json"), (b"content-encoding", coding.encode())]}


def arriving(data: bytes, piece: int):
    parts = [data[i : i + piece] for i in range(0, len(data), piece)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]

    async def receive() -> dict:
        return messages.pop(0)

    return receive


@pytest.mark.parametrize("coding", sorted(ENCODE))
@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 20])
async def test_a_body_reads_back_whole_however_it_is_split(coding: str, piece: int) -> None:
    data = ENCODE[coding](BODY)
    assert await read_body(scope(coding), arriving(data, piece), 64 * 1024, 5) == BODY


@pytest.mark.parametrize("coding", sorted(ENCODE))
async def test_a_bomb_is_refused_having_decoded_at_most_one_byte_past_the_limit(
    coding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = ENCODE[coding](b" " * 50_000_000)  # 50 MB of spaces: tens of KB compressed
    assert len(bomb) < 100_000
    decoded: list[int] = []
    for cls in (body_coding._Zlib, body_coding._Zstd):
        feed = cls.feed

        def counted(self, data: bytes, room: int, feed=feed) -> bytes:
            out = feed(self, data, room)
            decoded.append(len(out))
            return out

        monkeypatch.setattr(cls, "feed", counted)
    with pytest.raises(RequestTooLarge, match="once decoded"):
        await read_body(scope(coding), arriving(bomb, 16 * 1024), 64 * 1024, 5)
    assert sum(decoded) <= 64 * 1024 + 1


@pytest.mark.parametrize("coding", sorted(ENCODE))
async def test_a_body_cut_short_is_a_400(coding: str) -> None:
    data = ENCODE[coding](BODY)[:-6]
    with pytest.raises(InvalidRequest) as cut:
        await read_body(scope(coding), arriving(data, 1000), 64 * 1024, 5)
    assert cut.value.code == "invalid_content_encoding"


@pytest.mark.parametrize("coding", sorted(ENCODE))
async def test_bytes_that_are_not_the_coding_are_a_400(coding: str) -> None:
    with pytest.raises(InvalidRequest) as wrong:
        await read_body(scope(coding), arriving(b"this is not compressed at all" * 10, 100), 64 * 1024, 5)
    assert wrong.value.code == "invalid_content_encoding" and wrong.value.status == 400


async def test_zstd_frames_one_after_another_read_as_one_body() -> None:
    half = len(BODY) // 2
    data = zstd.compress(BODY[:half]) + zstd.compress(BODY[half:])
    for piece in (3, 1000, len(data)):
        assert await read_body(scope("zstd"), arriving(data, piece), 64 * 1024, 5) == BODY


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_data_after_a_gzip_or_deflate_body_is_a_400_not_dropped(coding: str) -> None:
    # A second gzip member (or anything after the end) would be lost unread if ignored.
    data = ENCODE[coding](BODY) + ENCODE[coding](b"more")
    for piece in (5, len(data)):
        with pytest.raises(InvalidRequest, match="after the end"):
            await read_body(scope(coding), arriving(data, piece), 64 * 1024, 5)


async def test_an_unknown_or_stacked_coding_is_a_415() -> None:
    for coding in ("br", "gzip, zstd", "compress"):
        with pytest.raises(UnsupportedEncoding) as refused:
            await read_body(scope(coding), arriving(b"x", 1), 1024, 5)
        assert refused.value.status == 415 and "zstd" in refused.value.message
