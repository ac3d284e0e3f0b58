"""What routing replicas share about deployments' health.

Every provider replica announces each upstream try's outcome
(``HEALTH_ATTEMPT``, core NATS, heard by every routing replica), so all of
them feed their breakers, latency averages and load counts from the same
facts. A breaker's state changes are also written to the ``sluice_health``
KV bucket: a replica that starts later begins from them, and operators read
them there (``sluice routes``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from schemas.base import BusMessage

BreakerStateName = Literal["closed", "open", "half_open"]


class TryOutcome(BusMessage, tag="health.try"):
    deployment: str
    ok: bool
    at_ns: int
    # Time to the upstream's first byte (of the whole answer when not streamed).
    ttfb_ns: int = 0
    # Tokens the try used, for a deployment's own TPM.
    tokens: int = 0
    # The sending replica's calls now in flight to this deployment.
    in_flight: int = 0
    replica: str = ""


class TryOutcomes(BusMessage, tag="health.tries"):
    """Tries announced together: a provider gathers its successful tries
    for a few milliseconds and sends them in one message, so a request
    costs the bus no message of its own for its health."""

    tries: Annotated[list[TryOutcome], msgspec.Meta(max_length=4096)]


class BreakerRecord(msgspec.Struct, omit_defaults=True):
    """One deployment's breaker, as last changed by any routing replica."""

    deployment: str
    state: BreakerStateName
    since_ms: int
    # The replica that saw the change, and why.
    by: str = ""
    reason: str = ""


decode_try = msgspec.msgpack.Decoder(TryOutcome).decode
decode_tries = msgspec.msgpack.Decoder(TryOutcome | TryOutcomes).decode
decode_breaker = msgspec.msgpack.Decoder(BreakerRecord).decode
