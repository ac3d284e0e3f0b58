"""Audio formats by name: what content type speech in each format is sent
as, and what file name extension an upload of a content type gets (an
upstream may tell the format by the file name alone)."""

from __future__ import annotations

from schemas.tasks import SpeechFormat

# OpenAI's speech answers, by ``response_format`` (mp3 when none is given).
SPEECH_CONTENT_TYPES: dict[SpeechFormat, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

_EXTENSIONS = {
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/webm": "webm",
    "video/webm": "webm",
    "audio/mp4": "m4a",
    "audio/m4a": "m4a",
    "audio/x-m4a": "m4a",
    "video/mp4": "mp4",
    "audio/aac": "aac",
}


def speech_content_type(fmt: SpeechFormat | None) -> str:
    return SPEECH_CONTENT_TYPES[fmt or "mp3"]


def upload_filename(filename: str, content_type: str) -> str:
    """The name an upload goes upstream with: the caller's, else one whose
    extension follows the content type ("audio" when it says nothing known)."""
    if filename:
        return filename
    ext = _EXTENSIONS.get(content_type.partition(";")[0].strip().lower())
    return f"audio.{ext}" if ext else "audio"
