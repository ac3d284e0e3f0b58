"""What every admin handler is given: the calling admin and the records,
and the error answers every endpoint documents."""

from __future__ import annotations

import time

from litestar import Request
from litestar.di import Provide
from litestar.openapi import ResponseSpec

from ingress.admin.store import ControlStore
from schemas.admin import ErrorOut
from services import control, policy


def now_ms() -> int:
    return int(time.time() * 1000)


async def provide_actor(request: Request) -> control.Actor:
    """The admin behind the request's key; 401 for no key or a bad one, 403 for a caller key."""
    gateway = request.app.state.gateway
    header = request.headers.get("authorization")
    return control.actor_of(policy.authenticate(header, gateway.keys.by_hash, now_ms()))


async def provide_store(request: Request) -> ControlStore:
    return request.app.state.store


DEPENDENCIES = {"actor": Provide(provide_actor), "store": Provide(provide_store)}


# Every admin endpoint may answer these, each with an ``ErrorOut`` body.
ERROR_RESPONSES = {
    status: ResponseSpec(data_container=ErrorOut, description=what)
    for status, what in (
        (400, "The request is malformed or invalid"),
        (401, "No key, or a key that is not valid"),
        (403, "The key may not do this"),
        (404, "No such record (or another tenant's)"),
        (409, "The record exists, changed meanwhile, or comes from the config file"),
    )
}
