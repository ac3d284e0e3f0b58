"""The requests ``loadtest.tasks_bench`` times: one per new endpoint of
issue 28, each as a client sends it to the gateway, and how an answer is
checked (status 200 and a shape that parses, the same check for the
gateway's answer and the mock's).

The direct request is not written here: it is the body the gateway's
provider stage sent the mock for the same request, read back from the mock
(``/mock/last-request``), sent to the deployment's own URL (``upstream``).
So "direct" is the deployment's own body shape byte for byte, whatever the
adapter writes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
from openai.types import ImagesResponse, ModerationCreateResponse
from openai.types.audio import Transcription, Translation

from loadtest.mock_upstream import audio_files
from loadtest.mock_upstream.images_shape import PNG_SIGNATURE, png

# The models of the bench's config (tasks_bench.CONFIG), as the demo config names them.
IMAGE_MODEL = "demo-image"
TRANSCRIBE_MODEL = "demo-transcribe"
SPEECH_MODEL = "demo-speech"
MODERATION_MODEL = "demo-moderation"
COHERE_RERANK = "demo-rerank"
JINA_RERANK = "demo-rerank-jina"

IMAGE_PROMPT = "A lighthouse on a rocky coast at dusk, in watercolour."
# The mock speaks 60 ms of 16 kHz 16-bit audio a character: these 53 make a WAV of ~100 KB.
HEARD = "Sluice measures what a transcription adds to a call."
# 200 characters of input, as issue 28's speech figure asks.
SPOKEN = ("Sluice streams the speech back to its caller as the upstream makes it, slice by slice. " * 3)[:200]
RERANK_QUERY = "Which river runs through the capital city?"
RERANK_DOCUMENTS = [
    f"Document {i}: the {word} river flows past the old {place} and on to the sea."
    for i, (word, place) in enumerate(
        (w, p)
        for w in ("broad", "quiet", "northern", "winding", "silver")
        for p in ("capital city", "harbour town", "mill", "bridge")
    )
]


class ReplyError(Exception):
    """An answer that is not what the endpoint answers: the run's numbers would mean nothing."""


class RerankHit(msgspec.Struct):
    index: int
    relevance_score: float


class Ranking(msgspec.Struct):
    """What Cohere's /v2/rerank and Jina's /v1/rerank both answer (their other fields aside)."""

    results: list[RerankHit]


_ranking = msgspec.json.Decoder(Ranking).decode


@dataclass(frozen=True)
class Answer:
    """One answer as the client read it."""

    status: int
    headers: httpx.Headers
    body: bytes


@dataclass(frozen=True)
class Endpoint:
    """One of the figures: ``body`` (of ``content_type``) is what a client
    sends the gateway at ``path``, ``upstream`` the path under the mock
    where the deployment is called; ``check(answer, via_gateway)`` raises
    ``ReplyError`` for a wrong answer."""

    name: str
    path: str
    body: bytes
    content_type: str
    upstream: str
    check: Callable[[Answer, bool], None]
    # Time to the first byte is a figure of its own (speech's audio streams).
    streamed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _ok(answer: Answer) -> None:
    if answer.status != 200:
        raise ReplyError(f"status {answer.status}: {answer.body[:300]!r}")


def _parsed(model: Any, answer: Answer) -> Any:
    _ok(answer)
    try:
        return model.model_validate_json(answer.body)
    except ValueError as exc:  # pydantic's ValidationError is one
        raise ReplyError(f"not a {model.__name__}: {exc}; {answer.body[:300]!r}") from exc


def check_image(as_url: bool) -> Callable[[Answer, bool], None]:
    """One PNG, as base64; through the gateway as its own URL when asked
    (the mock always answers the deployment's base64: the gateway asks it so)."""

    def check(answer: Answer, via_gateway: bool) -> None:
        images = _parsed(ImagesResponse, answer).data or []
        if len(images) != 1:
            raise ReplyError(f"{len(images)} images, not 1")
        if as_url and via_gateway:
            if not (images[0].url or "").startswith("http") or images[0].b64_json:
                raise ReplyError(f"no URL of the gateway's: {images[0]!r:.300}")
            return
        if not base64.b64decode(images[0].b64_json or "").startswith(PNG_SIGNATURE):
            raise ReplyError("b64_json is not a PNG")

    return check


def check_transcript(model: type[Transcription] | type[Translation]) -> Callable[[Answer, bool], None]:
    """The text the mock's own WAV carries, given back."""

    def check(answer: Answer, via_gateway: bool) -> None:
        text = _parsed(model, answer).text
        if text != HEARD:
            raise ReplyError(f"transcript {text!r}, not {HEARD!r}")

    return check


def check_speech(answer: Answer, via_gateway: bool) -> None:
    """The mock's MP3 of the input, byte for byte."""
    _ok(answer)
    if answer.headers.get("content-type", "").split(";")[0] != "audio/mpeg":
        raise ReplyError(f"content-type {answer.headers.get('content-type')!r}, not audio/mpeg")
    if answer.body != audio_files.mp3(SPOKEN):
        raise ReplyError(f"{len(answer.body)} bytes of audio, not the mock's {len(audio_files.mp3(SPOKEN))}")


def check_moderation(answer: Answer, via_gateway: bool) -> None:
    if len(_parsed(ModerationCreateResponse, answer).results) != 1:
        raise ReplyError("not one verdict")


def check_ranking(answer: Answer, via_gateway: bool) -> None:
    """Every document ranked once."""
    _ok(answer)
    try:
        hits = _ranking(answer.body).results
    except msgspec.DecodeError as exc:
        raise ReplyError(f"not a ranking: {exc}; {answer.body[:300]!r}") from exc
    if sorted(h.index for h in hits) != list(range(len(RERANK_DOCUMENTS))):
        raise ReplyError(f"indices {[h.index for h in hits]}")


def encoded(**content: Any) -> tuple[bytes, str]:
    """A body as httpx writes it (``json=``, or ``data=`` and ``files=`` as
    multipart), and its content type: encoded once, sent as bytes each time."""
    request = httpx.Request("POST", "http://body.invalid/", **content)
    return request.read(), request.headers["content-type"]


def endpoints() -> list[Endpoint]:
    """Each endpoint of issue 28, in the order timed. Paths are relative;
    the bench joins them to the gateway's origin and the mock's."""
    picture = png(64, 64)
    wav = audio_files.wav(HEARD)
    image = {"model": IMAGE_MODEL, "prompt": IMAGE_PROMPT, "size": "1024x1024", "quality": "low"}
    edit_fields = {"model": IMAGE_MODEL, "prompt": IMAGE_PROMPT, "size": "1024x1024", "quality": "low"}
    heard = {"model": TRANSCRIBE_MODEL, "response_format": "json"}
    audio_file = {"file": ("heard.wav", wav, "audio/wav")}
    documents = {"query": RERANK_QUERY, "documents": RERANK_DOCUMENTS}
    return [
        Endpoint(
            "images b64_json",
            "/v1/images/generations",
            *encoded(json=image | {"response_format": "b64_json"}),
            "/v1/images/generations",
            check_image(as_url=False),
        ),
        Endpoint(
            "images url",
            "/v1/images/generations",
            *encoded(json=image | {"response_format": "url"}),
            "/v1/images/generations",
            check_image(as_url=True),
        ),
        Endpoint(
            "image edit (64x64 PNG)",
            "/v1/images/edits",
            *encoded(data=edit_fields, files={"image": ("scene.png", picture, "image/png")}),
            "/v1/images/edits",
            check_image(as_url=False),
            extra={"upload_bytes": len(picture)},
        ),
        Endpoint(
            "transcription (WAV)",
            "/v1/audio/transcriptions",
            *encoded(data=heard, files=audio_file),
            "/v1/audio/transcriptions",
            check_transcript(Transcription),
            extra={"upload_bytes": len(wav)},
        ),
        Endpoint(
            "translation (WAV)",
            "/v1/audio/translations",
            *encoded(data=heard, files=audio_file),
            "/v1/audio/translations",
            check_transcript(Translation),
            extra={"upload_bytes": len(wav)},
        ),
        Endpoint(
            "speech (200 chars, mp3)",
            "/v1/audio/speech",
            *encoded(json={"model": SPEECH_MODEL, "input": SPOKEN, "voice": "alloy"}),
            "/v1/audio/speech",
            check_speech,
            streamed=True,
            extra={"audio_bytes": len(audio_files.mp3(SPOKEN))},
        ),
        Endpoint(
            "moderation",
            "/v1/moderations",
            *encoded(json={"model": MODERATION_MODEL, "input": IMAGE_PROMPT}),
            "/v1/moderations",
            check_moderation,
        ),
        Endpoint(
            "rerank cohere /v2 (20 docs)",
            "/v2/rerank",
            *encoded(json={"model": COHERE_RERANK} | documents),
            "/v2/rerank",
            check_ranking,
        ),
        Endpoint(
            "rerank jina /v1 (20 docs)",
            "/v1/rerank",
            *encoded(json={"model": JINA_RERANK} | documents),
            "/v1/rerank",
            check_ranking,
        ),
    ]
