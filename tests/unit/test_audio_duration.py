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
from services.audio_duration import HEAD_BYTES, duration_ms, estimated_ms


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


def xing_mp3(frames: int) -> bytes:
    """A VBR file's first frame saying ``frames`` frames follow, then the head of them."""
    xing = b"Xing" + struct.pack(">II", 1, frames)
    first = mp3_frame(V1_128, 417, bytes(32) + xing)  # after 32 bytes of stereo side information
    return first + mp3_frame(V1_128, 417) * 200


def test_xing_frame_count_wins_over_the_bitrate() -> None:
    """A VBR file's first frame says how many frames follow: 1000 x 1152 / 44100 s."""
    assert duration_ms(xing_mp3(1000)[:HEAD_BYTES], 1000 * 417) == 1000 * 1152 * 1000 // 44_100


def test_vbri_frame_count() -> None:
    vbri = b"VBRI" + struct.pack(">HHHII", 1, 0, 75, 123_456, 500)
    first = mp3_frame(V1_128, 417, bytes(32) + vbri)
    data = first + mp3_frame(V1_128, 417) * 499
    assert measured(data) == 500 * 1152 * 1000 // 44_100


def test_the_mocks_own_mp3() -> None:
    """MPEG-2 Layer III at 16 kHz, 32 kbit/s, mono: 36 ms a frame."""
    text = "Speech from the mock, as MP3."
    data = audio_files.mp3(text)
    frames = -(-audio_files.speech_ms(text) // 36)
    assert measured(data) == frames * 36


def flac(rate: int, samples: int, audio_bytes: int = 1000, picture: int = 0) -> bytes:
    """Mono 16-bit FLAC: STREAMINFO (and a PICTURE block of ``picture`` bytes), then its frames' bytes."""
    packed = (rate << 44) | (0 << 41) | (15 << 36) | samples
    streaminfo = struct.pack(">HH", 4096, 4096) + bytes(6) + packed.to_bytes(8, "big") + bytes(16)
    if not picture:
        return b"fLaC" + bytes((0x80, 0, 0, 34)) + streaminfo + bytes(audio_bytes)
    blocks = bytes((0, 0, 0, 34)) + streaminfo + bytes((0x86,)) + picture.to_bytes(3, "big") + bytes(picture)
    return b"fLaC" + blocks + bytes(audio_bytes)


def test_flac_streaminfo() -> None:
    # Two seconds of 48 kHz 16-bit mono (192,000 bytes as PCM) in 110,000 bytes.
    assert measured(flac(48_000, 96_000, 110_000)) == 2000


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


# A header is the caller's to write: each of these would bill minutes of
# audio as next to nothing (or a file as hours it cannot hold).


def test_a_wav_byte_rate_that_disagrees_with_its_samples_is_unknown() -> None:
    """13.6 minutes of 16 kHz 16-bit mono said to come at 0xFFFFFFFF bytes a second: 6 ms, were it believed."""
    data = bytearray(wav(16_000, 1, 2, 16_000 * 60))
    struct.pack_into("<I", data, data.find(b"fmt ") + 8 + 8, 0xFFFFFFFF)
    size = 16_000 * 2 * 816  # 13.6 minutes
    assert duration_ms(bytes(data[:HEAD_BYTES]), size) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tag", 0x11),  # IMA ADPCM: its bytes are not its samples
        ("tag", 0x55),  # MP3 in a WAV
        ("channels", 0),
        ("channels", 200),
        ("rate", 0),
        ("rate", 4_000_000),
        ("bits", 0),
        ("bits", 128),
    ],
)
def test_a_wav_format_no_decoder_plays_as_said_is_unknown(field: str, value: int) -> None:
    fields = {"tag": 1, "channels": 1, "rate": 16_000, "bits": 16}
    fields[field] = value
    width = -(-fields["bits"] // 8)
    block = fields["channels"] * width
    fmt = struct.pack(
        "<HHIIHH", fields["tag"], fields["channels"], fields["rate"], fields["rate"] * block, block, fields["bits"]
    )
    data = b"RIFF" + struct.pack("<I", 36 + 32_000) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
    data += b"data" + struct.pack("<I", 32_000) + bytes(32_000)
    assert measured(data) is None


def test_a_wav_block_size_that_is_not_its_channels_samples_is_unknown() -> None:
    """A block of 255 bytes at a byte rate to match, for 16-bit mono: a decoder reads 2 bytes a frame."""
    fmt = struct.pack("<HHIIHH", 1, 1, 16_000, 16_000 * 255, 255, 16)
    data = b"RIFF" + struct.pack("<I", 36 + 32_000) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
    data += b"data" + struct.pack("<I", 32_000) + bytes(32_000)
    assert measured(data) is None


def test_the_largest_wav_samples_believed_are_timed_by_rate_and_block() -> None:
    assert measured(wav(192_000, 8, 4, 19_200)) == 100


def test_an_mp3_whose_later_frames_disagree_with_its_first_is_unknown() -> None:
    """A 320 kbit/s first frame, then 32 kbit/s ones: read as the first, the file would bill at a tenth."""
    v1_320 = bytes((0xFF, 0xFB, 0xE0, 0x00))  # 1044 bytes
    v1_32 = bytes((0xFF, 0xFB, 0x10, 0x00))  # 104 bytes
    data = mp3_frame(v1_320, 1044) + mp3_frame(v1_32, 104) * 600
    assert measured(data) is None
    assert measured(mp3_frame(v1_32, 104) * 600) == pytest.approx(600 * 26, rel=0.01)


def test_an_mp3_may_end_in_a_tag() -> None:
    data = mp3_frame(V1_128, 417) * 20 + b"TAG" + bytes(125)
    assert measured(data) == pytest.approx(20 * 26, rel=0.05)


def test_a_frame_count_the_file_cannot_hold_is_unknown() -> None:
    # A million bytes said to be 10 frames (0.26 s, 30 Mbit/s): written small, it would bill the file short.
    assert duration_ms(xing_mp3(10)[:HEAD_BYTES], 1_000_000) is None
    # Said to be 10 million frames (72 hours in 1 MB, 30 bit/s): no MP3 codes so little.
    assert duration_ms(xing_mp3(10_000_000)[:HEAD_BYTES], 1_000_000) is None


def test_a_flac_sample_count_its_size_cannot_hold_is_unknown() -> None:
    # A 10 MB FLAC said to hold 1,000 samples (21 ms of 16-bit mono: 2,000 bytes as PCM).
    assert duration_ms(flac(48_000, 1_000, 1000)[:HEAD_BYTES], 10_000_000) is None
    # Said to hold 2^36 - 1 samples (16 days) in 110 KB.
    assert measured(flac(48_000, (1 << 36) - 1, 110_000)) is None


def test_a_flac_picture_past_the_head_is_not_counted_as_audio() -> None:
    """A cover picture of 2 MB before the frames: its length is in its block's header, in view."""
    data = flac(48_000, 96_000, 110_000, picture=2_000_000)
    assert duration_ms(data[:HEAD_BYTES], len(data)) == 2000


def test_an_unknown_length_is_billed_at_32_kbits() -> None:
    # 4 bytes a ms: 480,000 bytes bill two minutes.
    assert estimated_ms(480_000) == 120_000
    assert estimated_ms(0) == 0 and estimated_ms(-5) == 0
