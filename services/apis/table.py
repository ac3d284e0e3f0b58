"""Every client API by its path: the one table the front doors serve from."""

from __future__ import annotations

from services.apis import chat, count_tokens, embeddings, messages, responses
from services.apis.base import ClientApi

APIS: tuple[ClientApi, ...] = (chat.API, messages.API, count_tokens.API, embeddings.API, responses.API)
BY_PATH: dict[str, ClientApi] = {api.path: api for api in APIS}
