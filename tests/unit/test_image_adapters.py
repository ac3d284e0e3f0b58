"""Image generation and edits as an upstream: OpenAI's images API (OpenAI,
Azure, compatible servers) and Imagen's ``:predict``, against fixtures in
their API references' shapes, and the whole try (``tasks.images.call``)
over httpx.MockTransport with an in-memory object store."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable

import httpx
import msgspec
import pytest

from loadtest.mock_upstream.images_shape import openai_answer, png, read_form
from schemas.chat import Cost
from schemas.envelope import Deployment, Envelope
from schemas.errors import ContentFiltered, InternalError, InvalidRequest, UpstreamError
from schemas.replies import Failure
from schemas.tasks import BlobRef, ImageRequest, ImagesResult
from services import pricing, usage
from services.providers.attempts import Try, WalkFailed
from services.providers.azure.chat import AzureOpenAIChat
from services.providers.call import CallFailed, CallOutcome, CallProgress
from services.providers.gemini.chat import GeminiChat
from services.providers.gemini.images import ImagenImages, aspect_ratio
from services.providers.http import UpstreamHTTP
from services.providers.openai.chat import OpenAIChat
from services.providers.openai.images import OpenAIImages
from services.providers.request_call import RequestCall
from services.providers.tasks import images as image_call
from tests.adapters import fixture, sent_json
from tests.png_check import png_pixels

OPENAI = Deployment(
    name="oa",
    provider="openai",
    base_url="https://api.openai.test/v1",
    upstream_model="dall-e-3",
    catalog_model="dall-e-3",
)
GPT_IMAGE = msgspec.structs.replace(OPENAI, name="gi", upstream_model="gpt-image-1", catalog_model="gpt-image-1")
AZURE = Deployment(
    name="az",
    provider="azure",
    base_url="https://res.openai.azure.test",
    upstream_model="my-dalle",
    api_version="2024-10-21",
    catalog_model="azure/dall-e-3",
)
IMAGEN = Deployment(
    name="im",
    provider="gemini",
    base_url="https://generativelanguage.test",
    upstream_model="imagen-4.0-generate-001",
    catalog_model="imagen-4.0-generate-001",
)
openai = OpenAIImages(OpenAIChat())
azure = OpenAIImages(AzureOpenAIChat())
imagen = ImagenImages(GeminiChat())


class MemoryBlobs:
    """``BlobAccess`` over a dict; reads in small slices, as the store does."""

    def __init__(self, fail_writes: bool = False) -> None:
        self.kept: dict[str, tuple[bytes, str]] = {}
        self.fail_writes = fail_writes

    def put(self, name: str, data: bytes, content_type: str = "image/png", filename: str = "") -> BlobRef:
        self.kept[name] = (data, content_type)
        sha = hashlib.sha256(data).hexdigest()
        return BlobRef(name=name, size=len(data), sha256=sha, content_type=content_type, filename=filename)

    async def write(self, name: str, data: bytes, content_type: str, ttl_s: float) -> BlobRef:
        if self.fail_writes:
            raise InternalError("The object store is unavailable.", status=503)
        return self.put(name, data, content_type)

    async def read(self, ref: BlobRef) -> AsyncIterator[bytes]:
        data = self.kept[ref.name][0]
        for at in range(0, len(data), 7):
            yield data[at : at + 7]


async def run(
    dep: Deployment, task: ImageRequest, handler: Callable[[httpx.Request], httpx.Response], blobs: MemoryBlobs
) -> CallOutcome:
    async with contextlib.aclosing(UpstreamHTTP(httpx.MockTransport(handler))) as client:
        return await image_call.call(client, dep, task, CallProgress(), blobs, "acme")


def test_openai_generation_asks_for_base64_and_only_what_was_set() -> None:
    task = ImageRequest(model="alias", prompt="a boat", n=1, size="1792x1024", quality="hd", style="vivid")
    req = openai.generation_request(OPENAI, task, "sk-up")
    assert req.url == "https://api.openai.test/v1/images/generations"
    assert req.headers["authorization"] == "Bearer sk-up"
    assert sent_json(req.content) == {
        "model": "dall-e-3",
        "prompt": "a boat",
        "n": 1,
        "size": "1792x1024",
        "quality": "hd",
        "style": "vivid",
        "response_format": "b64_json",
    }


def test_gpt_image_models_get_no_response_format() -> None:
    # OpenAI refuses the parameter for them (they answer base64 always).
    task = ImageRequest(model="x", prompt="p", response_format="url", background="transparent", output_format="webp")
    sent = sent_json(openai.generation_request(GPT_IMAGE, task, None).content)
    assert "response_format" not in sent
    assert sent["background"] == "transparent" and sent["output_format"] == "webp"


def test_azure_url_and_key() -> None:
    req = azure.generation_request(AZURE, ImageRequest(model="x", prompt="p"), "az-key")
    assert (
        req.url == "https://res.openai.azure.test/openai/deployments/my-dalle/images/generations?api-version=2024-10-21"
    )
    assert req.headers["api-key"] == "az-key" and "authorization" not in req.headers
    edit = azure.edit_request(AZURE, ImageRequest(model="x", prompt="p", edit=True, images=[BlobRef("a", 1)]), "k")
    assert edit.url == "https://res.openai.azure.test/openai/deployments/my-dalle/images/edits?api-version=2024-10-21"


def test_dalle3_answer() -> None:
    answer = openai.parse_images(fixture("openai/images_dalle3.json"))
    (image,) = answer.images
    assert image.content_type == "image/png" and png_pixels(image.data) == (2, 2)
    assert image.revised_prompt == "A watercolour of a small red boat on a calm morning sea."
    assert answer.usage is None and answer.size is None


def test_gpt_image_answer_keeps_tokens_and_what_it_made() -> None:
    answer = openai.parse_images(fixture("openai/images_gpt_image.json"))
    assert len(answer.images) == 2
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (117, 8320)
    assert answer.input_image_tokens == 67
    assert (answer.size, answer.quality, answer.background, answer.output_format) == (
        "1024x1024",
        "high",
        "opaque",
        "png",
    )


def test_an_upstream_url_is_never_passed_on() -> None:
    with pytest.raises(UpstreamError, match="URL"):
        openai.parse_images(fixture("openai/images_url.json"))


def test_broken_base64_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="base64"):
        openai.parse_images(b'{"created": 1, "data": [{"b64_json": "not base64!"}]}')


def test_imagen_request() -> None:
    task = ImageRequest(model="x", prompt="a boat", n=3, size="1792x1024", output_format="jpeg", output_compression=80)
    req = imagen.generation_request(IMAGEN, task, "g-key")
    assert req.url == "https://generativelanguage.test/v1beta/models/imagen-4.0-generate-001:predict"
    assert req.headers["x-goog-api-key"] == "g-key"
    assert sent_json(req.content) == {
        "instances": [{"prompt": "a boat"}],
        "parameters": {
            "sampleCount": 3,
            "aspectRatio": "16:9",
            "outputOptions": {"mimeType": "image/jpeg", "compressionQuality": 80},
        },
    }
    bare = sent_json(imagen.generation_request(IMAGEN, ImageRequest(model="x", prompt="p"), None).content)
    assert bare["parameters"] == {"sampleCount": 1}


@pytest.mark.parametrize(
    ("size", "ratio"),
    [("1024x1024", "1:1"), ("1024x1792", "9:16"), ("1536x1024", "4:3"), ("1024x1536", "3:4"), ("auto", None)],
)
def test_imagen_aspect_ratio(size: str, ratio: str | None) -> None:
    assert aspect_ratio(size) == ratio


def test_imagen_refuses_what_it_cannot_make() -> None:
    with pytest.raises(InvalidRequest, match="at most 4"):
        imagen.generation_request(IMAGEN, ImageRequest(model="x", prompt="p", n=5), None)
    with pytest.raises(InvalidRequest, match="png or jpeg"):
        imagen.generation_request(IMAGEN, ImageRequest(model="x", prompt="p", output_format="webp"), None)
    with pytest.raises(InvalidRequest, match="cannot edit"):
        imagen.edit_request(IMAGEN, ImageRequest(model="x", prompt="p", edit=True), None)


def test_imagen_answer() -> None:
    answer = imagen.parse_images(fixture("gemini/imagen_predict.json"))
    assert [png_pixels(i.data) for i in answer.images] == [(2, 2), (2, 2)]
    with pytest.raises(ContentFiltered, match="safety filter"):
        imagen.parse_images(fixture("gemini/imagen_filtered.json"))


async def test_generation_call_keeps_each_image_and_bills_per_image() -> None:
    blobs = MemoryBlobs()
    seen: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        b64 = base64.b64encode(png(3, 2)).decode()
        return httpx.Response(200, json={"created": 1, "data": [{"b64_json": b64}, {"b64_json": b64}]})

    dalle2 = msgspec.structs.replace(OPENAI, upstream_model="dall-e-2", catalog_model="dall-e-2")
    outcome = await run(dalle2, ImageRequest(model="a", prompt="p", n=2, size="512x512"), upstream, blobs)
    result = outcome.task_result
    assert isinstance(result, ImagesResult) and len(result.images) == 2
    for image in result.images:
        assert image.blob.name.startswith("acme/image/")
        assert png_pixels(blobs.kept[image.blob.name][0]) == (3, 2)
        assert image.blob.content_type == "image/png"
    assert (outcome.usage.units, outcome.usage.unit) == (2, "image")
    # Exactly n x the catalog's price for that size.
    price = pricing.unit_price("dall-e-2", "image", "512x512/standard")
    assert price is not None and price > 0
    assert outcome.cost.units == outcome.cost.total == 2 * price
    assert sent_json(seen[0].content)["response_format"] == "b64_json"


async def test_gpt_image_is_billed_by_the_quality_it_reports() -> None:
    blobs = MemoryBlobs()
    answer = fixture("openai/images_gpt_image.json")
    outcome = await run(
        GPT_IMAGE, ImageRequest(model="a", prompt="p", n=2), lambda r: httpx.Response(200, content=answer), blobs
    )
    # "auto" asked for; the upstream says it made 1024x1024 at high quality.
    per_image = pricing.unit_price("gpt-image-1", "image", "1024x1024/high") or 0
    # The images bill at their price, and what it read at OpenAI's token prices:
    # 117 tokens in, 67 of them an image's ($10 a million), 50 text ($5).
    assert outcome.cost == Cost(units=2 * per_image, input=50 * 5_000_000 + 67 * 10_000_000)
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (117, 8320)
    assert isinstance(outcome.task_result, ImagesResult) and outcome.task_result.input_image_tokens == 67


async def test_edit_streams_the_uploads_into_the_upstream_form() -> None:
    blobs = MemoryBlobs()
    image = blobs.put("acme/upload/img", png(4, 4), filename="in.png")
    mask = blobs.put("acme/upload/mask", png(4, 4), filename='ma"sk\r\n.png')
    seen: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=fixture("openai/images_gpt_image.json"))

    task = ImageRequest(model="a", prompt="add a sun", edit=True, images=[image], mask=mask, n=2, quality="low")
    await run(GPT_IMAGE, task, upstream, blobs)
    (request,) = seen
    assert request.url == "https://api.openai.test/v1/images/edits"
    body = request.content
    assert int(request.headers["content-length"]) == len(body)
    fields, files = read_form(request.headers["content-type"], body)
    assert fields == {"model": "gpt-image-1", "prompt": "add a sun", "n": "2", "quality": "low"}
    assert files == {"image": [png(4, 4)], "mask": [png(4, 4)]}
    # A hostile file name cannot end its header early.
    assert b'filename="ma%22sk%0D%0A.png"' in body


async def test_several_images_go_as_image_array() -> None:
    blobs = MemoryBlobs()
    refs = [blobs.put(f"acme/upload/i{i}", png(2, 2)) for i in range(3)]
    seen: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=fixture("openai/images_gpt_image.json"))

    await run(GPT_IMAGE, ImageRequest(model="a", prompt="p", edit=True, images=refs), upstream, blobs)
    _, files = read_form(seen[0].headers["content-type"], seen[0].content)
    assert list(files) == ["image[]"] and len(files["image[]"]) == 3


async def test_upstream_500_is_a_retryable_failure() -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "boom", "type": "server_error"}})

    with pytest.raises(CallFailed) as failed:
        await run(OPENAI, ImageRequest(model="a", prompt="p"), upstream, MemoryBlobs())
    assert isinstance(failed.value.error, UpstreamError) and failed.value.error.retryable
    assert failed.value.repeatable


async def test_images_made_but_not_kept_are_not_made_again_elsewhere() -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=fixture("openai/images_dalle3.json"))

    with pytest.raises(CallFailed) as failed:
        await run(OPENAI, ImageRequest(model="a", prompt="p"), upstream, MemoryBlobs(fail_writes=True))
    assert not failed.value.repeatable


async def test_a_family_without_images_is_the_callers_400() -> None:
    claude = Deployment(name="c", provider="anthropic", base_url="https://a.test", upstream_model="claude")
    with pytest.raises(CallFailed) as failed:
        await run(claude, ImageRequest(model="a", prompt="p"), lambda r: httpx.Response(200), MemoryBlobs())
    assert isinstance(failed.value.error, InvalidRequest) and "serves no images" in failed.value.error.message


async def try_once(
    dep: Deployment, task: ImageRequest, handler: Callable[[httpx.Request], httpx.Response], blobs: MemoryBlobs
) -> tuple[CallFailed, CallProgress]:
    """A try that fails, and how far it got (what the walk bills it by)."""
    progress = CallProgress()
    async with contextlib.aclosing(UpstreamHTTP(httpx.MockTransport(handler))) as client:
        with pytest.raises(CallFailed) as failed:
            await image_call.call(client, dep, task, progress, blobs, "acme")
    return failed.value, progress


async def test_images_made_but_not_kept_bill_what_was_made() -> None:
    """The store failed after the upstream made the image: the failure bills it, at its own size and quality."""
    task = ImageRequest(model="a", prompt="p", n=3, size="1024x1024", quality="hd")
    answer = fixture("openai/images_dalle3.json")  # one image, where three were asked
    failed, progress = await try_once(OPENAI, task, lambda r: httpx.Response(200, content=answer), MemoryBlobs(True))
    assert not failed.repeatable and progress.first_byte_ns > 0
    billed = usage.task_cut_short(task, progress, "dall-e-3")
    assert billed is not None and billed[0].units == 1
    assert billed[1] == Cost(units=pricing.unit_price("dall-e-3", "image", "1024x1024/hd") or 0) != Cost()


async def test_a_gpt_image_made_but_not_kept_bills_its_tokens_read_too() -> None:
    failed, progress = await try_once(
        GPT_IMAGE,
        ImageRequest(model="a", prompt="p", n=2),
        lambda r: httpx.Response(200, content=fixture("openai/images_gpt_image.json")),
        MemoryBlobs(fail_writes=True),
    )
    assert not failed.repeatable
    billed = usage.task_cut_short(ImageRequest(model="a", prompt="p", n=2), progress, "gpt-image-1")
    per_image = pricing.unit_price("gpt-image-1", "image", "1024x1024/high") or 0
    assert billed is not None and billed[1] == Cost(units=2 * per_image, input=50 * 5_000_000 + 67 * 10_000_000)


@pytest.mark.parametrize(
    "body",
    [b"<html>gateway timeout</html>", b'{"created": 1, "data": [{"b64_json": "not base64!"}]}'],
)
async def test_a_200_that_cannot_be_read_is_billed_and_not_made_again(body: bytes) -> None:
    """Its images were made (and billed upstream) whatever became of the answer: another try would make them twice."""
    task = ImageRequest(model="a", prompt="p", n=2, size="1024x1024", quality="standard")
    failed, progress = await try_once(OPENAI, task, lambda r: httpx.Response(200, content=body), MemoryBlobs())
    assert isinstance(failed.error, UpstreamError) and not failed.repeatable
    assert progress.first_byte_ns > 0  # the walk's end bills it (a refusal before a 200 bills nothing)
    billed = usage.task_cut_short(task, progress, "dall-e-3")
    assert billed is not None and billed[1] == Cost(units=2 * 40_000_000_000)


async def test_a_refusal_in_a_200_bills_nothing() -> None:
    """Imagen's safety filters withheld every image: nothing made."""
    filtered = b'{"predictions": [{"raiFilteredReason": "filtered"}]}'
    task = ImageRequest(model="a", prompt="p", n=2)
    failed, progress = await try_once(IMAGEN, task, lambda r: httpx.Response(200, content=filtered), MemoryBlobs())
    assert isinstance(failed.error, ContentFiltered)
    billed = usage.task_cut_short(task, progress, "imagen-4.0-generate-001")
    assert billed is not None and billed[1] == Cost()


async def test_an_answer_with_no_image_may_be_made_elsewhere_and_bills_none() -> None:
    task = ImageRequest(model="a", prompt="p", n=2, size="1024x1024", quality="standard")
    empty = b'{"created": 1, "data": []}'
    failed, progress = await try_once(OPENAI, task, lambda r: httpx.Response(200, content=empty), MemoryBlobs())
    assert failed.repeatable
    billed = usage.task_cut_short(task, progress, "dall-e-3")
    assert billed is not None and billed[1] == Cost()


async def test_a_gpt_image_edit_bills_exactly_what_the_mock_reports() -> None:
    """The mock answers as OpenAI does (its usage: text and image tokens in, image tokens out):
    the row's cost is the images at their price and those tokens in at theirs."""
    blobs = MemoryBlobs()
    refs = [blobs.put(f"acme/upload/i{i}", png(2, 2)) for i in range(2)]
    reported: list[dict] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        fields, files = read_form(request.headers["content-type"], request.content)
        answer = openai_answer(dict(fields), files, "gpt-image-1")
        reported.append(answer["usage"])
        return httpx.Response(200, json=answer)

    task = ImageRequest(model="a", prompt="add a red sun", edit=True, images=refs, n=2, size="1024x1536", quality="low")
    outcome = await run(GPT_IMAGE, task, upstream, blobs)
    (mock_usage,) = reported
    details = mock_usage["input_tokens_details"]
    assert details["image_tokens"] > 0 and details["text_tokens"] > 0
    per_image = pricing.unit_price("gpt-image-1", "image", "1024x1536/low")
    assert per_image == 16_000_000_000
    expected = Cost(
        units=2 * per_image, input=details["text_tokens"] * 5_000_000 + details["image_tokens"] * 10_000_000
    )
    assert outcome.cost == expected
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (
        mock_usage["input_tokens"],
        mock_usage["output_tokens"],
    )


def image_envelope(task: ImageRequest, *deps: Deployment) -> Envelope:
    now = time.time_ns()
    return Envelope(
        reply="_INBOX.test",
        id="req-img",
        task=task,
        api="images",
        tenant_id="acme",
        received_at_ns=now,
        deadline_ns=now + 30_000_000_000,
        candidates=list(deps),
    )


async def request_failure(
    task: ImageRequest, handler: Callable[[httpx.Request], httpx.Response], blobs: MemoryBlobs
) -> tuple[Failure, list[str]]:
    """The whole call across two deployments that answer alike: its Failure, and the deployments tried."""
    tried: list[str] = []

    async def on_try(t: Try, says_health: bool) -> None:
        tried.append(t.deployment.name)

    async def send(chunk: object) -> None:
        pass

    second = msgspec.structs.replace(OPENAI, name="oa2")
    client = UpstreamHTTP(httpx.MockTransport(handler))
    call = RequestCall(image_envelope(task, OPENAI, second), client, send, on_try, blobs=blobs)
    with pytest.raises(WalkFailed) as failed:
        await call.run()
    return await call.failure(failed.value), tried


async def test_a_200_that_cannot_be_read_ends_the_request_billed_at_the_first_deployment() -> None:
    task = ImageRequest(model="a", prompt="p", n=2, size="1024x1024", quality="hd")
    failure, tried = await request_failure(task, lambda r: httpx.Response(200, content=b"<html>"), MemoryBlobs())
    assert tried == ["oa"]  # not made a second time at "oa2"
    assert failure.usage is not None and failure.usage.units == 2
    assert failure.cost == Cost(units=2 * 80_000_000_000)


async def test_images_not_kept_end_the_request_billed_what_was_made() -> None:
    task = ImageRequest(model="a", prompt="p", n=3, size="1024x1024", quality="standard")
    answer = fixture("openai/images_dalle3.json")  # one image made
    failure, tried = await request_failure(task, lambda r: httpx.Response(200, content=answer), MemoryBlobs(True))
    assert tried == ["oa"] and failure.code != ""
    assert failure.usage is not None and failure.usage.units == 1
    assert failure.cost == Cost(units=40_000_000_000)
