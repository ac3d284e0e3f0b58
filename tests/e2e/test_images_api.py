"""OpenAI's images API through the gateway with the official ``openai`` SDK,
against the mock's images (OpenAI, Azure and Imagen shapes): generations as
base64 and as the gateway's own URL (a valid PNG; 404 for another tenant's
key and once it expired), edits with a PNG upload and a mask, every image
billed at exactly the catalog's price for its size and quality (and what a
GPT image model read at its token prices), a chat model
refused with the endpoint to use, and an upstream's 500 failed over or
answered as a clean error."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types.images_response import Usage as ImagesResponseUsage

from loadtest.mock_upstream.images_shape import png
from services import pricing
from tests.png_check import png_pixels
from tests.stack import DEMO_KEY, PRIVATE_KEY, TASK_MODELS, Stack

# The URL's life, short so a test sees it end (OpenAI's: an hour).
URL_TTL_S = 3
EXTRA = (
    TASK_MODELS
    + """
[[models]]
name = "dalle3"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "dall-e-3"

[[models]]
name = "dalle2"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "dall-e-2"

[[models]]
name = "azure-dalle"
provider = "azure"
base_url = "http://127.0.0.1:{mock}"
upstream_model = "my-dalle-3"
catalog_model = "azure/dall-e-3"
api_key_env = ""

[[models]]
name = "img-fallback"

[[models.deployments]]
name = "img-broken"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/@img-broken/v1"
upstream_model = "dall-e-2"
api_key_env = ""

[[models.deployments]]
name = "img-healthy"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/@img-healthy/v1"
upstream_model = "dall-e-2"
api_key_env = ""
"""
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("images"),
        timeout_s=20,
        extra_config=EXTRA,
        gateway=f"image_url_ttl_s = {URL_TTL_S}",
        max_body_bytes=1024 * 1024,
    ).start()
    httpx.put(f"{s.mock_url}/mock/upstreams/img-broken", json={"directives": "[mock:status=500]"}).raise_for_status()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=30) as c:
        yield c


def mock_images(stack: Stack) -> dict:
    """The image count of the mock's last answer."""
    return httpx.get(f"{stack.mock_url}/mock/usage", params={"last": 1}).json()[0]


def price(catalog_model: str, variant: str) -> int:
    per_image = pricing.unit_price(catalog_model, "image", variant)
    assert per_image is not None and per_image > 0, f"{catalog_model} has no price for {variant}"
    return per_image


def read_cost(usage: ImagesResponseUsage | None) -> int:
    """What gpt-image-1 bills for what it read (text and input images), in pico-USD."""
    assert usage is not None
    details = usage.input_tokens_details
    return details.text_tokens * pricing.price_of(pricing.load_catalog()["gpt-image-1"]).input + (
        details.image_tokens * pricing.image_input_price("gpt-image-1")
    )


@pytest.mark.timeout(60)
def test_base64_images_billed_per_image_exactly(stack: Stack, client: openai.OpenAI) -> None:
    raw = client.images.with_raw_response.generate(
        model="demo-image", prompt="a lighthouse at dusk", n=2, size="1536x1024", quality="medium"
    )
    answer = raw.parse()
    assert answer.data is not None and len(answer.data) == 2
    for image in answer.data:
        assert image.url is None and image.b64_json
        assert png_pixels(base64.b64decode(image.b64_json)) == (1536, 1024)
    assert (answer.size, answer.quality, answer.output_format) == ("1536x1024", "medium", "png")
    assert answer.usage is not None and answer.usage.output_tokens > 0
    assert mock_images(stack) == {"images": 2}
    row = stack.request_row(raw.headers["x-request-id"])
    assert (row["api"], row["status"], row["units"], row["unit"]) == ("images", 200, 2, "image")
    # n x the catalog's price of what was made, and the text it read at OpenAI's $5 a million tokens.
    assert row["cost_units_pico_usd"] == 2 * price("gpt-image-1", "1536x1024/medium")
    assert row["cost_pico_usd"] == row["cost_units_pico_usd"] + read_cost(answer.usage) > row["cost_units_pico_usd"]


@pytest.mark.timeout(60)
def test_url_served_by_the_gateway_for_its_tenant_until_it_expires(stack: Stack, client: openai.OpenAI) -> None:
    raw = client.images.with_raw_response.generate(model="dalle3", prompt="a red boat", response_format="url")
    answer = raw.parse()
    assert answer.data is not None
    (image,) = answer.data
    assert image.b64_json is None and image.url is not None
    assert image.url.startswith(stack.base_url + "/images/content/")
    assert image.revised_prompt == "A carefully drawn picture of: a red boat"
    fetched = httpx.get(image.url, timeout=10)  # no key needed, as OpenAI's URLs
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert png_pixels(fetched.content) == (1024, 1024)
    mine = httpx.get(image.url, headers={"authorization": f"Bearer {DEMO_KEY}"}, timeout=10)
    assert mine.status_code == 200 and mine.content == fetched.content
    theirs = httpx.get(image.url, headers={"authorization": f"Bearer {PRIVATE_KEY}"}, timeout=10)
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "not_found"
    assert httpx.get(image.url + "x", timeout=10).status_code == 404
    row = stack.request_row(raw.headers["x-request-id"])
    assert row["cost_pico_usd"] == price("dall-e-3", "1024x1024/standard")
    deadline = time.monotonic() + URL_TTL_S + 15
    while (status := httpx.get(image.url, timeout=10).status_code) == 200:
        assert time.monotonic() < deadline, "the image's URL never expired"
        time.sleep(0.5)
    assert status == 404


@pytest.mark.timeout(60)
def test_edit_with_a_png_and_a_mask(stack: Stack, client: openai.OpenAI) -> None:
    upload, mask = png(64, 64), png(64, 64)
    raw = client.images.with_raw_response.edit(
        model="demo-image",
        image=("scene.png", upload, "image/png"),
        mask=("mask.png", mask, "image/png"),
        prompt="add a sun",
        n=1,
        size="1024x1024",
        quality="low",
    )
    answer = raw.parse()
    assert answer.data is not None and len(answer.data) == 1 and answer.data[0].b64_json
    assert png_pixels(base64.b64decode(answer.data[0].b64_json)) == (1024, 1024)
    assert answer.usage is not None and answer.usage.input_tokens_details.image_tokens > 0
    # The upstream got both files whole, in a form of its own.
    sent = httpx.get(f"{stack.mock_url}/mock/last-request").content
    assert sent.count(upload) == 2 and b'name="mask"' in sent and b'name="image"' in sent
    row = stack.request_row(raw.headers["x-request-id"])
    assert (row["api"], row["units"]) == ("image_edits", 1)
    # The image, and what it read as the mock reported it: the prompt ($5 a million), the uploads ($10).
    assert row["cost_pico_usd"] == price("gpt-image-1", "1024x1024/low") + read_cost(answer.usage)


@pytest.mark.timeout(60)
def test_other_upstream_shapes(stack: Stack, client: openai.OpenAI) -> None:
    azure = client.images.generate(model="azure-dalle", prompt="a kite", size="1792x1024", response_format="b64_json")
    assert azure.data is not None and azure.data[0].b64_json
    assert png_pixels(base64.b64decode(azure.data[0].b64_json)) == (1792, 1024)
    raw = client.images.with_raw_response.generate(
        model="demo-image-imagen", prompt="a fox", n=2, size="1024x1792", response_format="b64_json"
    )
    imagen = raw.parse()
    assert imagen.data is not None
    # Imagen's nearest aspect ratio, 9:16, at its own size.
    assert [png_pixels(base64.b64decode(i.b64_json or "")) for i in imagen.data] == [(768, 1408)] * 2
    row = stack.request_row(raw.headers["x-request-id"])
    assert row["cost_pico_usd"] == 2 * price("imagen-4.0-generate-001", "1024x1792/")


@pytest.mark.timeout(60)
def test_a_chat_model_is_sent_to_its_endpoint(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(model="demo-model", prompt="a cat")
    assert "/v1/chat/completions" in refused.value.message
    assert refused.value.code == "model_mode_mismatch"


@pytest.mark.timeout(60)
def test_upstream_500_fails_over_or_ends_cleanly(stack: Stack, client: openai.OpenAI) -> None:
    raw = client.images.with_raw_response.generate(
        model="img-fallback", prompt="a tree", response_format="b64_json", size="256x256"
    )
    assert raw.parse().data is not None
    row = stack.request_row(raw.headers["x-request-id"])
    assert (row["deployment"], row["status"]) == ("img-healthy", 200)
    assert row["cost_pico_usd"] == price("dall-e-2", "256x256")
    with pytest.raises(openai.APIStatusError) as failed:
        client.images.generate(model="dalle2", prompt="a tree [mock:status=500]")
    # The upstream's status, in OpenAI's error shape, saying whose error it was.
    assert failed.value.status_code == 500
    assert failed.value.body["type"] == "upstream_error"  # type: ignore[index]
    assert failed.value.body["message"].startswith("Upstream returned 500")  # type: ignore[index]
