"""Messages about processes rather than requests: the supervisor's word that
a process died, so that whoever waits on work that process held stops waiting."""

from __future__ import annotations

from schemas.base import BusMessage


class ProcessDied(BusMessage, tag="control.died"):
    # The supervisor's name for the process, e.g. "provider-1".
    name: str
    pid: int
    at_ns: int
