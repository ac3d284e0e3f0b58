"""Messages about processes rather than requests: each process's heartbeat,
and the supervisor's word that a process died, so that whoever waits on work
that process held stops waiting."""

from __future__ import annotations

import msgspec

from schemas.base import BusMessage


class ProcessDied(BusMessage, tag="control.died"):
    # The supervisor's name for the process, e.g. "provider-1".
    name: str
    pid: int
    at_ns: int


class Beat(BusMessage, tag="control.beat"):
    """A process is alive (once a second, on ``control.heartbeat.<name>``)."""

    # The stages it serves (a pipeline serves several; the ingress none).
    serves: list[str] = []
    # Requests it holds now.
    in_flight: int = 0
    pid: int = 0


decode_beat = msgspec.msgpack.Decoder(Beat).decode
