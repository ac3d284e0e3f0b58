"""(issue 28: being built) The audio requests' upstream call."""

from __future__ import annotations

from typing import Any

from schemas.errors import InvalidRequest
from services.providers.call import CallFailed, CallOutcome


async def call(*args: Any) -> CallOutcome:
    raise CallFailed(InvalidRequest("Not served yet.", status=501), 0, 0)
