"""Whether the gateway can serve: every stage it needs has a live process.

Each process's heartbeat names the stages it serves (a pipeline names
several), once a second. A stage is up while some process naming it beat
within ``stale_s``; the ingress's ``/readyz`` says ready only when NATS is
connected and every needed stage is up.
"""

from __future__ import annotations

import os

from schemas.envelope import WORKER_STAGES

# Everything a request may need: every worker stage (redaction for tenants with
# rules, the cache for tenants that cache), and the sink that records it.
NEEDED: tuple[str, ...] = (*WORKER_STAGES, "sink")
# Set by the supervisor when this gateway runs no analytics engine
# (``sluice up --analytics none``): rows wait in the stream for a sink elsewhere.
NO_SINK_ENV = "SLUICE_NO_SINK"


def needed_here() -> tuple[str, ...]:
    """The stages this gateway's ``/readyz`` waits for."""
    return tuple(s for s in NEEDED if s != "sink") if os.environ.get(NO_SINK_ENV) == "1" else NEEDED


class Readiness:
    def __init__(self, needed: tuple[str, ...] = NEEDED, stale_s: float = 3.0) -> None:
        self.needed, self.stale_s = needed, stale_s
        self._last: dict[str, float] = {}

    def saw(self, stages: list[str], now: float) -> None:
        for stage in stages:
            if stage in self.needed:
                self._last[stage] = now

    def report(self, now: float, nats: bool) -> tuple[bool, dict]:
        """(ready, the body of /readyz): each needed stage and whether it is up."""
        up = {stage: now - self._last.get(stage, float("-inf")) <= self.stale_s for stage in self.needed}
        ready = nats and all(up.values())
        return ready, {"status": "ready" if ready else "not_ready", "nats": nats, "stages": up}
