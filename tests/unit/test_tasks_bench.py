"""The tasks bench's own logic: its checks accept the mock's real answers
and refuse wrong ones (a check that passes everything would make fast,
meaningless numbers), its batch input and the verdict on a finished batch,
and the figures it reports."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from openai.types.audio import Transcription

from loadtest.mock_upstream import audio_files
from loadtest.mock_upstream.images_shape import openai_answer
from loadtest.tasks_bench import added, batch_input, batch_problems, concurrency_reached
from loadtest.tasks_bench_endpoints import (
    HEARD,
    RERANK_DOCUMENTS,
    SPOKEN,
    Answer,
    ReplyError,
    check_image,
    check_ranking,
    check_speech,
    check_transcript,
    endpoints,
)

JSON = httpx.Headers({"content-type": "application/json"})


def answer(doc: Any, status: int = 200, headers: httpx.Headers = JSON) -> Answer:
    return Answer(status, headers, json.dumps(doc).encode())


def image_answer() -> dict[str, Any]:
    return openai_answer({"prompt": "a boat", "size": "64x64", "quality": "low"}, {}, "gpt-image-1")


def test_the_bodies_are_the_sizes_the_issue_asks_for() -> None:
    by_name = {ep.name: ep for ep in endpoints()}
    assert len(SPOKEN) == 200 and len(RERANK_DOCUMENTS) == len(set(RERANK_DOCUMENTS)) == 20
    assert 90_000 <= len(audio_files.wav(HEARD)) <= 110_000
    transcription = by_name["transcription (WAV)"]
    assert transcription.content_type.startswith("multipart/form-data; boundary=")
    assert audio_files.wav(HEARD) in transcription.body and b'name="model"' in transcription.body
    speech = json.loads(by_name["speech (200 chars, mp3)"].body)
    assert speech["input"] == SPOKEN and speech["model"] == "demo-speech"
    assert json.loads(by_name["images url"].body)["response_format"] == "url"


def test_an_image_check_takes_the_mocks_png_and_refuses_anything_else() -> None:
    check_image(as_url=False)(answer(image_answer()), True)
    check_image(as_url=True)(answer(image_answer()), False)  # direct: the deployment's base64
    check_image(as_url=True)(answer({"created": 1, "data": [{"url": "http://127.0.0.1:1/v1/images/content/x"}]}), True)
    with pytest.raises(ReplyError, match="URL"):
        check_image(as_url=True)(answer(image_answer()), True)
    with pytest.raises(ReplyError, match="not a PNG"):
        check_image(as_url=False)(answer({"created": 1, "data": [{"b64_json": "aGVsbG8="}]}), True)
    with pytest.raises(ReplyError, match="0 images"):
        check_image(as_url=False)(answer({"created": 1, "data": []}), True)
    with pytest.raises(ReplyError, match="status 500"):
        check_image(as_url=False)(answer(image_answer(), status=500), True)


def test_a_transcript_must_be_the_wavs_own_text() -> None:
    check_transcript(Transcription)(answer({"text": HEARD}), True)
    with pytest.raises(ReplyError, match="transcript"):
        check_transcript(Transcription)(answer({"text": HEARD + " and more"}), True)
    with pytest.raises(ReplyError, match="not a Transcription"):
        check_transcript(Transcription)(answer({"words": []}), True)


def test_speech_must_be_the_mocks_mp3_byte_for_byte() -> None:
    mp3 = httpx.Headers({"content-type": "audio/mpeg"})
    check_speech(Answer(200, mp3, audio_files.mp3(SPOKEN)), True)
    with pytest.raises(ReplyError, match="bytes of audio"):
        check_speech(Answer(200, mp3, audio_files.mp3(SPOKEN)[:-144]), True)
    with pytest.raises(ReplyError, match="content-type"):
        check_speech(Answer(200, httpx.Headers({"content-type": "audio/wav"}), audio_files.wav(SPOKEN)), True)


def test_a_ranking_must_rank_every_document_once() -> None:
    n = len(RERANK_DOCUMENTS)
    hits = [{"index": i, "relevance_score": 1 - i / n} for i in reversed(range(n))]
    check_ranking(answer({"id": "r", "results": hits, "meta": {"billed_units": {"search_units": 1}}}), False)
    with pytest.raises(ReplyError, match="indices"):
        check_ranking(answer({"results": hits[:-1]}), True)
    with pytest.raises(ReplyError, match="not a ranking"):
        check_ranking(answer({"data": hits}), True)


def test_batch_input_is_one_line_per_request_each_its_own() -> None:
    lines = [json.loads(x) for x in batch_input("b100", 3, 100).splitlines()]
    assert [x["custom_id"] for x in lines] == ["b100-0", "b100-1", "b100-2"]
    assert {x["url"] for x in lines} == {"/v1/chat/completions"} and {x["method"] for x in lines} == {"POST"}
    texts = [x["body"]["messages"][0]["content"] for x in lines]
    assert len(set(texts)) == 3 and all(t.endswith("[mock:latency_ms=100]") for t in texts)


def batch(status: str = "completed", total: int = 2, completed: int = 2, failed: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        status=status, request_counts=SimpleNamespace(total=total, completed=completed, failed=failed)
    )


def out(custom_id: str, status: int = 200) -> dict[str, Any]:
    return {"custom_id": custom_id, "response": {"status_code": status, "body": {}}}


def test_a_finished_batch_is_checked_line_by_line() -> None:
    assert batch_problems("r", 2, batch(), [out("r-1"), out("r-0")], []) == []
    assert batch_problems("r", 2, batch(status="failed"), [out("r-0"), out("r-1")], []) == ["status failed"]
    [counts] = batch_problems("r", 2, batch(completed=1, failed=1), [out("r-0"), out("r-1")], [])
    assert "request_counts" in counts
    [twice] = batch_problems("r", 2, batch(), [out("r-0"), out("r-0")], [])
    assert "custom_ids" in twice
    [refused] = batch_problems("r", 2, batch(), [out("r-0"), out("r-1", status=500)], [])
    assert "1 output lines not answered 200" in refused
    assert any("error file" in p for p in batch_problems("r", 2, batch(), [out("r-0"), out("r-1")], [out("r-1")]))


def test_figures() -> None:
    assert added({"p50_ms": 5.5}, {"p50_ms": 1.25}) == {"added_p50_ms": 4.25}
    streamed = added({"p50_ms": 9.0, "first_byte_p50_ms": 4.0}, {"p50_ms": 5.0, "first_byte_p50_ms": 1.5})
    assert streamed == {"added_p50_ms": 4.0, "added_first_byte_p50_ms": 2.5}
    # Little's law over the lines' own span; from create to completed when the rows had none.
    assert concurrency_reached({"lines_per_s_in_span": 150.0, "lines_per_s": 120.0}, 0.1) == 15.0
    assert concurrency_reached({"lines_per_s_in_span": None, "lines_per_s": 120.0}, 0.1) == 12.0
