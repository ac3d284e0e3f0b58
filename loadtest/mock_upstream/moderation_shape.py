"""(issue 28: being built) The mock's moderation shape."""

from __future__ import annotations

from typing import Any


def handles(path: str) -> bool:
    """Whether this shape answers path."""
    return False


async def handle(mock: Any, behaviour: Any, path: str, scope: dict, raw: bytes, send: Any) -> None:
    """Answer the request (raw: its whole body) through mock._send."""
    raise NotImplementedError
