"""OpenAI's moderations (``POST /v1/moderations``) as an upstream, for OpenAI
and the compatible servers that copy it: the request goes as the caller
wrote it (a text, texts, or text and image parts), the model renamed.

The answer is ``{id, model, results: [{flagged, categories,
category_scores, category_applied_input_types}]}``; the omni models add
``illicit`` categories and the applied input types, the legacy text models
leave them out, and a category may be null: such an entry is dropped, not
guessed.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from schemas.envelope import Deployment
from schemas.errors import GatewayError, UpstreamError
from schemas.tasks import ModerationPart, ModerationRequest, ModerationVerdict
from services.providers.base import UpstreamRequest
from services.providers.moderation_adapter import ModerationAnswer
from services.providers.openai import errors
from services.providers.openai.chat import OpenAIChat


class _Body(msgspec.Struct):
    model: str
    input: str | list[str | ModerationPart]


class _Verdict(msgspec.Struct):
    flagged: bool
    categories: dict[str, bool | None]
    category_scores: dict[str, float | None]
    category_applied_input_types: dict[str, list[str]] | None = None


class _Answer(msgspec.Struct):
    results: list[_Verdict]
    id: str = ""
    model: str = ""


_encode = msgspec.json.Encoder().encode
_decode_answer = msgspec.json.Decoder(_Answer).decode


class OpenAIModeration:
    """``chat``: the family's chat adapter, whose URL and auth headers the
    moderation endpoint shares."""

    def __init__(self, chat: OpenAIChat) -> None:
        self.chat = chat

    def build_moderation_request(
        self, deployment: Deployment, task: ModerationRequest, api_key: str | None
    ) -> UpstreamRequest:
        body = _Body(model=deployment.upstream_model, input=task.input)
        return UpstreamRequest(
            url=self.chat.url(deployment, "/moderations"), headers=self.chat.headers(api_key), content=_encode(body)
        )

    def parse_moderation(self, data: bytes) -> ModerationAnswer:
        try:
            answer = _decode_answer(data)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise UpstreamError(f"Upstream sent an unreadable moderation: {exc}") from exc
        return ModerationAnswer(results=[_verdict(v) for v in answer.results], id=answer.id, model=answer.model)

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return errors.map_error(status, body, headers)


def _verdict(v: _Verdict) -> ModerationVerdict:
    return ModerationVerdict(
        flagged=v.flagged,
        categories={name: flag for name, flag in v.categories.items() if flag is not None},
        category_scores={name: score for name, score in v.category_scores.items() if score is not None},
        category_applied_input_types=v.category_applied_input_types,
    )
