"""How long an audio file plays, read from its first bytes and its size
alone: a WAV's header, an MP3's first frame (its Xing/Info or VBRI frame
count, else its constant bitrate), a FLAC's STREAMINFO. Anything else, or a
header that does not hold together, is unknown (None): a guess is the
caller's to make, and to label.

Pure: no I/O. The caller hands it the first ``HEAD_BYTES`` it read of the
file (fewer when the file is shorter) and the file's whole size.
"""

from __future__ import annotations

import struct

# What the readers look at: enough for a WAV whose data chunk follows a
# modest LIST chunk, and an MP3 behind a small ID3 tag (one with cover art
# is larger: unknown).
HEAD_BYTES = 64 * 1024

# MPEG audio, Layer III: kbit/s by bitrate index (MPEG-1; MPEG-2 and 2.5).
_MP3_KBPS_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MP3_KBPS_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
# Hz by the header's version bits (0: MPEG-2.5, 2: MPEG-2, 3: MPEG-1) and rate index.
_MP3_RATES = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}


def duration_ms(head: bytes, size: int) -> int | None:
    """The playing time in ms of a file of ``size`` bytes that begins with
    ``head``; None when it cannot be told cheaply."""
    if size <= 0 or len(head) < 12:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _wav(head, size)
    if head[:4] == b"fLaC":
        return _flac(head)
    return _mp3(head, size)


def _wav(head: bytes, size: int) -> int | None:
    """RIFF chunks in order: "fmt " gives the byte rate, "data" the length
    (a streamed WAV's is 0 or 0xFFFFFFFF: the rest of the file, then)."""
    offset, byte_rate = 12, 0
    while offset + 8 <= len(head):
        chunk_id = head[offset : offset + 4]
        (chunk_size,) = struct.unpack_from("<I", head, offset + 4)
        body = offset + 8
        if chunk_id == b"fmt ":
            if chunk_size < 16 or body + 16 > len(head):
                return None
            byte_rate = struct.unpack_from("<I", head, body + 8)[0]
        elif chunk_id == b"data":
            if not byte_rate:
                return None  # no format before the samples: not a WAV we can time
            available = max(0, size - body)
            data = available if chunk_size in (0, 0xFFFFFFFF) else min(chunk_size, available)
            return data * 1000 // byte_rate
        offset = body + chunk_size + (chunk_size & 1)
    return None


def _flac(head: bytes) -> int | None:
    """The first metadata block is STREAMINFO (type 0): 20 bits of sample
    rate, then 36 bits of total samples, 10 bytes into it."""
    if len(head) < 8 + 18 or head[4] & 0x7F != 0:
        return None
    packed = int.from_bytes(head[8 + 10 : 8 + 18], "big")
    rate = packed >> 44
    samples = packed & ((1 << 36) - 1)
    if not rate or not samples:
        return None
    return samples * 1000 // rate


def _mp3(head: bytes, size: int) -> int | None:
    start = _after_id3(head)
    if start is None or start + 4 > len(head) or size <= start:
        return None
    frame = _mp3_frame(head, start)
    if frame is None:
        return None
    version, kbps, rate, length, mono = frame
    # A second frame where the first says it ends: four bytes of noise that
    # look like a frame header are not an MP3.
    following = start + length
    if following + 4 <= len(head) and _mp3_frame(head, following) is None:
        return None
    samples_per_frame = 1152 if version == 3 else 576
    frames = _vbr_frames(head, start, version, mono)
    if frames is not None:
        return frames * samples_per_frame * 1000 // rate
    return (size - start) * 8 // kbps  # bits / (kbit/s) = ms


def _after_id3(head: bytes) -> int | None:
    """Where the audio begins: past an ID3v2 tag (its size is syncsafe:
    seven bits a byte), and its footer when the flags say there is one."""
    if head[:3] != b"ID3":
        return 0
    if len(head) < 10 or any(b & 0x80 for b in head[6:10]):
        return None
    tag = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
    return 10 + tag + (10 if head[5] & 0x10 else 0)


def _mp3_frame(head: bytes, at: int) -> tuple[int, int, int, int, bool] | None:
    """A Layer III frame header at ``at``: (version bits, kbit/s, Hz, frame
    length in bytes, mono), or None for anything else (free format too)."""
    if at + 4 > len(head):
        return None
    b1, b2, b3 = head[at + 1], head[at + 2], head[at + 3]
    if head[at] != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 3
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    kbps = (_MP3_KBPS_V1 if version == 3 else _MP3_KBPS_V2)[bitrate_index]
    rate = _MP3_RATES[version][rate_index]
    per_kbit = 144_000 if version == 3 else 72_000
    length = per_kbit * kbps // rate + ((b2 >> 1) & 1)
    return version, kbps, rate, length, (b3 >> 6) == 3


def _vbr_frames(head: bytes, start: int, version: int, mono: bool) -> int | None:
    """The frame count a VBR encoder wrote into the first frame: a
    Xing/Info tag after the side information, or a VBRI tag 32 bytes in."""
    side = (17 if mono else 32) if version == 3 else (9 if mono else 17)
    xing = start + 4 + side
    if head[xing : xing + 4] in (b"Xing", b"Info") and xing + 12 <= len(head):
        (flags,) = struct.unpack_from(">I", head, xing + 4)
        if flags & 1:
            frames = struct.unpack_from(">I", head, xing + 8)[0]
            return frames or None
        return None
    vbri = start + 4 + 32
    if head[vbri : vbri + 4] == b"VBRI" and vbri + 18 <= len(head):
        frames = struct.unpack_from(">I", head, vbri + 14)[0]
        return frames or None
    return None
