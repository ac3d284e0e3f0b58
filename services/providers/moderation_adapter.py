"""The protocol a moderation adapter implements (OpenAI's ``/v1/moderations``
and the servers that copy it), and what it reads an answer into."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import msgspec

from schemas.envelope import Deployment
from schemas.errors import GatewayError
from schemas.tasks import ModerationRequest, ModerationVerdict
from services.providers.base import UpstreamRequest


class ModerationAnswer(msgspec.Struct):
    """One verdict per input the upstream classified, in input order."""

    results: list[ModerationVerdict]
    id: str = ""
    model: str = ""


class ModerationAdapter(Protocol):
    def build_moderation_request(
        self, deployment: Deployment, task: ModerationRequest, api_key: str | None
    ) -> UpstreamRequest: ...

    def parse_moderation(self, data: bytes) -> ModerationAnswer: ...

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError: ...


def input_texts(task: ModerationRequest) -> list[str]:
    """Every text of the request (what its tokens are counted from)."""
    if isinstance(task.input, str):
        return [task.input]
    return [item if isinstance(item, str) else item.text or "" for item in task.input]


def expected_results(task: ModerationRequest) -> int:
    """How many verdicts an answer holds: one a text, and one for a list of
    parts (OpenAI classifies the parts together, as one input)."""
    if isinstance(task.input, str):
        return 1
    if task.input and not isinstance(task.input[0], str):
        return 1
    return len(task.input)
