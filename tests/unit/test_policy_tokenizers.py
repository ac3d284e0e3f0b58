"""The policy stage builds, off the event loop, the encodings its admission
estimate is about to count with (``PolicyStage._tokenizers_ready``): the
estimate must count with no other, or the first limited request would
build one on the event loop after all."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from schemas.chat import ChatBody, EmbeddingsBody, Message
from schemas.control import ApiKey, Limits, ModelRoute, Tenant
from schemas.envelope import Deployment, Envelope
from schemas.tasks import RerankRequest
from services import tokens
from workers.policy import PolicyStage

NOW_MS = 1_800_000_000_000
LIMITED = ApiKey(id="k", tenant_id="t", limits=Limits(tpm=1_000_000))
FREE = ApiKey(id="k", tenant_id="t")


def route(*catalog_models: str | None) -> ModelRoute:
    deps = [
        Deployment(name=f"d{i}", provider="openai", base_url="http://x/v1", upstream_model="m", catalog_model=m)
        for i, m in enumerate(catalog_models)
    ]
    return ModelRoute(name="g", deployments=deps)


def chat() -> Envelope:
    return Envelope(id="r", reply="_INBOX.x", body=ChatBody(model="g", messages=[Message("user", "hi")]))


def embeddings() -> Envelope:
    return Envelope(id="r", reply="_INBOX.x", api="embeddings", embeddings=EmbeddingsBody(model="g", input="hi"))


def rerank() -> Envelope:
    task = RerankRequest(model="g", query="which", documents=["one", "two"])
    return Envelope(id="r", reply="_INBOX.x", api="rerank", task=task)


@pytest.mark.parametrize("envelope", [chat, embeddings, rerank])
@pytest.mark.parametrize(
    ("key", "tenant"),
    [(LIMITED, None), (FREE, Tenant(id="t", limits=Limits(rpm=5))), (FREE, None)],
)
@pytest.mark.parametrize("group", [route("gpt-4o"), route("gpt-4", "gpt-4o"), route("claude-sonnet-4-20250514"), None])
def test_the_encodings_built_ahead_are_those_the_estimate_counts_with(
    monkeypatch: pytest.MonkeyPatch,
    envelope: Callable[[], Envelope],
    key: ApiKey,
    tenant: Tenant | None,
    group: ModelRoute | None,
) -> None:
    stage, env = PolicyStage(), envelope()
    loaded: set[str] = set()

    async def load(*names: str) -> None:
        loaded.update(names)

    counted: list[str] = []
    real = tokens.encoding
    monkeypatch.setattr(tokens, "load", load)
    monkeypatch.setattr(tokens, "encoding", lambda name: counted.append(name) or real(name))
    asyncio.run(stage._tokenizers_ready(env, key, tenant, group))
    stage._needs(env, key, tenant, group, NOW_MS)
    assert set(counted) <= loaded
    if not key.limits.any() and tenant is None:
        assert not loaded  # nothing is counted for a request no limit or budget covers
    elif env.task is None:
        assert set(counted) == loaded and len(loaded) == 1  # a prompt is counted once, by one tokenizer
