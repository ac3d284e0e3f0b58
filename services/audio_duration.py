"""How long an audio file plays, read from its first bytes and its size
alone: a WAV's header, an MP3's frames (its Xing/Info or VBRI frame count,
else the constant bitrate every frame in view agrees on), a FLAC's
STREAMINFO. Anything else, or a header that does not hold together, is
unknown (None); ``estimated_ms`` is what an unknown length is billed as.

The header is the caller's to write: a length is believed only where the
file's size could hold it. Each reader checks the header against what
decoders use (a WAV's sample rate and block size, not its byte rate; an
MP3's every frame, not its first), and the bitrate the length implies must
be one its format can have: else a forged header (a byte rate of
0xFFFFFFFF) would bill 13 minutes of audio as 6 ms.

Pure: no I/O. The caller hands it the first ``HEAD_BYTES`` it read of the
file (fewer when the file is shorter) and the file's whole size.
"""

from __future__ import annotations

import struct

# What the readers look at: enough for a WAV whose data chunk follows a
# modest LIST chunk, and an MP3 behind a small ID3 tag (one with cover art
# is larger: unknown).
HEAD_BYTES = 64 * 1024
# What a file whose length cannot be told is billed as: its size coded at
# 32 kbit/s. That is at or below what callers' speech comes in (any PCM,
# A-law or mu-law WAV is 64 kbit/s or more, MPEG-1 Layer III starts at 32,
# AAC/M4A voice is 32-64), so the guess bills no less than the audio plays;
# only low-rate Opus or AMR (16-24 kbit/s) is billed short, and OpenAI
# reports the length itself in its JSON answers.
UNKNOWN_KBPS = 32
# The least bitrate a length is believed at: 8 kbit/s (a byte a ms), the
# least MPEG audio codes at. A longer length than that would be a header's
# word against the file's size (and past what a budget reserves for an
# unread length, ``task_usage.AUDIO_BYTES_PER_MS``).
MIN_KBPS = 8

# A WAV's samples as a decoder reads them: PCM, IEEE float, A-law, mu-law,
# or WAVE_FORMAT_EXTENSIBLE (whose container size is still block_align).
# A compressed format (ADPCM, GSM, MP3 in WAV) is not timed by its header.
_WAV_SAMPLE_FORMATS = (1, 3, 6, 7, 0xFFFE)
_WAV_MAX_RATE = 384_000
_WAV_MAX_CHANNELS = 8
_WAV_MAX_SAMPLE_BYTES = 8

# MPEG audio, Layer III: kbit/s by bitrate index (MPEG-1; MPEG-2 and 2.5).
_MP3_KBPS_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MP3_KBPS_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
# Hz by the header's version bits (0: MPEG-2.5, 2: MPEG-2, 3: MPEG-1) and rate index.
_MP3_RATES = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}
# A VBR file's average bitrate may sit a little outside its table's range
# (its tags are in the size; the Xing frame codes no audio).
_VBR_SLACK_PERCENT = 10
# What follows the last frame of a short file: an ID3v1 or APEv2 tag.
_MP3_TRAILERS = (b"TAG", b"APETAGEX")

# FLAC's frames may code a little more than the PCM they hold (headers,
# a verbatim subframe): 5%, and a few KB of metadata beyond the head.
_FLAC_SLACK_PERCENT = 5
_FLAC_SLACK_BYTES = 16 * 1024


def duration_ms(head: bytes, size: int) -> int | None:
    """The playing time in ms of a file of ``size`` bytes that begins with
    ``head``; None when it cannot be told cheaply, or its header's word is
    not one the file's size could hold."""
    if size <= 0 or len(head) < 12:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        ms = _wav(head, size)
    elif head[:4] == b"fLaC":
        ms = _flac(head, size)
    else:
        ms = _mp3(head, size)
    if ms is None or ms > size * 8 // MIN_KBPS:
        return None
    return ms


def estimated_ms(size: int) -> int:
    """What a file of ``size`` bytes whose length is unknown is billed as."""
    return max(0, size) * 8 // UNKNOWN_KBPS


def _wav(head: bytes, size: int) -> int | None:
    """RIFF chunks in order: "fmt " gives the sample frame (rate and block
    size, checked against each other and the byte rate), "data" the length
    (a streamed WAV's is 0 or 0xFFFFFFFF: the rest of the file, then)."""
    offset, frame_bytes_per_s = 12, 0
    while offset + 8 <= len(head):
        chunk_id = head[offset : offset + 4]
        (chunk_size,) = struct.unpack_from("<I", head, offset + 4)
        body = offset + 8
        if chunk_id == b"fmt ":
            if chunk_size < 16 or body + 16 > len(head):
                return None
            frame_bytes_per_s = _wav_rate(*struct.unpack_from("<HHIIHH", head, body))
            if not frame_bytes_per_s:
                return None
        elif chunk_id == b"data":
            if not frame_bytes_per_s:
                return None  # no format before the samples: not a WAV we can time
            available = max(0, size - body)
            data = available if chunk_size in (0, 0xFFFFFFFF) else min(chunk_size, available)
            return data * 1000 // frame_bytes_per_s
        offset = body + chunk_size + (chunk_size & 1)
    return None


def _wav_rate(tag: int, channels: int, rate: int, byte_rate: int, block_align: int, bits: int) -> int:
    """Bytes a second of a WAV's samples, as a decoder plays them (its rate
    times its block size); 0 when the format chunk does not hold together:
    a byte rate that is not that product, a block that is not the
    channels' samples, or a rate, channel count or width no audio has."""
    if tag not in _WAV_SAMPLE_FORMATS or not 0 < rate <= _WAV_MAX_RATE or not 0 < channels <= _WAV_MAX_CHANNELS:
        return 0
    sample_bytes = -(-bits // 8)
    if not 0 < sample_bytes <= _WAV_MAX_SAMPLE_BYTES or block_align != channels * sample_bytes:
        return 0
    per_s = rate * block_align
    return per_s if byte_rate == per_s else 0


def _flac(head: bytes, size: int) -> int | None:
    """The first metadata block is STREAMINFO (type 0): 10 bytes into it,
    20 bits of sample rate, 3 of channels, 5 of bits a sample, then 36 bits
    of total samples. The length is believed when the audio's bytes (the
    file less its metadata blocks) are no more than that PCM would take."""
    if len(head) < 8 + 18 or head[4] & 0x7F != 0:
        return None
    packed = int.from_bytes(head[8 + 10 : 8 + 18], "big")
    rate = packed >> 44
    channels = ((packed >> 41) & 7) + 1
    bits = ((packed >> 36) & 31) + 1
    samples = packed & ((1 << 36) - 1)
    if not rate or not samples:
        return None
    audio = max(0, size - _flac_metadata_bytes(head))
    pcm_bytes = samples * channels * bits // 8
    if audio * 100 > pcm_bytes * (100 + _FLAC_SLACK_PERCENT) + _FLAC_SLACK_BYTES * 100:
        return None  # more bytes than its samples could take: fewer samples than it says
    return samples * 1000 // rate


def _flac_metadata_bytes(head: bytes) -> int:
    """Where a FLAC's frames begin: past each metadata block whose header
    is in view (a block's length is known from its header, even when its
    body, a cover picture, runs past the head)."""
    offset = 4
    while offset + 4 <= len(head):
        last = head[offset] & 0x80
        length = int.from_bytes(head[offset + 1 : offset + 4], "big")
        offset += 4 + length
        if last:
            break
    return offset


def _mp3(head: bytes, size: int) -> int | None:
    start = _after_id3(head)
    if start is None or start + 4 > len(head) or size <= start:
        return None
    frame = _mp3_frame(head, start)
    if frame is None:
        return None
    version, kbps, rate, _, mono = frame
    samples_per_frame = 1152 if version == 3 else 576
    frames = _vbr_frames(head, start, version, mono)
    if frames is not None:
        ms = frames * samples_per_frame * 1000 // rate
        return ms if _plausible_vbr(size - start, ms, version) else None
    if not _constant_bitrate(head, start, frame):
        return None
    return (size - start) * 8 // kbps  # bits / (kbit/s) = ms


def _plausible_vbr(audio_bytes: int, ms: int, version: int) -> bool:
    """A frame count whose average bitrate over the file is one of its
    version's (a count written small would bill the file short)."""
    if ms <= 0:
        return False
    table = _MP3_KBPS_V1 if version == 3 else _MP3_KBPS_V2
    bits = audio_bytes * 8 * 100  # per ms, times 100: kbit/s x 100
    return table[1] * (100 - _VBR_SLACK_PERCENT) * ms <= bits <= table[-1] * (100 + _VBR_SLACK_PERCENT) * ms


def _constant_bitrate(head: bytes, start: int, first: tuple[int, int, int, int, bool]) -> bool:
    """Every frame in view follows the one before where its length says,
    at the first's version, bitrate and rate: a first frame that claims
    320 kbit/s before 32 kbit/s ones would bill the file at a tenth. A
    file may end in a tag (ID3v1, APEv2); anything else is not an MP3."""
    at = start
    while at + 4 <= len(head):
        frame = _mp3_frame(head, at)
        if frame is None:
            return at > start and head[at : at + 8].startswith(_MP3_TRAILERS)
        if frame[:3] != first[:3]:
            return False
        at += frame[3]
    return True


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
