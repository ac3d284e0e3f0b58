"""A Responses API answer as the gateway keeps it (``services.bus.stored_responses``)."""

from __future__ import annotations

import msgspec

from schemas.responses import Item, Response


class StoredResponse(msgspec.Struct, omit_defaults=True):
    tenant_id: str
    # The key that asked: recorded, not checked (any key of the tenant may continue it).
    key_id: str
    # As the client got it (the ``id`` is the gateway's ``resp_<request id>``).
    response: Response
    # Every input item the response answered: the conversation it continued
    # (its items, then that response's output), then its own request's input.
    input: list[Item]
    # A ``background`` response: the durable job's request id, to cancel it.
    job_id: str = ""
