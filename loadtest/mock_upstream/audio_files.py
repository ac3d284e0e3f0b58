"""The mock's own audio: real files any player opens, that carry the text
they "speak", so a transcription of the mock's speech gives its text back.

* WAV: 16 kHz mono 16-bit PCM (a quiet 400 Hz tone), the text in a RIFF
  LIST/INFO chunk (ICMT; ISFT names the mock) before the samples;
* MP3: MPEG-2 Layer III frames at 16 kHz, 32 kbit/s, mono, each a silent
  frame (zero side information: nothing to decode), behind an ID3v2.4 tag
  whose TIT2 frame is the text (TSSE names the mock);
* PCM: the WAV's samples alone (OpenAI's ``pcm``: 24 kHz there; 16 kHz here).

Audio lasts ``MS_PER_CHAR`` per character of text (about the pace of
speech). Independent of the gateway's code on purpose: a file the gateway
measures is one it did not write.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import wave

RATE = 16_000
MS_PER_CHAR = 60
MIN_MS = 200
SOFTWARE = b"sluice-mock"
# One period of a 400 Hz tone at 16 kHz (40 samples), at a tenth of full scale.
_PERIOD = b"".join(struct.pack("<h", round(3276 * math.sin(2 * math.pi * i / 40))) for i in range(40))
# A silent MPEG-2 Layer III frame: 16 kHz, 32 kbit/s, mono, no CRC; 144 bytes, 576 samples (36 ms).
MP3_FRAME = bytes((0xFF, 0xF3, 0x48, 0xC0)) + bytes(140)
MP3_FRAME_MS = 36


def speech_ms(text: str) -> int:
    return max(MIN_MS, len(text) * MS_PER_CHAR)


def pcm(ms: int) -> bytes:
    samples = RATE * ms // 1000
    periods, rest = divmod(samples, 40)
    return _PERIOD * periods + _PERIOD[: rest * 2]


def wav(text: str) -> bytes:
    samples = pcm(speech_ms(text))
    info = b"INFO" + _info_chunk(b"ISFT", SOFTWARE) + _info_chunk(b"ICMT", text.encode())
    fmt = struct.pack("<HHIIHH", 1, 1, RATE, RATE * 2, 2, 16)
    chunks = (
        b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"LIST" + struct.pack("<I", len(info)) + info
        + b"data" + struct.pack("<I", len(samples)) + samples
    )  # fmt: skip
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def _info_chunk(chunk_id: bytes, value: bytes) -> bytes:
    data = value + b"\0"
    return chunk_id + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def mp3(text: str) -> bytes:
    frames = -(-speech_ms(text) // MP3_FRAME_MS)
    tag_frames = _id3_frame(b"TSSE", SOFTWARE) + _id3_frame(b"TIT2", text.encode())
    return b"ID3\x04\x00\x00" + _syncsafe(len(tag_frames)) + tag_frames + MP3_FRAME * frames


def _syncsafe(n: int) -> bytes:
    return bytes(((n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F))


def _id3_frame(frame_id: bytes, text: bytes) -> bytes:
    data = b"\x03" + text  # encoding 3: UTF-8
    return frame_id + _syncsafe(len(data)) + b"\0\0" + data


def read_own(data: bytes) -> str | None:
    """The text one of the mock's own files carries, or None for any other file."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return _wav_text(data)
    if data[:3] == b"ID3" and data[3] == 4:
        return _mp3_text(data)
    return None


def _wav_text(data: bytes) -> str | None:
    at = 12
    while at + 8 <= len(data):
        chunk_id, size = data[at : at + 4], struct.unpack_from("<I", data, at + 4)[0]
        body = data[at + 8 : at + 8 + size]
        if chunk_id == b"LIST" and body[:4] == b"INFO":
            info = _info(body[4:])
            if info.get(b"ISFT") == SOFTWARE:
                return info.get(b"ICMT", b"").decode(errors="replace")
        at += 8 + size + (size & 1)
    return None


def _info(data: bytes) -> dict[bytes, bytes]:
    out, at = {}, 0
    while at + 8 <= len(data):
        chunk_id, size = data[at : at + 4], struct.unpack_from("<I", data, at + 4)[0]
        out[chunk_id] = data[at + 8 : at + 8 + size].rstrip(b"\0")
        at += 8 + size + (size & 1)
    return out


def _unsyncsafe(b: bytes) -> int:
    return (b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3]


def _mp3_text(data: bytes) -> str | None:
    end = 10 + _unsyncsafe(data[6:10])
    at, frames = 10, {}
    while at + 10 <= end:
        frame_id, size = data[at : at + 4], _unsyncsafe(data[at + 4 : at + 8])
        frames[frame_id] = data[at + 11 : at + 10 + size]
        at += 10 + size
    if frames.get(b"TSSE") != SOFTWARE:
        return None
    return frames.get(b"TIT2", b"").decode(errors="replace")


def duration_s(data: bytes) -> float:
    """How long a file plays, as the mock (a stand-in for the provider's
    decoder) hears it: the mock's own files exactly, any WAV by Python's
    ``wave``, anything else as if it were 128 kbit/s."""
    if data[:3] == b"ID3" and read_own(data) is not None:
        start = 10 + _unsyncsafe(data[6:10])
        return (len(data) - start) // len(MP3_FRAME) * MP3_FRAME_MS / 1000
    if data[:4] == b"RIFF":
        try:
            with wave.open(io.BytesIO(data)) as w:
                return w.getnframes() / w.getframerate()
        except (wave.Error, EOFError):
            pass
    return len(data) * 8 / 128_000


def stranger_text(data: bytes) -> str:
    """A deterministic transcript of audio the mock did not make."""
    digest = hashlib.sha256(data).hexdigest()
    return f"The mock heard {len(data)} bytes of audio, digest {digest[:12]}."
