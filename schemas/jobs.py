"""Durable jobs: a request published to a JetStream work queue
(``sluice.v1.jobs.<api>``), run once, its result kept for a while.

A job's id is its sequence number in the work queue, which the publisher
gets back in JetStream's acknowledgement: unique, and not chosen by callers
(who could otherwise collide with, or guess, each other's ids).
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.base import BusMessage
from schemas.prompt_calls import ApiAnswer
from schemas.replies import Failure, Final


class Job(BusMessage, tag="job.request"):
    """The request, as its API takes it over HTTP: ``body`` for chat,
    messages and embeddings (never streamed), ``variables`` for a prompt API.
    Sent as msgpack, or as the same fields in a JSON object."""

    body: dict[str, Any] | None = None
    variables: dict[str, Any] = {}
    # An inbox of the caller's that also gets the result when it is ready.
    reply: str = ""


class JobClaim(msgspec.Struct, tag="job.claim", tag_field="kind"):
    """Written to the job's reply subject before its request is published,
    so a runner that takes the job over after a crash knows since when it ran."""

    at_ns: int
    deadline_ns: int


class JobResult(BusMessage, tag="job.result"):
    """A job's end: the answer (``Final``, or ``ApiAnswer`` for a prompt
    API), or why there is none, with usage and cost either way."""

    id: str
    api: str
    request_id: str
    result: Final | Failure | ApiAnswer
    tenant_id: str = ""
    finished_at_ns: int = 0


class JobQuery(BusMessage, tag="job.query"):
    """Ask for a job's result (``sluice.v1.in.jobs.result``), with the caller's key."""

    id: str
