"""The audio requests' upstream call: a transcription or translation (the
upload streamed from the object store into the upstream's multipart body)
and speech (its audio on to the requester as it is read).

What a call is billed:

* a transcription, the audio's length in ms (``unit`` "audio_ms"): as the
  upstream reported it (``usage.seconds``, or verbose_json's ``duration``),
  else measured by us from the file's header (``services.audio_duration``;
  source "estimated"), else guessed from the file's size
  (``audio_duration.estimated_ms``, estimated too). A model that reports
  tokens (gpt-4o-transcribe) has them on the usage beside the ms, and the
  catalog, which prices it per token, bills those (``usage.cost_of``); when
  it reports none (``response_format`` text), they are estimated from the
  audio's length and the transcript (``task_usage.transcription_usage``);
* speech, the characters of its input (``unit`` "character"), and the
  tokens a model reports in its ``speech.audio.done`` event (gpt-4o-mini-tts,
  priced per token), else (raw audio, no event) the tokens it would take
  (``task_usage.speech_usage``).

``progress.reported`` holds that usage as soon as it is known (speech's when
the request leaves, a transcription's once its upload went out), so a call
cut short is billed what the upstream already had (``usage.task_cut_short``).

A streamed transcription's text and speech's audio reach the requester
through ``on_body`` (as ``Chunk.data``: UTF-8 text deltas, audio slices);
once the first went out, a failure is not tried again elsewhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import httpx
import msgspec

from schemas.chat import Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError, InternalError, InvalidRequest, UpstreamError
from schemas.tasks import SpeechRequest, SpeechResult, TranscriptionRequest, TranscriptResult
from services import audio_duration, audio_formats, task_usage
from services import usage as usage_svc
from services.providers.call import CallFailed, CallOutcome, CallProgress, _failed
from services.providers.http import Upstream, UpstreamResponse
from services.providers.openai import audio as oa
from services.providers.openai.chat import OpenAIChat
from services.providers.registry import provider
from services.providers.sse import sse_data
from services.providers.tasks import BlobAccess, OnBody, task_outcome
from services.providers.upload_body import FilePart, MultipartBody

# The most bytes one ``Chunk.data`` carries (a message on the bus stays small).
SLICE = 64 * 1024


async def call(
    client: Upstream,
    dep: Deployment,
    task: TranscriptionRequest | SpeechRequest,
    progress: CallProgress,
    blobs: BlobAccess,
    on_body: OnBody,
) -> CallOutcome:
    """One try of an audio request at ``dep``."""
    known = provider(dep.provider)
    if known.family not in oa.AUDIO_FAMILIES or not isinstance(known.chat, OpenAIChat):
        error = InvalidRequest(f"Provider {dep.provider!r} (model deployment {dep.name!r}) serves no audio API.")
        raise CallFailed(error, time.time_ns(), 0, repeatable=False)
    if isinstance(task, SpeechRequest):
        return await SpeechCall(client, dep, known.chat, task, progress, on_body).run()
    return await TranscriptionCall(client, dep, known.chat, task, progress, blobs, on_body).run()


def _api_key(dep: Deployment) -> str | None:
    return os.environ.get(dep.api_key_env) if dep.api_key_env else None


def _slices(data: bytes) -> list[bytes]:
    return [data[i : i + SLICE] for i in range(0, len(data), SLICE)]


class _Try:
    """What both calls share: the timing, and whether anything reached the
    requester yet (then the walk must not try again elsewhere)."""

    def __init__(self, progress: CallProgress, on_body: OnBody) -> None:
        self.progress = progress
        self.on_body = on_body
        self.start_ns = time.time_ns()
        self.delivered = False

    async def deliver(self, data: bytes) -> None:
        if not self.progress.first_byte_ns:
            self.progress.first_byte_ns = time.time_ns()
        for piece in _slices(data):
            self.delivered = True
            await self.on_body(None, piece)

    async def deliver_text(self, text: str) -> None:
        """Text in slices of whole characters (at most 4 bytes each): every
        ``Chunk.data`` decodes on its own."""
        step = SLICE // 4
        for at in range(0, len(text), step):
            await self.deliver(text[at : at + step].encode())

    def failed(self, exc: GatewayError | httpx.TransportError) -> CallFailed:
        failed = _failed(exc, self.start_ns, self.progress.first_byte_ns)
        failed.repeatable = not self.delivered
        return failed

    def outcome(self, dep: Deployment, usage: Usage, result: TranscriptResult | SpeechResult) -> CallOutcome:
        return task_outcome(
            dep.upstream_model,
            usage,
            usage_svc.cost_of(usage, dep.catalog_model),
            result,
            self.start_ns,
            self.progress.first_byte_ns or time.time_ns(),
        )


class TranscriptionCall(_Try):
    def __init__(
        self,
        client: Upstream,
        dep: Deployment,
        adapter: OpenAIChat,
        task: TranscriptionRequest,
        progress: CallProgress,
        blobs: BlobAccess,
        on_body: OnBody,
    ) -> None:
        super().__init__(progress, on_body)
        self.client, self.dep, self.adapter, self.task, self.blobs = client, dep, adapter, task, blobs
        # The upload's first bytes as they went out: its header tells its length.
        self.head = bytearray()
        self.measured_ms: int | None = None
        self.body_error: GatewayError | None = None

    async def run(self) -> CallOutcome:
        dep, task = self.dep, self.task
        ref = task.audio
        filename = audio_formats.upload_filename(ref.filename, ref.content_type)
        part = FilePart("file", filename, ref.content_type, ref.size, self._tapped(self.blobs.read(ref)))
        body = MultipartBody(oa.transcription_fields(task, dep.upstream_model), [part])
        headers = oa.auth_headers(self.adapter, _api_key(dep)) | body.headers()
        url = oa.transcription_url(self.adapter, dep, task.translate)
        try:
            self.progress.sent = True
            resp = await self.client.post(url, headers, self._guarded(body.stream()), dep.timeout_s)
            try:
                if resp.status_code >= 400:
                    raise self.adapter.map_error(resp.status_code, await resp.aread(), resp.headers)
                if task.stream and _is_sse(resp):
                    result, reported = await self._streamed(resp)
                else:
                    data = await resp.aread()
                    self.progress.first_byte_ns = self.progress.first_byte_ns or time.time_ns()
                    result, reported = oa.parse_transcript(data, task)
                    if task.stream and result.text:  # whisper-1 answers a stream request whole
                        await self.deliver_text(result.text)
            finally:
                await resp.aclose()
        except Exception as exc:
            # The upload could not be read: ours, whatever the client made of it
            # (aiohttp reports it as a failed send).
            if self.body_error is not None:
                raise CallFailed(self.body_error, self.start_ns, 0, repeatable=False) from exc
            if isinstance(exc, GatewayError | httpx.TransportError):
                raise self.failed(exc) from exc
            raise
        return self.outcome(dep, self._settled(reported, result), result)

    async def _guarded(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The body, remembering why it could not be read to its end (the
        stored file unreadable, or not the size its ref says)."""
        try:
            async for piece in body:
                yield piece
        except Exception as exc:
            self.body_error = (
                exc if isinstance(exc, GatewayError) else InternalError("The upload could not be read from the store.")
            )
            raise

    async def _tapped(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The upload's bytes on to the body, its head kept; once all went
        out, its measured length is what a cut call bills."""
        async for chunk in chunks:
            room = audio_duration.HEAD_BYTES - len(self.head)
            if room > 0:
                self.head += chunk[:room]
            yield chunk
        self.measured_ms = audio_duration.duration_ms(bytes(self.head), self.task.audio.size)
        self.progress.reported = self._ours()

    async def _streamed(self, resp: UpstreamResponse) -> tuple[TranscriptResult, Usage | None]:
        """``transcript.text.delta`` events on to the requester as they come;
        ``transcript.text.done`` ends it with the whole text and the usage."""
        parts: list[str] = []
        async for events in sse_data(resp.aiter_bytes()):
            for data in events:
                event = oa.transcript_event(data)
                if event.type == "transcript.text.delta" and event.delta:
                    parts.append(event.delta)
                    await self.deliver_text(event.delta)
                elif event.type == "transcript.text.done":
                    return TranscriptResult(text=event.text or "".join(parts)), oa.usage_of(event.usage)
        raise UpstreamError("Upstream's transcript stream ended before its transcript.text.done event.")

    def _heard_ms(self) -> int:
        """The audio's length as we can tell it: its header's, else the
        request's (the ingress's reading), else a guess from its size."""
        return self.measured_ms or self.task.duration_ms or audio_duration.estimated_ms(self.task.audio.size)

    def _ours(self, transcript: str | None = None) -> Usage:
        """What the audio bills by our count (tokens estimated for a model priced by them)."""
        return task_usage.transcription_usage(self.task, self.dep.catalog_model, self._heard_ms(), transcript)

    def _settled(self, reported: Usage | None, result: TranscriptResult) -> Usage:
        if reported is not None and reported.unit == "audio_ms":
            return reported
        if reported is not None:  # tokens: the catalog prices the model by them
            return msgspec.structs.replace(reported, units=self._heard_ms(), unit="audio_ms")
        return self._ours(result.text)


class SpeechCall(_Try):
    def __init__(
        self,
        client: Upstream,
        dep: Deployment,
        adapter: OpenAIChat,
        task: SpeechRequest,
        progress: CallProgress,
        on_body: OnBody,
    ) -> None:
        super().__init__(progress, on_body)
        self.client, self.dep, self.adapter, self.task = client, dep, adapter, task
        self.sent_bytes = 0

    async def run(self) -> CallOutcome:
        dep, task = self.dep, self.task
        headers = oa.auth_headers(self.adapter, _api_key(dep)) | {"content-type": "application/json"}
        # Its characters, or the tokens a model priced by them would take (its
        # raw audio's answer says none): what it bills unless the upstream says.
        ours = task_usage.speech_usage(task, dep.catalog_model)
        reported: Usage | None = None
        try:
            self.progress.sent = True
            self.progress.reported = ours
            resp = await self.client.post(
                oa.speech_url(self.adapter, dep), headers, oa.speech_body(task, dep.upstream_model), dep.timeout_s
            )
            try:
                if resp.status_code >= 400:
                    raise self.adapter.map_error(resp.status_code, await resp.aread(), resp.headers)
                if task.stream_format == "sse":
                    reported = await self._events(resp)
                else:
                    async for data in resp.aiter_bytes():
                        await self._audio(data)
                content_type = audio_formats.speech_content_type(task.response_format)
            finally:
                await resp.aclose()
        except (GatewayError, httpx.TransportError) as exc:
            raise self.failed(exc) from exc
        usage = ours
        if reported is not None:
            usage = msgspec.structs.replace(reported, units=len(task.input), unit="character")
        return self.outcome(dep, usage, SpeechResult(content_type=content_type, bytes=self.sent_bytes))

    async def _audio(self, data: bytes) -> None:
        if data:
            self.sent_bytes += len(data)
            await self.deliver(data)

    async def _events(self, resp: UpstreamResponse) -> Usage | None:
        """``speech.audio.delta`` events' audio on as bytes (the renderer
        encodes them again for the caller); the done event's usage."""
        async for events in sse_data(resp.aiter_bytes()):
            for data in events:
                audio, usage, done = oa.speech_event(data)
                await self._audio(audio)
                if done:
                    return usage
        raise UpstreamError("Upstream's speech stream ended before its speech.audio.done event.")


def _is_sse(resp: UpstreamResponse) -> bool:
    return resp.headers.get("content-type", "").startswith("text/event-stream")
