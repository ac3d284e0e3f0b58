"""The requests that are neither a chat nor embeddings: images, audio,
moderation and rerank, each in the shape OpenAI (or, for rerank, Cohere and
Jina) defines, and what each answers with.

A request rides in ``Envelope.task`` (one of ``TaskRequest``, told apart by
``kind``); its answer in ``Final.task_result``. Bytes never ride on the bus
(a message holds at most 8 MB, and an upload may be 25 MB or more): an
uploaded image or audio file, a generated image, is kept in the gateway's
object store (``subjects.OBJ_BLOBS``) and travels as a ``BlobRef``. A speech
answer's audio is streamed as ``Chunk.data`` slices, as a REST answer's body.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.chat import Integral, integral
from schemas.reservation import Reservation

ImageFormat = Literal["url", "b64_json"]
TranscriptFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class BlobRef(msgspec.Struct, frozen=True, omit_defaults=True):
    """Bytes in the gateway's object store, by name. The name is the
    gateway's own ("<tenant>/<kind>/<random id>"), never a caller's: a
    caller-supplied ref is refused by policy (only the ingress and the
    provider stage make them)."""

    name: str
    size: int
    sha256: str = ""
    content_type: str = ""
    # The file name the caller gave (multipart ``filename``), passed to the
    # upstream: some infer the audio format from it.
    filename: str = ""


class ImageRequest(msgspec.Struct, tag="image", tag_field="kind", omit_defaults=True):
    """``POST /v1/images/generations`` (``edit`` False) or ``/v1/images/edits``
    (True, with ``images`` and an optional ``mask``)."""

    model: str
    prompt: str
    edit: bool = False
    images: list[BlobRef] = []
    mask: BlobRef | None = None
    n: Integral | None = None
    size: str | None = None
    quality: str | None = None
    response_format: ImageFormat | None = None
    style: str | None = None
    background: str | None = None
    output_format: str | None = None
    output_compression: Integral | None = None
    moderation: str | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        self.n = integral("n", self.n)
        self.output_compression = integral("output_compression", self.output_compression)


class TranscriptionRequest(msgspec.Struct, tag="transcription", tag_field="kind", omit_defaults=True):
    """``POST /v1/audio/transcriptions`` (``translate`` False) or
    ``/v1/audio/translations`` (True: into English)."""

    model: str
    audio: BlobRef
    translate: bool = False
    language: str | None = None
    prompt: str | None = None
    response_format: TranscriptFormat | None = None
    temperature: float | None = None
    timestamp_granularities: list[Literal["word", "segment"]] | None = None
    stream: bool = False
    # How long the audio is, when the ingress could read it from the file's
    # own header (WAV); 0: unknown. What a budget reserves for before the
    # upstream says how long it was.
    duration_ms: int = 0


class SpeechRequest(msgspec.Struct, tag="speech", tag_field="kind", omit_defaults=True):
    """``POST /v1/audio/speech``: the audio comes back as ``Chunk.data``
    slices as the upstream sends them (``stream_format`` "sse": as OpenAI's
    ``speech.audio.delta`` events instead)."""

    model: str
    input: str
    voice: str
    response_format: SpeechFormat | None = None
    speed: float | None = None
    instructions: str | None = None
    stream_format: Literal["audio", "sse"] | None = None


class ModerationImageUrl(msgspec.Struct):
    url: str


class ModerationPart(msgspec.Struct, omit_defaults=True):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ModerationImageUrl | None = None


class ModerationRequest(msgspec.Struct, tag="moderation", tag_field="kind", omit_defaults=True):
    """``POST /v1/moderations``."""

    model: str
    # A text, texts, or parts (text and images; OpenAI's omni models).
    input: str | list[str | ModerationPart]


class RerankDocument(msgspec.Struct, omit_defaults=True):
    """A document given as an object (Cohere's v1 and Jina accept these)."""

    text: str


class RerankRequest(msgspec.Struct, tag="rerank", tag_field="kind", omit_defaults=True):
    """``POST /v1/rerank`` and ``/v2/rerank``, as Cohere and Jina define it."""

    model: str
    query: str
    documents: list[str | RerankDocument]
    top_n: Integral | None = None
    return_documents: bool | None = None
    max_tokens_per_doc: Integral | None = None

    def __post_init__(self) -> None:
        self.top_n = integral("top_n", self.top_n)
        self.max_tokens_per_doc = integral("max_tokens_per_doc", self.max_tokens_per_doc)


NativeBatchOp = Literal["submit", "poll", "results", "cancel"]


class NativeBatchRequest(msgspec.Struct, tag="native_batch", tag_field="kind", omit_defaults=True):
    """One step of a batch run as one batch of a provider's own batch API
    (a ``native_batch`` deployment): submit its lines, ask how far it got,
    fetch its results, cancel it. Only the ingress's batch driver sends
    these: policy refuses them from anyone else, since ``cost_pico_usd`` is
    the ingress's word."""

    # The model every line names: routing picks its native_batch deployment.
    model: str
    op: NativeBatchOp
    # Sluice's batch id: the upstream batch's metadata, so a submit sent again finds it.
    batch_id: str
    # submit: the batch's endpoint, its lines (``schemas.native_batch.NativeLines``,
    # msgpack, in the blob store), how many, and the most they may cost at the
    # deployment's batch price (what policy reserves from the budgets).
    endpoint: str = ""
    lines: BlobRef | None = None
    line_count: int = 0
    cost_pico_usd: int = 0
    # poll, results, cancel: the upstream batch, and the deployment that holds it.
    upstream_id: str = ""
    deployment: str = ""


TaskRequest = (
    ImageRequest | TranscriptionRequest | SpeechRequest | ModerationRequest | RerankRequest | NativeBatchRequest
)


class ImageOut(msgspec.Struct, omit_defaults=True):
    """One image made: kept in the object store (``blob``) by the provider
    stage; the ingress renders it as ``b64_json`` or a URL it serves."""

    blob: BlobRef
    revised_prompt: str | None = None
    # Filled by the ingress just before rendering (``ingress.image_content.inline``):
    # the image's base64, or the URL it serves it at. Policy ignores them.
    b64_json: str = ""
    url: str = ""


class ImagesResult(msgspec.Struct, tag="images", tag_field="kind", omit_defaults=True):
    images: list[ImageOut]
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None
    # Of the usage's prompt tokens, those of the input images (an edit's, on
    # the GPT image models): OpenAI's ``usage.input_tokens_details``.
    input_image_tokens: int = 0


class TranscriptSegment(msgspec.Struct, omit_defaults=True):
    id: int
    start: float
    end: float
    text: str
    # Whisper's own figures for the segment, as the upstream gave them (a
    # caller drops a hallucinated one by its no_speech_prob and avg_logprob).
    seek: int | None = None
    tokens: list[int] | None = None
    temperature: float | None = None
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None


class TranscriptWord(msgspec.Struct):
    word: str
    start: float
    end: float


class TranscriptResult(msgspec.Struct, tag="transcript", tag_field="kind", omit_defaults=True):
    text: str
    language: str | None = None
    duration_s: float | None = None
    segments: list[TranscriptSegment] | None = None
    words: list[TranscriptWord] | None = None
    # The answer as the upstream wrote it, for the formats that are not
    # JSON (text, srt, vtt): passed to the caller as it is.
    body: str = ""


class SpeechResult(msgspec.Struct, tag="speech", tag_field="kind", omit_defaults=True):
    """The end of a speech answer whose audio went out as ``Chunk.data``
    (or whole in ``Final.data``)."""

    content_type: str
    bytes: int = 0


class ModerationVerdict(msgspec.Struct, omit_defaults=True):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]] | None = None


class ModerationResult(msgspec.Struct, tag="moderation", tag_field="kind", omit_defaults=True):
    id: str
    results: list[ModerationVerdict]


class RerankHit(msgspec.Struct, omit_defaults=True):
    index: int
    relevance_score: float
    # The document, when the request asked for it back (``return_documents``).
    document: str | None = None


class RerankResult(msgspec.Struct, tag="rerank", tag_field="kind", omit_defaults=True):
    id: str
    results: list[RerankHit]


# Where an upstream batch stands: still running, or ended (completed,
# failed, expired, cancelled: its results say which lines got answers).
NativeBatchState = Literal["running", "ended"]


class NativeBatchResult(msgspec.Struct, tag="native_batch", tag_field="kind", omit_defaults=True):
    """What a step of a native batch found (``NativeBatchRequest``)."""

    upstream_id: str
    deployment: str
    state: NativeBatchState = "running"
    # The upstream's own word for it ("in_progress", "finalizing", "ended", ...), for logs.
    upstream_status: str = ""
    # Lines answered and failed so far, as the upstream counts them.
    completed: int = 0
    failed: int = 0
    # results: each line's end (``schemas.native_batch.NativeLineEnds``, msgpack, in the blob store).
    results: BlobRef | None = None
    # submit: what policy reserved from the budgets, kept until the lines'
    # results settle it (the submit's own end settles everything else).
    reservation: Reservation | None = None
    # Why the upstream failed the whole batch, if it did.
    error: str = ""


TaskResult = (
    ImagesResult | TranscriptResult | SpeechResult | ModerationResult | RerankResult | NativeBatchResult
)
