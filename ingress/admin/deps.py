"""What every admin handler is given: the calling admin and the records."""

from __future__ import annotations

import time

from litestar import Request
from litestar.di import Provide

from ingress.admin.store import ControlStore
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
