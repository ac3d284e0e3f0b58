"""The moderation requests' upstream call: the family's moderation adapter
(OpenAI's, and the compatible servers that copy it), one verdict per input
checked, the usage counted and priced.

OpenAI's moderation answer says nothing of usage and the endpoint is free;
the request's text is still counted (``Usage.prompt_tokens``, labelled as
the chat's counts are) so rows show what was sent, and priced at the
catalog's price (zero for OpenAI's models).
"""

from __future__ import annotations

import time

from schemas.chat import Usage
from schemas.envelope import Deployment
from schemas.errors import InvalidRequest, UpstreamError
from schemas.tasks import ModerationRequest, ModerationResult
from services import tokens
from services import usage as usage_svc
from services.providers.call import CallFailed, CallOutcome, CallProgress
from services.providers.http import Upstream
from services.providers.moderation_adapter import ModerationAnswer, expected_results, input_texts
from services.providers.registry import provider
from services.providers.tasks import task_outcome
from services.providers.tasks.json_call import post_json


async def call(client: Upstream, dep: Deployment, task: ModerationRequest, progress: CallProgress) -> CallOutcome:
    """One try of ``task`` at ``dep``."""
    adapter = provider(dep.provider).moderation
    if adapter is None:
        refused = InvalidRequest(f"Model deployment {dep.name!r} ({dep.provider}) serves no moderations.")
        raise CallFailed(refused, time.time_ns(), 0)

    def read(data: bytes) -> ModerationAnswer:
        answer = adapter.parse_moderation(data)
        expected = expected_results(task)
        if len(answer.results) != expected:
            raise UpstreamError(f"Upstream returned {len(answer.results)} moderation results for {expected} inputs.")
        return answer

    answer, start_ns, first_byte_ns = await post_json(
        client, dep, adapter.build_moderation_request, task, read, adapter.map_error, progress
    )
    usage = counted_usage(task, dep.catalog_model)
    return task_outcome(
        answer.model or dep.upstream_model,
        usage,
        usage_svc.cost_of(usage, dep.catalog_model),
        ModerationResult(id=answer.id, results=answer.results),
        start_ns,
        first_byte_ns,
    )


def counted_usage(task: ModerationRequest, catalog_model: str | None) -> Usage:
    """The request's text in the model's tokens (an image part counts none)."""
    name, source = usage_svc.tokenizer_for(catalog_model)
    enc = tokens.encoding(name)
    return Usage(prompt_tokens=sum(tokens.count_text(text, enc) for text in input_texts(task)), source=source)
