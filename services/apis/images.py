"""(issue 28: being built) The images API rows."""

from __future__ import annotations

from services.apis.base import ClientApi

APIS: tuple[ClientApi, ...] = ()
