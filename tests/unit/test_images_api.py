"""The images API rows (generations as JSON, edits as a stored form): what a
hostile caller may send, the ImagesResponse rendered, and the ingress's
side of the answer (``ingress.image_content``: base64 or the gateway's own URL)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from types import SimpleNamespace

import msgspec
import pytest

from ingress import image_content
from schemas.chat import Usage
from schemas.errors import InvalidRequest, RecordNotFound
from schemas.replies import Final
from schemas.tasks import BlobRef, ImageOut, ImageRequest, ImagesResult
from services.apis import images
from services.apis.base import Form, Parsed, RequestView
from services.apis.table import BY_PATH


def edit_form(fields: dict[str, list[str]] | None = None, files: dict[str, list[BlobRef]] | None = None) -> Form:
    base_files = {"image": [BlobRef("t/upload/aaaaaaaaaaaaaaaaaaaa", 10)]}
    return Form(fields={"prompt": ["p"], **(fields or {})}, files=base_files if files is None else files)


def test_rows_are_in_the_table() -> None:
    assert BY_PATH["/v1/images/generations"].name == "images"
    edits = BY_PATH["/v1/images/edits"]
    assert edits.name == "image_edits" and edits.parse_form is not None and not edits.streams


def test_generation_body() -> None:
    parsed = images.parse(b'{"prompt": "a boat", "model": "dall-e-3", "n": 1, "size": "1024x1792", "quality": "hd"}')
    task = parsed.task
    assert parsed.model == "dall-e-3" and isinstance(task, ImageRequest)
    assert (task.prompt, task.n, task.size, task.quality, task.edit, task.images) == (
        "a boat",
        1,
        "1024x1792",
        "hd",
        False,
        [],
    )
    # OpenAI's default model when none is named.
    assert images.parse(b'{"prompt": "x"}').model == "dall-e-2"


def test_a_client_cannot_name_stored_images_in_json() -> None:
    body = b'{"prompt": "x", "edit": true, "images": [{"name": "other/upload/aaaaaaaaaaaaaaaaaaaa", "size": 1}]}'
    task = images.parse(body).task
    assert isinstance(task, ImageRequest) and not task.edit and task.images == [] and task.mask is None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"prompt": ""}', "prompt"),
        (b'{"prompt": "   "}', "prompt"),
        (b'{"prompt": "x", "n": 0}', "'n'"),
        (b'{"prompt": "x", "n": 11}', "'n'"),
        (b'{"prompt": "x", "n": 99999999999999999999999}', "out of range"),
        (b'{"prompt": "x", "size": "1024x1024; rm -rf"}', "size"),
        (b'{"prompt": "x", "size": "99999x1"}', "size"),
        (b'{"prompt": "x", "quality": "ultra"}', "quality"),
        (b'{"prompt": "x", "response_format": "gif"}', "Invalid"),
        (b'{"prompt": "x", "background": "pink"}', "background"),
        (b'{"prompt": "x", "output_format": "bmp"}', "output_format"),
        (b'{"prompt": "x", "output_compression": 101}', "output_compression"),
        (b'{"prompt": "x", "stream": true}', "stream"),
        (b'{"prompt": "x", "model": ""}', "model"),
        (b'{"prompt": "x", "user": "' + b"u" * 300 + b'"}', "user"),
        (b'{"prompt": "' + b"w" * 32_001 + b'"}', "longer"),
        (b'{"n": 1}', "Invalid"),
        (b"not json", "parse"),
    ],
)
def test_generation_refusals(body: bytes, words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        images.parse(body)


def test_edit_form() -> None:
    image = BlobRef("t/upload/aaaaaaaaaaaaaaaaaaaa", 10, filename="a.png")
    mask = BlobRef("t/upload/bbbbbbbbbbbbbbbbbbbb", 10, filename="m.png")
    form = Form(
        fields={"prompt": ["add a sun"], "model": ["gpt-image-1"], "n": ["2"], "size": ["1024x1024"], "x": ["a", "b"]},
        files={"image": [image], "mask": [mask]},
    )
    parsed = images.parse_form(form)
    task = parsed.task
    assert isinstance(task, ImageRequest) and task.edit
    assert (task.model, task.prompt, task.n, task.images, task.mask) == ("gpt-image-1", "add a sun", 2, [image], mask)
    several = images.parse_form(edit_form(files={"image[]": [image, image]})).task
    assert isinstance(several, ImageRequest) and len(several.images) == 2


@pytest.mark.parametrize(
    ("form", "words"),
    [
        (edit_form(files={}), "'image' is required"),
        (edit_form(files={"mask": [BlobRef("t/upload/aaaaaaaaaaaaaaaaaaaa", 1)]}), "'image' is required"),
        (edit_form(files={"image[]": [BlobRef("t/upload/aaaaaaaaaaaaaaaaaaaa", 1)] * 17}), "At most 16"),
        (edit_form(files={"image": [BlobRef("t/upload/aaaaaaaaaaaaaaaaaaaa", 1)], "file": []}), "Unexpected"),
        (
            edit_form(
                files={
                    "image": [BlobRef("t/upload/aaaaaaaaaaaaaaaaaaaa", 1)],
                    "mask": [BlobRef("t/upload/aaaaaaaaaaaaaaaaaaaa", 1)] * 2,
                }
            ),
            "one 'mask'",
        ),
        (edit_form({"prompt": ["a", "b"]}), "given 2 times"),
        (Form(files={"image": [BlobRef("t/upload/aaaaaaaaaaaaaaaaaaaa", 1)]}), "prompt"),
        (edit_form({"n": ["two"]}), "whole number"),
        (edit_form({"n": ["\uff11"]}), "whole number"),  # a full-width digit
        (edit_form({"n": ["1" * 50]}), "whole number"),
        (edit_form({"n": ["11"]}), "'n'"),
        (edit_form({"response_format": ["png"]}), "response_format"),
        (edit_form({"stream": ["true"]}), "stream"),
    ],
)
def test_edit_refusals(form: Form, words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        images.parse_form(form)


def test_a_json_body_on_edits_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="multipart"):
        BY_PATH["/v1/images/edits"].parse(b'{"prompt": "x"}')


def final_with(*outs: ImageOut, usage: Usage | None = None, **result: object) -> Final:
    return Final(
        id="r1",
        seq=0,
        model="gpt-image-1",
        usage=usage or Usage(units=len(outs), unit="image"),
        task_result=ImagesResult(images=list(outs), **result),  # type: ignore[arg-type]
    )


def render(final: Final) -> dict:
    view = RequestView(id="r1", created=1700000000, model="m", parsed=Parsed(model="m"))
    return msgspec.json.decode(images.ImagesRenderer(view).final(final))


def test_rendered_as_openai_images_response() -> None:
    ref = BlobRef("t/image/aaaaaaaaaaaaaaaaaaaa", 3)
    final = final_with(
        ImageOut(ref, b64_json="AAAA"),
        ImageOut(ref, url="https://gw/v1/images/content/x", revised_prompt="better"),
        usage=Usage(prompt_tokens=117, completion_tokens=8320, units=2, unit="image"),
        size="1024x1024",
        quality="high",
        background="opaque",
        output_format="png",
        input_image_tokens=67,
    )
    assert render(final) == {
        "created": 1700000000,
        "data": [{"b64_json": "AAAA"}, {"url": "https://gw/v1/images/content/x", "revised_prompt": "better"}],
        "background": "opaque",
        "output_format": "png",
        "quality": "high",
        "size": "1024x1024",
        "usage": {
            "input_tokens": 117,
            "output_tokens": 8320,
            "total_tokens": 8437,
            "input_tokens_details": {"text_tokens": 50, "image_tokens": 67},
        },
    }
    # No tokens reported (DALL-E, Imagen): no usage; nothing the upstream did not say.
    assert render(final_with(ImageOut(ref, b64_json="AA"))) == {"created": 1700000000, "data": [{"b64_json": "AA"}]}


def test_url_tokens() -> None:
    ref = BlobRef("acme/image/Abc_def-0123456789xyzQ", 1)
    token = image_content.token_of(ref)
    assert "/" not in token and "=" not in token
    assert image_content.name_of(token) == ref.name
    for name in (
        "acme/upload/Abc_def-0123456789xyzQ",
        "acme/file/Abc_def-0123456789xyzQ",
        "../etc/passwd",
        "a/image/x",
    ):
        assert image_content.name_of(image_content.token_of(BlobRef(name, 1))) is None
    for bad in ("", "!!!", "x" * 500, "\u00e9", token + "=", token[:-1]):
        assert image_content.name_of(bad) is None


@pytest.mark.parametrize(
    ("asked", "model", "as_url"),
    [
        ("url", "gpt-image-1", True),
        ("b64_json", "dall-e-3", False),
        (None, "dall-e-3", True),
        (None, "gpt-image-1", False),
    ],
)
def test_url_or_base64(asked: str | None, model: str, as_url: bool) -> None:
    request = ImageRequest(model="alias", prompt="p", response_format=asked)  # type: ignore[arg-type]
    assert image_content.wants_url(request, model) is as_url


class FakeBlobs:
    def __init__(self, kept: dict[str, bytes]) -> None:
        self.kept = kept
        self.deleted: list[str] = []

    async def read(self, ref: BlobRef) -> AsyncIterator[bytes]:
        if ref.name not in self.kept:
            raise RecordNotFound("gone")
        data = self.kept[ref.name]
        for at in range(0, len(data), 4):
            yield data[at : at + 4]

    async def delete(self, name: str) -> None:
        self.deleted.append(name)
        self.kept.pop(name, None)


async def test_inline_base64_then_removes_the_image() -> None:
    name = "acme/image/Abc_def-0123456789xyzQ"
    blobs = FakeBlobs({name: b"\x89PNG-some-bytes"})
    gw = SimpleNamespace(blobs=blobs)
    final = final_with(ImageOut(BlobRef(name, 15)))
    await image_content.inline(gw, final, ImageRequest(model="m", prompt="p", response_format="b64_json"), "http://h")  # type: ignore[arg-type]
    assert isinstance(final.task_result, ImagesResult)
    (out,) = final.task_result.images
    assert base64.b64decode(out.b64_json) == b"\x89PNG-some-bytes" and out.url == ""
    assert blobs.deleted == [name]


async def test_inline_url_keeps_the_image() -> None:
    name = "acme/image/Abc_def-0123456789xyzQ"
    blobs = FakeBlobs({name: b"x"})
    final = final_with(ImageOut(BlobRef(name, 1)))
    await image_content.inline(
        SimpleNamespace(blobs=blobs),
        final,
        ImageRequest(model="m", prompt="p", response_format="url"),
        "https://gw.example",
    )  # type: ignore[arg-type]
    assert isinstance(final.task_result, ImagesResult)
    (out,) = final.task_result.images
    assert out.url == f"https://gw.example/v1/images/content/{image_content.token_of(BlobRef(name, 1))}"
    assert out.b64_json == "" and blobs.deleted == [] and blobs.kept


def test_url_life_is_counted_from_when_the_image_was_made() -> None:
    made = "2026-01-01T00:00:00+00:00"
    at = 1767225600.0  # that moment
    assert not image_content.expired(made, 3600, at + 3599)
    assert image_content.expired(made, 3600, at + 3601)
    # As the store writes it, and as NATS's Go clients do (nanoseconds, "Z").
    assert not image_content.expired("2026-01-01T00:00:00.123456789Z", 10, at + 5)
    for unreadable in (None, "", "yesterday", "2026-01-01T00:00:00"):
        assert image_content.expired(unreadable, 3600, at)
