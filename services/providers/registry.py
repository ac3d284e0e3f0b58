"""Every provider name a deployment may use: its adapter, default endpoint,
and the environment variable that conventionally holds its key.

The OpenAI-compatible family (Groq, Together, ...) is one adapter with a row
each here; adding another compatible server is adding a row.
"""

from __future__ import annotations

import msgspec

from services.providers.anthropic.chat import AnthropicChat
from services.providers.azure.chat import AzureOpenAIChat
from services.providers.base import ChatAdapter, EmbeddingsAdapter
from services.providers.cohere.chat import CohereChat
from services.providers.cohere.rerank import CohereRerank
from services.providers.gemini.chat import GeminiChat
from services.providers.jina.rerank import JinaRerank
from services.providers.mistral.chat import MistralChat
from services.providers.moderation_adapter import ModerationAdapter
from services.providers.openai.chat import OpenAIChat
from services.providers.openai.moderation import OpenAIModeration
from services.providers.rerank_adapter import RerankAdapter
from services.providers.voyage.rerank import VoyageRerank


class Provider(msgspec.Struct, frozen=True):
    family: str
    base_url: str
    api_key_env: str | None
    chat: ChatAdapter
    # None: the provider has no embeddings API the gateway speaks.
    embeddings: EmbeddingsAdapter | None = None
    # None: no moderation (rerank) API the gateway speaks.
    moderation: ModerationAdapter | None = None
    rerank: RerankAdapter | None = None


_openai = OpenAIChat()
# Servers that reject or ignore stream_options; they send usage unasked or not at all.
_openai_no_stream_usage = OpenAIChat(stream_usage=False)


_openai_moderation = OpenAIModeration(_openai)
# vLLM and Infinity serve rerank in Jina's shape beside their OpenAI-compatible endpoints.
_jina_rerank = JinaRerank()


def _compatible(
    base_url: str,
    key_env: str | None,
    *,
    stream_usage: bool = True,
    embeddings: bool = False,
    moderation: bool = False,
    rerank: bool = False,
) -> Provider:
    adapter = _openai if stream_usage else _openai_no_stream_usage
    return Provider(
        "openai_compatible",
        base_url,
        key_env,
        adapter,
        adapter if embeddings else None,
        moderation=_openai_moderation if moderation else None,
        rerank=_jina_rerank if rerank else None,
    )


PROVIDERS: dict[str, Provider] = {
    "openai": Provider(
        "openai", "https://api.openai.com/v1", "OPENAI_API_KEY", _openai, _openai, moderation=_openai_moderation
    ),
    # base_url is the resource endpoint, e.g. https://NAME.openai.azure.com
    "azure": Provider("azure", "", "AZURE_OPENAI_API_KEY", AzureOpenAIChat(), AzureOpenAIChat()),
    "anthropic": Provider("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY", AnthropicChat()),
    "gemini": Provider(
        "gemini", "https://generativelanguage.googleapis.com", "GEMINI_API_KEY", GeminiChat(), GeminiChat()
    ),
    "mistral": Provider("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY", MistralChat(), MistralChat()),
    "cohere": Provider(
        "cohere", "https://api.cohere.com", "COHERE_API_KEY", CohereChat(), CohereChat(), rerank=CohereRerank()
    ),
    # Rerank-only families: no chat API of theirs is spoken (the OpenAI
    # adapter stands in; a chat model is refused by its catalog mode first).
    "jina": Provider("jina", "https://api.jina.ai/v1", "JINA_API_KEY", _openai, rerank=_jina_rerank),
    "voyage": Provider("voyage", "https://api.voyageai.com/v1", "VOYAGE_API_KEY", _openai, rerank=VoyageRerank()),
    # The OpenAI-compatible family.
    # A server of one's own may copy OpenAI's moderations too; the hosted ones below have none.
    "openai_compatible": _compatible("", None, embeddings=True, moderation=True, rerank=True),
    "groq": _compatible("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "together": _compatible("https://api.together.xyz/v1", "TOGETHER_API_KEY", embeddings=True),
    "deepseek": _compatible("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "openrouter": _compatible("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "fireworks": _compatible("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY", embeddings=True),
    "xai": _compatible("https://api.x.ai/v1", "XAI_API_KEY"),
    "perplexity": _compatible("https://api.perplexity.ai", "PERPLEXITY_API_KEY", stream_usage=False),
    "vllm": _compatible("http://127.0.0.1:8000/v1", None, embeddings=True, rerank=True),
    "infinity": _compatible("http://127.0.0.1:7997", None, embeddings=True, rerank=True),
    "ollama": _compatible("http://127.0.0.1:11434/v1", None, embeddings=True),
    "lmstudio": _compatible("http://127.0.0.1:1234/v1", None, embeddings=True),
}


def provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise LookupError(f"unknown provider {name!r}; known: {', '.join(sorted(PROVIDERS))}") from None
