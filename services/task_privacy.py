"""A tenant's privacy rules on an image, audio, moderation or rerank
request: the same detectors as chat over every text it sends upstream (an
image's prompt, the text to speak and its instructions, a transcription's
prompt, the texts to moderate, a rerank's query and documents), masked,
redacted, flagged or refused alike; on the way out, the documents a rerank
answer returns get the caller's own values back.

Uploaded bytes (an image to edit, audio to transcribe) are not read: a
detector reading a PNG or an MP3 finds noise, and a replacement would
corrupt it. Nor is a prompt-injection score taken: these models follow no
instructions of the caller's texts (an image prompt is the instruction).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import msgspec

from schemas.control import PrivacyRules
from schemas.envelope import Privacy
from schemas.tasks import (
    ImageRequest,
    ModerationPart,
    ModerationRequest,
    RerankDocument,
    RerankRequest,
    RerankResult,
    SpeechRequest,
    TaskRequest,
    TaskResult,
    TranscriptionRequest,
)
from services.masking import restore as restore_text
from services.privacy import Inspection, Slot, inspect_slots


def slots(task: TaskRequest) -> Iterator[Slot]:
    """Every text of ``task`` the upstream receives, and how to replace it."""
    match task:
        case ImageRequest():
            yield Slot("prompt", task.prompt, partial(setattr, task, "prompt"))
        case SpeechRequest():
            yield Slot("input", task.input, partial(setattr, task, "input"))
            if task.instructions:
                yield Slot("instructions", task.instructions, partial(setattr, task, "instructions"))
        case TranscriptionRequest() if task.prompt:
            yield Slot("prompt", task.prompt, partial(setattr, task, "prompt"))
        case ModerationRequest():
            yield from _moderation_slots(task)
        case RerankRequest():
            yield Slot("query", task.query, partial(setattr, task, "query"))
            docs = task.documents
            for i, doc in enumerate(docs):
                if isinstance(doc, RerankDocument):
                    yield Slot(f"documents[{i}].text", doc.text, partial(setattr, doc, "text"))
                else:
                    yield Slot(f"documents[{i}]", doc, partial(docs.__setitem__, i))


def _moderation_slots(task: ModerationRequest) -> Iterator[Slot]:
    if isinstance(task.input, str):
        yield Slot("input", task.input, partial(setattr, task, "input"))
        return
    items = task.input
    for i, item in enumerate(items):
        if isinstance(item, ModerationPart):
            if item.text is not None:
                yield Slot(f"input[{i}].text", item.text, partial(setattr, item, "text"))
        else:
            yield Slot(f"input[{i}]", item, partial(items.__setitem__, i))


def inspect_task(task: TaskRequest, rules: PrivacyRules) -> Inspection:
    """Apply ``rules`` to ``task``'s texts in place, as ``privacy.inspect``
    does to a chat body (a blocking detection changes nothing)."""
    return inspect_slots(list(slots(task)), rules)


def restore_result(result: TaskResult | None, privacy: Privacy | None) -> TaskResult | None:
    """The answer for the caller: a rerank answer's returned documents with
    the caller's masked values restored (the upstream saw placeholders).
    Nothing else a task answers holds the caller's text back."""
    if not isinstance(result, RerankResult) or privacy is None or not privacy.vault:
        return result
    if not any(hit.document for hit in result.results):
        return result
    restored = [
        msgspec.structs.replace(hit, document=restore_text(hit.document, privacy.vault)) if hit.document else hit
        for hit in result.results
    ]
    return msgspec.structs.replace(result, results=restored)
