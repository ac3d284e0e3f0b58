"""Provider adapters: one package per upstream API family, behind ``ChatAdapter``."""

from __future__ import annotations

from services.providers.base import ChatAdapter
from services.providers.openai.chat import OpenAIChat

ADAPTERS: dict[str, ChatAdapter] = {"openai": OpenAIChat()}


def adapter_for(provider: str) -> ChatAdapter:
    try:
        return ADAPTERS[provider]
    except KeyError:
        raise LookupError(f"no adapter for provider {provider!r}; known: {sorted(ADAPTERS)}") from None


__all__ = ["ADAPTERS", "ChatAdapter", "adapter_for"]
