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

import hashlib

import msgspec

from schemas.chat import Cost
from schemas.control import ModelRoute
from schemas.envelope import Deployment
from schemas.errors import ModelNotFound
from schemas.reservation import HOLD_SPEND, Reservation
from schemas.tasks import NativeBatchRequest

# Each family with a batch API, and the batch endpoints whose lines it runs.
ENDPOINTS: dict[str, frozenset[str]] = {
    "openai": frozenset({"/v1/chat/completions", "/v1/embeddings", "/v1/messages"}),
    "azure": frozenset({"/v1/chat/completions", "/v1/embeddings", "/v1/messages"}),
    "anthropic": frozenset({"/v1/chat/completions", "/v1/messages"}),
}
# Policy's refusal of a submit whose lines the tenant's redaction or
# moderation must read one by one: the driver then runs them as jobs.
SCREENED = "native_batch_screened"
# Anthropic's custom_ids are 1-64 letters, digits, "_" and "-": a batch with
# others runs as jobs too (services.providers.tasks.native_anthropic).
UNFIT_IDS = "native_batch_custom_id_unfit"
# Larger, as the family sends it, than its batch API takes; a line its
# adapter will not translate: the lines run as jobs, each on its own.
TOO_LARGE = "native_batch_too_large"
LINE_UNFIT = "native_batch_line_unfit"
# A submit refused with one of these runs the batch's lines as jobs instead.
RUN_AS_JOBS = frozenset({SCREENED, UNFIT_IDS, TOO_LARGE, LINE_UNFIT})
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


def candidates(route: ModelRoute, task: NativeBatchRequest) -> list[Deployment]:
    """Where a step of a native batch goes: a submit to the group's
    deployments that run its endpoint natively, in order; any later step to
    the one deployment that holds the upstream batch."""
    if task.op == "submit":
        found = [d for d in route.deployments if d.native_batch and task.endpoint in ENDPOINTS.get(d.provider, ())]
    else:
        found = [d for d in route.deployments if d.name == task.deployment]
    if not found:
        raise ModelNotFound(
            f"No deployment of {route.name!r} runs this batch natively (any more).", code="native_batch_unavailable"
        )
    return found


def split_reservation(reservation: Reservation) -> tuple[Reservation | None, Reservation]:
    """(What a submit keeps held for its lines: its spend, until their
    results settle it; the rest, which the submit's own end settles.)"""
    spend = [hold for hold in reservation.holds if hold.kind == HOLD_SPEND]
    rest = [hold for hold in reservation.holds if hold.kind != HOLD_SPEND]
    kept = msgspec.structs.replace(reservation, holds=spend) if spend else None
    return kept, msgspec.structs.replace(reservation, holds=rest)


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


def orphan_request_id(batch_id: str, custom_id: str) -> str:
    """The request id of a line answered upstream whose number is lost (its
    batch's input file deleted before its results came): by its custom_id."""
    digest = hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return f"{batch_id}-c{digest}"


def line_request_id(batch_id: str, line: int) -> str:
    """The request id of a native batch's line (its row's): the same in
    every driver that writes it, so a row written twice is one row."""
    return f"{batch_id}-{line}"
