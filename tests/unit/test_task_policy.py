"""Policy on an image, audio, moderation or rerank request: exactly one
body, every count, size and length bounded, uploads only the caller's own,
the API it is, and a batch id only from the gateway's own job runner."""

from __future__ import annotations

import pytest

from schemas.chat import ChatBody, Message
from schemas.envelope import Envelope
from schemas.errors import InvalidRequest, PermissionDenied
from schemas.tasks import (
    BlobRef,
    ImageRequest,
    ModerationImageUrl,
    ModerationPart,
    ModerationRequest,
    RerankDocument,
    RerankRequest,
    SpeechRequest,
    TaskRequest,
    TranscriptionRequest,
)
from services import admission, policy, task_policy
from services.admission import RecentIds

NOW = 1_800_000_000_000_000_000
ID = "abcdefghijklmnopqrstuvwx"
MINE = BlobRef(name=f"t1/upload/{ID}", size=10, filename="a.wav", content_type="audio/wav")


def envelope(task: TaskRequest, api: str, **fields: object) -> Envelope:
    return Envelope(reply="_INBOX.x", task=task, api=api, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("task", "api"),
    [
        (ImageRequest(model="m", prompt="a cat", n=10, size="1024x1024", quality="hd"), "images"),
        (ImageRequest(model="m", prompt="a cat", edit=True, images=[MINE], mask=MINE), "image_edits"),
        (
            TranscriptionRequest(model="m", audio=MINE, temperature=0.2, timestamp_granularities=["word"]),
            "transcriptions",
        ),
        (TranscriptionRequest(model="m", audio=MINE, translate=True), "translations"),
        (SpeechRequest(model="m", input="x" * 4096, voice="alloy", speed=4.0), "speech"),
        (
            ModerationRequest(
                model="m",
                input=["a", ModerationPart(type="image_url", image_url=ModerationImageUrl(url="https://x/i.png"))],
            ),
            "moderations",
        ),
        (RerankRequest(model="m", query="q", documents=["a", RerankDocument(text="b")] * 500, top_n=3), "rerank"),
    ],
)
def test_a_task_within_bounds_passes(task: TaskRequest, api: str) -> None:
    env = envelope(task, api)
    policy.check_body(env)
    assert env.model == "m" and task_policy.api_of(task) == api


@pytest.mark.parametrize(
    ("task", "api", "says"),
    [
        (ImageRequest(model="m", prompt="p", n=11), "images", "'n' must be between 1 and 10"),
        (ImageRequest(model="m", prompt="p", n=0), "images", "'n' must be between 1 and 10"),
        (ImageRequest(model="m", prompt=""), "images", "'prompt' is required"),
        (ImageRequest(model="m", prompt="p" * 32_001), "images", "'prompt' is at most 32000"),
        (ImageRequest(model="m", prompt="p", size="x" * 65), "images", "'size' is at most 64"),
        (ImageRequest(model="m", prompt="p", images=[MINE]), "images", "go to /v1/images/edits"),
        (ImageRequest(model="m", prompt="p", edit=True), "image_edits", "at least one 'image'"),
        (ImageRequest(model="m", prompt="p", edit=True, images=[MINE] * 17), "image_edits", "At most 16"),
        (ImageRequest(model="m", prompt="p", output_compression=101), "images", "output_compression"),
        (SpeechRequest(model="m", input="x" * 4097, voice="v"), "speech", "'input' is at most 4096"),
        (SpeechRequest(model="m", input="", voice="v"), "speech", "'input' is required"),
        (SpeechRequest(model="m", input="x", voice="v", speed=float("nan")), "speech", "'speed'"),
        (SpeechRequest(model="m", input="x", voice="v", speed=4.5), "speech", "'speed'"),
        (TranscriptionRequest(model="m", audio=MINE, temperature=-1), "transcriptions", "'temperature'"),
        (TranscriptionRequest(model="m", audio=MINE, prompt="p" * 4097), "transcriptions", "'prompt'"),
        (
            TranscriptionRequest(model="m", audio=MINE, timestamp_granularities=["word"] * 3),
            "transcriptions",
            "timestamp_granularities",
        ),
        (ModerationRequest(model="m", input=[]), "moderations", "1 to 1000 items"),
        (ModerationRequest(model="m", input=["x"] * 1001), "moderations", "1 to 1000 items"),
        (ModerationRequest(model="m", input="x" * 4_000_001), "moderations", "4000000 characters"),
        (ModerationRequest(model="m", input=[ModerationPart(type="text")]), "moderations", "carries 'text'"),
        (RerankRequest(model="m", query="q", documents=[]), "rerank", "1 to 1000 documents"),
        (RerankRequest(model="m", query="q", documents=["d"] * 1001), "rerank", "1 to 1000 documents"),
        (RerankRequest(model="m", query="", documents=["d"]), "rerank", "'query' is required"),
        (RerankRequest(model="m", query="q", documents=["d" * 2_000_000] * 2), "rerank", "4000000 characters"),
        (RerankRequest(model="m", query="q", documents=["d"], top_n=0), "rerank", "'top_n'"),
        (RerankRequest(model="", query="q", documents=["d"]), "rerank", "'model' is required"),
        # A task is of the API it asks for: the row's api says what it was.
        (SpeechRequest(model="m", input="x", voice="v"), "images", "of api 'speech', not of 'images'"),
        (ImageRequest(model="m", prompt="p"), "image_edits", "of api 'images'"),
    ],
)
def test_a_task_out_of_bounds_is_a_400_naming_what(task: TaskRequest, api: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says) as info:
        policy.check_body(envelope(task, api))
    assert info.value.status == 400


def test_an_envelope_carries_exactly_one_body() -> None:
    body = ChatBody(model="m", messages=[Message(role="user", content="x")])
    speech = SpeechRequest(model="m", input="x", voice="v")
    with pytest.raises(InvalidRequest, match="exactly one of 'body'"):
        policy.check_body(Envelope(reply="r", body=body, task=speech, api="speech"))
    with pytest.raises(InvalidRequest, match="exactly one of 'body'"):
        policy.check_body(Envelope(reply="r", api="speech"))
    # A task's API without its task: nothing to send.
    with pytest.raises(InvalidRequest, match="carries its request in 'task'"):
        policy.check_body(Envelope(reply="r", body=body, api="speech"))


def test_only_the_callers_own_uploads_go_upstream() -> None:
    task_policy.check_refs(ImageRequest(model="m", prompt="p", edit=True, images=[MINE], mask=MINE), "t1")
    for name in (f"t2/upload/{ID}", f"t1/file/{ID}", f"t1/image/{ID}", f"-/upload/{ID}"):
        with pytest.raises(PermissionDenied) as info:
            task_policy.check_refs(TranscriptionRequest(model="m", audio=BlobRef(name=name, size=1)), "t1")
        assert info.value.status == 403 and info.value.code == "blob_not_yours"
    # A key of no tenant owns "-/upload/...".
    task_policy.check_refs(TranscriptionRequest(model="m", audio=BlobRef(name=f"-/upload/{ID}", size=1)), "")
    for hostile in ("t1/upload/../../t2/upload/x", "t1/upload/short", "t1/upload/" + ID + "/x", ""):
        with pytest.raises(InvalidRequest):
            task_policy.check_refs(TranscriptionRequest(model="m", audio=BlobRef(name=hostile, size=1)), "t1")


@pytest.mark.parametrize("filename", ['a".wav', "a\r\nX-Evil: 1", "a\\b", "x" * 256, "nul\x00"])
def test_an_uploads_file_name_cannot_break_out_of_the_upstreams_multipart_headers(filename: str) -> None:
    ref = BlobRef(name=f"t1/upload/{ID}", size=1, filename=filename)
    with pytest.raises(InvalidRequest, match="filename"):
        task_policy.check_refs(TranscriptionRequest(model="m", audio=ref), "t1")


def test_a_bus_callers_task_is_of_its_kinds_api_and_its_claims_are_dropped() -> None:
    audio = TranscriptionRequest(model="m", audio=MINE, translate=True, duration_ms=1)
    env = envelope(audio, "chat", batch_id="batch_x")
    admission.admit(env, NOW, 2.0, from_ingress=False, ids=RecentIds())
    # Its api from the kind; a length it claimed would shrink its reservation; a batch it is not a line of.
    assert (env.api, audio.duration_ms, env.batch_id) == ("translations", 0, "")
    edit = envelope(ImageRequest(model="m", prompt="p", edit=True, images=[MINE]), "rerank")
    admission.admit(edit, NOW, 2.0, from_ingress=False, ids=RecentIds())
    assert edit.api == "image_edits"


def test_only_the_ingress_job_runner_says_which_batch_a_request_is_a_line_of() -> None:
    speech = SpeechRequest(model="m", input="x", voice="v")
    job = envelope(speech, "speech", batch_id="batch_1", origin="job", id="i", received_at_ns=NOW - 1)
    admission.admit(job, NOW, 2.0, from_ingress=True, ids=RecentIds())
    assert job.batch_id == "batch_1"
    http = envelope(speech, "speech", batch_id="batch_1", origin="http", id="j", received_at_ns=NOW - 1)
    admission.admit(http, NOW, 2.0, from_ingress=True, ids=RecentIds())
    assert http.batch_id == ""
    # The ingress read the audio's length itself: kept.
    audio = TranscriptionRequest(model="m", audio=MINE, duration_ms=1500)
    admission.admit(envelope(audio, "transcriptions", origin="http"), NOW, 2.0, from_ingress=True, ids=RecentIds())
    assert audio.duration_ms == 1500
