"""A strict PNG reader for tests: what an image viewer would refuse fails here."""

from __future__ import annotations

import struct
import zlib


def png_pixels(data: bytes) -> tuple[int, int]:
    """Checks a PNG (8-bit RGB, as the mock draws them) chunk by chunk:
    signature, CRCs, IHDR first and IEND last, the pixel data's length;
    gives its width and height."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "no PNG signature"
    at, tags, idat = 8, [], b""
    width = height = 0
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        tag, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == crc, f"bad CRC in {tag!r}"
        if tag == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 2)
        idat += body if tag == b"IDAT" else b""
        tags.append(tag)
        at += 12 + length
    assert tags[0] == b"IHDR" and tags[-1] == b"IEND"
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)
    return width, height
