"""Every client API by its path: the one table the front doors serve from."""

from __future__ import annotations

from services.apis import audio, chat, count_tokens, embeddings, images, messages, moderations, rerank, responses
from services.apis.base import ClientApi

APIS: tuple[ClientApi, ...] = (
    chat.API,
    messages.API,
    count_tokens.API,
    embeddings.API,
    responses.API,
    *images.APIS,
    *audio.APIS,
    *moderations.APIS,
    *rerank.APIS,
)
BY_PATH: dict[str, ClientApi] = {api.path: api for api in APIS}
