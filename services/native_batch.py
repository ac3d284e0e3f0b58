"""Batches run as one batch of a provider's own batch API (OpenAI's and
Azure's Batch API, Anthropic's Message Batches): which batches may, and
what their lines cost there. No NATS here: the driver is
``ingress.batch_native``, the upstream calls ``services.providers.tasks.native_batch``.

A batch runs natively when every line names one model whose group has a
deployment marked ``native_batch = true`` of a family whose batch API takes
the batch's endpoint. Lines are translated by the family's own chat or
embeddings adapter, so a batch sent as ``/v1/messages`` may run at OpenAI
and one sent as ``/v1/chat/completions`` at Anthropic, as any request may.
"""

from __future__ import annotations

from schemas.chat import Cost
from schemas.control import ModelRoute
from schemas.envelope import Deployment

# Each family with a batch API, and the batch endpoints whose lines it runs.
ENDPOINTS: dict[str, frozenset[str]] = {
    "openai": frozenset({"/v1/chat/completions", "/v1/embeddings", "/v1/messages"}),
    "azure": frozenset({"/v1/chat/completions", "/v1/embeddings", "/v1/messages"}),
    "anthropic": frozenset({"/v1/chat/completions", "/v1/messages"}),
}
# OpenAI, Azure and Anthropic each bill a batch's tokens at half their price.
BATCH_PRICE_PERCENT = 50


def native_deployment(route: ModelRoute | None, endpoint: str) -> Deployment | None:
    """The deployment a batch to ``route``'s model on ``endpoint`` runs at
    natively (the first marked so whose family takes the endpoint), or None."""
    if route is None:
        return None
    for dep in route.deployments:
        if dep.native_batch and endpoint in ENDPOINTS.get(dep.provider, frozenset()):
            return dep
    return None


def batch_cost(cost: Cost) -> Cost:
    """``cost`` at the batch price."""

    def half(pico: int) -> int:
        return pico * BATCH_PRICE_PERCENT // 100

    return Cost(
        input=half(cost.input),
        cached_input=half(cost.cached_input),
        output=half(cost.output),
        call=half(cost.call),
        units=half(cost.units),
    )


def line_request_id(batch_id: str, line: int) -> str:
    """The request id of a native batch's line (its row's): the same in
    every driver that writes it, so a row written twice is one row."""
    return f"{batch_id}-{line}"
