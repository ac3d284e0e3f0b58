"""An audio file's playing time from its first bytes and its size
(``services.audio_duration``): WAV headers as Python's ``wave`` writes
them, MP3 frames (constant bitrate, Xing/Info and VBRI frame counts, behind
an ID3 tag), FLAC's STREAMINFO; anything else unknown, never a guess."""

from __future__ import annotations

import io
import random
import struct
import wave

import pytest

from loadtest.mock_upstream import audio_files
from services.audio_duration import HEAD_BYTES, duration_ms


def wav(rate: int, channels: int, width: int, frames: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(frames * channels * width))
    return out.getvalue()


def measured(data: bytes) -> int | None:
    return duration_ms(data[:HEAD_BYTES], len(data))


@pytest.mark.parametrize(
    ("rate", "channels", "width", "frames", "ms"),
    [(16_000, 1, 2, 24_000, 1500), (44_100, 2, 2, 11_025, 250), (8_000, 1, 1, 80_000, 10_000)],
)
def test_wav_length_from_its_header(rate: int, channels: int, width: int, frames: int, ms: int) -> None:
    assert measured(wav(rate, channels, width, frames)) == ms


def test_a_long_wav_is_timed_from_its_head_alone() -> None:
    data = wav(16_000, 1, 2, 16_000 * 60)  # a minute: 1.9 MB, of which the reader sees 64 KB
    assert duration_ms(data[:HEAD_BYTES], len(data)) == 60_000


def test_wav_with_a_list_chunk_before_its_samples() -> None:
    # The mock's own speech: LIST/INFO (the text) between fmt and data.
    text = "The quick brown fox jumps over the lazy dog."
    assert measured(audio_files.wav(text)) == audio_files.speech_ms(text)


def test_streamed_wav_takes_the_rest_of_the_file() -> None:
    """A WAV written as it was recorded says 0 or 0xFFFFFFFF for its data length."""
    data = bytearray(wav(16_000, 1, 2, 32_000))
    at = data.find(b"data")
    for unknown in (0, 0xFFFFFFFF):
        struct.pack_into("<I", data, at + 4, unknown)
        assert measured(bytes(data)) == 2000


def test_truncated_wav_is_timed_by_what_is_there() -> None:
    data = wav(16_000, 1, 2, 32_000)
    cut = data[: len(data) // 2]
    assert measured(cut) == pytest.approx(1000, abs=1)


def test_wav_without_a_format_chunk_before_its_data_is_unknown() -> None:
    data = b"RIFF" + struct.pack("<I", 36) + b"WAVE" + b"data" + struct.pack("<I", 1000) + bytes(1000)
    assert measured(data) is None


def mp3_frame(header: bytes, length: int, body: bytes = b"") -> bytes:
    return header + body + bytes(length - len(header) - len(body))


# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, stereo, no padding: 417 bytes, 1152 samples.
V1_128 = bytes((0xFF, 0xFB, 0x90, 0x00))


def test_constant_bitrate_mp3() -> None:
    data = mp3_frame(V1_128, 417) * 100
    # 100 frames of 1152 samples at 44.1 kHz: 2612 ms; read as bytes over bitrate (padding left out): 2606.
    assert measured(data) == pytest.approx(2612, rel=0.01)


def test_mp3_behind_an_id3_tag() -> None:
    tag_body = b"TIT2" + bytes((0, 0, 0, 6)) + b"\0\0" + b"\x03title"
    size = len(tag_body)
    tag = b"ID3\x04\x00\x00" + bytes((0, 0, size >> 7, size & 0x7F)) + tag_body
    data = tag + mp3_frame(V1_128, 417) * 200
    assert measured(data) == pytest.approx(5224, rel=0.01)


def test_xing_frame_count_wins_over_the_bitrate() -> None:
    """A VBR file's first frame says how many frames follow: 1000 x 1152 / 44100 s."""
    xing = b"Xing" + struct.pack(">II", 1, 1000)
    first = mp3_frame(V1_128, 417, bytes(32) + xing)  # after 32 bytes of stereo side information
    data = first + mp3_frame(V1_128, 417) * 50
    assert measured(data) == 1000 * 1152 * 1000 // 44_100


def test_vbri_frame_count() -> None:
    vbri = b"VBRI" + struct.pack(">HHHII", 1, 0, 75, 123_456, 500)
    first = mp3_frame(V1_128, 417, bytes(32) + vbri)
    data = first + mp3_frame(V1_128, 417) * 10
    assert measured(data) == 500 * 1152 * 1000 // 44_100


def test_the_mocks_own_mp3() -> None:
    """MPEG-2 Layer III at 16 kHz, 32 kbit/s, mono: 36 ms a frame."""
    text = "Speech from the mock, as MP3."
    data = audio_files.mp3(text)
    frames = -(-audio_files.speech_ms(text) // 36)
    assert measured(data) == frames * 36


def flac(rate: int, samples: int) -> bytes:
    packed = (rate << 44) | (0 << 41) | (15 << 36) | samples
    streaminfo = struct.pack(">HH", 4096, 4096) + bytes(6) + packed.to_bytes(8, "big") + bytes(16)
    return b"fLaC" + bytes((0x80, 0, 0, 34)) + streaminfo + bytes(1000)


def test_flac_streaminfo() -> None:
    assert measured(flac(48_000, 96_000)) == 2000


def test_flac_without_a_sample_count_is_unknown() -> None:
    assert measured(flac(48_000, 0)) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"RIFF",
        b"OggS" + bytes(4000),  # Ogg: not read
        bytes(4000),
        # Four bytes that look like a frame header, then no second frame where it says.
        V1_128 + b"\x01" * 1000,
        # An ID3 tag larger than the head: its audio cannot be seen.
        b"ID3\x04\x00\x00" + bytes((0, 0x08, 0, 0)) + bytes(5000),
    ],
)
def test_unknown(data: bytes) -> None:
    assert measured(data) is None


def test_size_zero_is_unknown() -> None:
    assert duration_ms(wav(16_000, 1, 2, 100), 0) is None


def test_a_size_short_of_the_head_is_never_a_negative_length() -> None:
    data = audio_files.mp3("a tag, then frames")
    assert duration_ms(data, 5) is None  # a size that ends inside the ID3 tag


def test_hostile_bytes_never_raise() -> None:
    rng = random.Random(28)
    seeds = [wav(16_000, 1, 2, 100), mp3_frame(V1_128, 417) * 3, flac(44_100, 1000), audio_files.mp3("x")]
    for _ in range(2000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[: rng.randint(0, len(data))])
        result = duration_ms(cut, rng.randint(0, 10**9))
        assert result is None or result >= 0
