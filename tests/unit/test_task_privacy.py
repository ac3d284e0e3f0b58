"""A tenant's privacy rules on the texts an image, audio, moderation or
rerank request sends upstream, and a rerank answer's documents restored."""

from __future__ import annotations

import pytest

from schemas.control import CustomDetector, PrivacyRules
from schemas.envelope import Privacy
from schemas.tasks import (
    BlobRef,
    ImageRequest,
    ModerationImageUrl,
    ModerationPart,
    ModerationRequest,
    RerankDocument,
    RerankHit,
    RerankRequest,
    RerankResult,
    SpeechRequest,
    TaskRequest,
    TranscriptionRequest,
    TranscriptResult,
)
from services.task_privacy import inspect_task, restore_result

EMAIL, OTHER, KEY = "bob@example.com", "ann@example.org", "AKIAIOSFODNN7EXAMPLE"
RULES = PrivacyRules(
    detectors={"email": "mask", "secret": "redact", "card": "block"},
    custom=[CustomDetector(name="proj", keywords=["bluebird"], action="flag")],
)
AUDIO = BlobRef(name="t1/upload/abcdefghijklmnopqrstuvwx", size=1)


def test_an_image_prompt_is_masked_and_redacted() -> None:
    task = ImageRequest(model="m", prompt=f"a poster for {EMAIL}, key {KEY}")
    found = inspect_task(task, RULES)
    assert task.prompt == "a poster for [EMAIL_1], key [REDACTED:secret]"
    assert found.vault == {"[EMAIL_1]": EMAIL}
    assert [(d.detector, d.where) for d in found.detections] == [("email", "prompt"), ("secret", "prompt")]


def test_speech_input_and_instructions_and_a_transcription_prompt_are_read() -> None:
    speech = SpeechRequest(model="m", input=f"Write to {EMAIL}.", voice="v", instructions=f"as {OTHER} would")
    found = inspect_task(speech, RULES)
    assert speech.input == "Write to [EMAIL_1]." and speech.instructions == "as [EMAIL_2] would"
    assert {d.where for d in found.detections} == {"input", "instructions"}
    heard = TranscriptionRequest(model="m", audio=AUDIO, prompt=f"names: {EMAIL}")
    inspect_task(heard, RULES)
    assert heard.prompt == "names: [EMAIL_1]" and heard.audio == AUDIO  # the bytes are not read


def test_every_text_to_moderate_is_read_and_an_image_part_left_alone() -> None:
    task = ModerationRequest(
        model="m",
        input=[f"hi {EMAIL}", ModerationPart(type="text", text=f"key {KEY}"),
               ModerationPart(type="image_url", image_url=ModerationImageUrl(url=f"https://x/{EMAIL}.png"))],
    )  # fmt: skip
    found = inspect_task(task, RULES)
    assert isinstance(task.input, list)
    assert task.input[0] == "hi [EMAIL_1]"
    assert task.input[1] == ModerationPart(type="text", text="key [REDACTED:secret]")
    assert task.input[2].image_url.url == f"https://x/{EMAIL}.png"  # type: ignore[union-attr]
    assert [d.where for d in found.detections] == ["input[0]", "input[1].text"]
    single = ModerationRequest(model="m", input=f"mail {EMAIL}")
    inspect_task(single, RULES)
    assert single.input == "mail [EMAIL_1]"


def test_a_reranks_query_and_documents_share_one_set_of_placeholders() -> None:
    task = RerankRequest(model="m", query=f"who wrote to {EMAIL}?", documents=[f"{EMAIL} wrote", RerankDocument(
        text=f"{OTHER} replied")])  # fmt: skip
    found = inspect_task(task, RULES)
    assert task.query == "who wrote to [EMAIL_1]?"
    assert task.documents == ["[EMAIL_1] wrote", RerankDocument(text="[EMAIL_2] replied")]
    assert found.vault == {"[EMAIL_1]": EMAIL, "[EMAIL_2]": OTHER}
    assert [d.where for d in found.detections] == ["query", "documents[0]", "documents[1].text"]


@pytest.mark.parametrize(
    "task",
    [
        ImageRequest(model="m", prompt="card 4111 1111 1111 1111 please"),
        RerankRequest(model="m", query="q", documents=["ok", "card 4111 1111 1111 1111"]),
    ],
)
def test_a_blocking_detection_changes_nothing_and_names_where(task: TaskRequest) -> None:
    before = repr(task)
    found = inspect_task(task, RULES)
    assert found.blocked_by is not None and found.blocked_by.detector == "card"
    assert repr(task) == before


def test_a_flag_keeps_the_text() -> None:
    task = SpeechRequest(model="m", input="project bluebird", voice="v")
    found = inspect_task(task, RULES)
    assert task.input == "project bluebird" and [d.action for d in found.detections] == ["flag"]


def test_the_documents_a_rerank_answer_returns_get_the_callers_values_back() -> None:
    privacy = Privacy(vault={"[EMAIL_1]": EMAIL})
    answer = RerankResult(id="r", results=[RerankHit(index=1, relevance_score=0.9, document="[EMAIL_1] wrote"),
                                           RerankHit(index=0, relevance_score=0.1)])  # fmt: skip
    restored = restore_result(answer, privacy)
    assert isinstance(restored, RerankResult)
    assert [h.document for h in restored.results] == [f"{EMAIL} wrote", None]
    assert answer.results[0].document == "[EMAIL_1] wrote"  # what the gateway keeps stays as the upstream wrote it
    # Nothing to restore: the answer as it is.
    assert restore_result(answer, None) is answer and restore_result(answer, Privacy()) is answer
    transcript = TranscriptResult(text="[EMAIL_1]")
    assert restore_result(transcript, privacy) is transcript
    assert restore_result(None, privacy) is None
