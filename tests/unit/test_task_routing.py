"""Routing an image, audio, moderation or rerank request: a model is called
on its mode's endpoint (a 400 naming the right one otherwise), the cost
strategy and the reservation's model price the task itself."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from schemas.control import ModelRoute
from schemas.envelope import Deployment
from schemas.errors import InvalidRequest
from schemas.tasks import ImageRequest, RerankRequest, SpeechRequest
from services import config, routing
from services.health import HealthBoard

NOW = 1_800_000_000.0
APIS = ("chat", "messages", "responses", "count_tokens", "embeddings", "images", "image_edits", "transcriptions",
        "translations", "speech", "moderations", "rerank")  # fmt: skip
# A model of each mode, and the endpoint the 400 names for it.
MODELS = {
    "gpt-4o": ("chat", "a chat model; call it on /v1/chat/completions, /v1/messages or /v1/responses"),
    "text-embedding-3-small": ("embedding", "an embeddings model; call it on /v1/embeddings"),
    "dall-e-3": ("image", "an image model; call it on /v1/images/generations or /v1/images/edits"),
    "whisper-1": (
        "audio_transcription",
        "a transcription model; call it on /v1/audio/transcriptions or /v1/audio/translations",
    ),
    "tts-1": ("speech", "a speech model; call it on /v1/audio/speech"),
    "omni-moderation-latest": ("moderation", "a moderation model; call it on /v1/moderations"),
    "rerank-v3.5": ("rerank", "a rerank model; call it on /v1/rerank"),
}


def dep(name: str, catalog_model: str | None) -> Deployment:
    return Deployment(
        name=name, provider="openai", base_url="http://x/v1", upstream_model="u", catalog_model=catalog_model
    )


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("api", APIS)
def test_each_api_calls_models_of_its_mode_and_a_400_names_the_right_endpoint(model: str, api: str) -> None:
    mode, says = MODELS[model]
    routes = routing.routes_by_name({"g": ModelRoute(name="g", deployments=[dep("d", model)])})
    if routing.API_MODES[api] == mode:
        assert routing.resolve(routes, "g", api).name == "g"
        return
    with pytest.raises(InvalidRequest) as info:
        routing.resolve(routes, "g", api)
    assert info.value.status == 400 and info.value.code == "model_mode_mismatch"
    assert info.value.message == f"The model 'g' is {says}."


def test_every_api_and_every_mode_has_its_row() -> None:
    assert set(routing.API_MODES) == set(APIS)
    assert set(routing.API_MODES.values()) == set(routing.MODE_ENDPOINTS)


def test_a_model_the_catalog_lacks_is_given_the_benefit_of_the_doubt() -> None:
    routes = routing.routes_by_name({"g": ModelRoute(name="g", deployments=[dep("d", None)])})
    for api in APIS:
        assert routing.resolve(routes, "g", api).name == "g"


def test_the_demo_serves_each_task_model_on_its_endpoint() -> None:
    demo = Path(config.__file__).parent / "cli" / "demo.toml"
    routes = routing.routes_by_name(config.control_records(config.load(demo)).routes)
    for group, api in (("demo-image", "images"), ("demo-image-imagen", "image_edits"),
                       ("demo-transcribe", "translations"), ("demo-speech", "speech"),
                       ("demo-moderation", "moderations"), ("demo-rerank", "rerank"),
                       ("demo-rerank-jina", "rerank")):  # fmt: skip
        assert routing.resolve(routes, group, api).name == group
        assert routing.resolve(routes, group, api).deployments[0].catalog_model is not None, group
    with pytest.raises(InvalidRequest, match="call it on /v1/audio/speech"):
        routing.resolve(routes, "demo-speech", "chat")


def test_a_task_reserves_at_the_deployment_dearest_for_it() -> None:
    # By token price tts-1-hd and tts-1 are both free; by the character, hd is the dearer.
    group = ModelRoute(name="g", deployments=[dep("sd", "tts-1"), dep("hd", "tts-1-hd"), dep("x", None)])
    speech = SpeechRequest(model="g", input="hello", voice="v")
    assert routing.priciest_catalog_model(group, speech) == "tts-1-hd"
    images = ModelRoute(name="i", deployments=[dep("a", "dall-e-2"), dep("b", "gpt-image-1")])
    assert routing.priciest_catalog_model(images, ImageRequest(model="i", prompt="p")) == "gpt-image-1"


def test_the_cost_strategy_prices_the_task_per_deployment() -> None:
    group = ModelRoute(
        name="g", strategy="cost", deployments=[dep("per-search", "rerank-v3.5"), dep("per-token", "rerank-2")]
    )
    routes, rng = routing.routes_by_name({"g": group}), random.Random(1)
    few = RerankRequest(model="g", query="q", documents=["short"] * 3)
    req = routing.Request("g", "rerank", "k", task=few)
    # A few short documents: a search unit ($0.002) costs more than their tokens.
    assert routing.plan(routes, req, HealthBoard(), NOW, rng).candidates[0].name == "per-token"
    # A query against 100 documents of ~450 tokens, each one chunk of at most 500 with the query: one
    # search unit against ~49,000 tokens ($0.00246). (Longer ones are several chunks each, and cost more
    # search units than tokens.)
    many = RerankRequest(model="g", query="q " * 40, documents=["word " * 450] * 100)
    req = routing.Request("g", "rerank", "k", task=many)
    assert routing.plan(routes, req, HealthBoard(), NOW, rng).candidates[0].name == "per-search"


def test_an_image_request_splits_by_its_user() -> None:
    group = ModelRoute(name="g", split={"a": 50, "b": 50}, deployments=[dep("a", None), dep("b", None)])
    routes, rng = routing.routes_by_name({"g": group}), random.Random(1)

    def first(user: str) -> str:
        req = routing.Request("g", "images", "same-key", task=ImageRequest(model="g", prompt="p", user=user))
        return routing.plan(routes, req, HealthBoard(), NOW, rng).candidates[0].name

    arms = {first(f"user-{i}") for i in range(40)}
    assert arms == {"a", "b"}  # by user, not by the one key
    assert len({first("user-7") for _ in range(10)}) == 1  # and sticky
