"""Prometheus metrics of every Sluice process, summed across processes.

prometheus-client's multi-process mode: each process writes its samples to
files in ``PROMETHEUS_MULTIPROC_DIR`` (the supervisor makes it, empty, under
the home, before it starts anything), and the ingress's ``GET /metrics``
sums them. A process started alone without that variable keeps its samples
in memory and its ``/metrics`` shows its own.

Requests are counted where their rows are made (``request_ended``): once
each, by whichever process ended them, with each stage's time from the
row's spans, so a stage's latency is measured wherever it ran. The request
path only adds to plain counters in memory; ``run_flusher`` writes them to
prometheus-client's values twice a second: measured in one process, a
request's samples cost ~17 µs written directly in multi-process mode, and
~2 µs tallied here, the flush's share included.
"""

from __future__ import annotations

import asyncio
import os
import threading
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.events import RequestEvent

if TYPE_CHECKING:
    from prometheus_client import Gauge, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
STAGE_BUCKETS = (1e-4, 2.5e-4, 5e-4, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _Families:
    """Every metric, made (and prometheus-client loaded: ~4 MB with the
    http.server and urllib it imports) by the first process that writes a
    sample or reads one. A stage that ended no request yet, and the
    supervisor, which only names the folder, need neither."""

    def __init__(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram

        self.CONTENT_TYPE = CONTENT_TYPE_LATEST
        self.REQUESTS = Counter("sluice_requests", "Requests ended, by client API and HTTP status", ["api", "status"])
        self.ERRORS = Counter(
            "sluice_errors", "Requests ended with an error, by OpenAI error type and code", ["type", "code"]
        )
        self.STAGE_SECONDS = Histogram(
            "sluice_stage_seconds", "Time a stage held a request", ["stage"], buckets=STAGE_BUCKETS
        )
        self.REQUEST_SECONDS = Histogram(
            "sluice_request_seconds",
            "Time from a request's arrival to its end, by client API",
            ["api"],
            buckets=REQUEST_BUCKETS,
        )
        self.HTTP_IN_FLIGHT = Gauge(
            "sluice_http_in_flight",
            "HTTP model and prompt-API requests held by the ingress processes",
            multiprocess_mode="livesum",
        )
        self.EVENTS_PENDING = Gauge(
            "sluice_events_pending",
            "Event batches in the stream not yet stored in ClickHouse (as the sink last saw)",
            multiprocess_mode="livemax",
        )
        # Counted by the analytics sink as it stores ``requests`` rows (issue 24).
        self.DUPLICATE_ROWS = Counter(
            "sluice_duplicate_rows",
            "Request rows dropped as copies of one already stored (a batch redelivered or published again)",
        )
        self.ROW_CONFLICTS = Counter(
            "sluice_row_conflicts",
            "Second rows of a request that differ from the stored one: kept in request_conflicts and alerted",
        )


_made: _Families | None = None
# A metric registered twice is an error: the sink's store writes from a thread.
_making = threading.Lock()


def _families() -> _Families:
    global _made
    if _made is None:
        with _making:
            if _made is None:
                _made = _Families()
    return _made


_NAMES = frozenset(
    (
        "CONTENT_TYPE",
        "REQUESTS",
        "ERRORS",
        "STAGE_SECONDS",
        "REQUEST_SECONDS",
        "HTTP_IN_FLIGHT",
        "EVENTS_PENDING",
        "DUPLICATE_ROWS",
        "ROW_CONFLICTS",
    )
)


def __getattr__(name: str) -> Any:
    """``metrics.REQUESTS`` and the rest, as before they were made lazily."""
    if name in _NAMES:
        return getattr(_families(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


FLUSH_S = 0.5


class _Pending:
    """What this process saw since the last flush."""

    def __init__(self) -> None:
        self.requests: Tally[tuple[str, int]] = Tally()
        self.errors: Tally[tuple[str, str]] = Tally()
        # (the histogram's attribute on ``_Families``, its label) -> seconds
        self.seconds: dict[tuple[str, str], list[float]] = {}


_pending = _Pending()
# Gauges read at each flush: (gauge, what it shows now).
_sampled: list[tuple[Gauge, Callable[[], float]]] = []


def request_ended(event: RequestEvent) -> None:
    p = _pending
    p.requests[(event.api, event.status)] += 1
    if event.error_type:
        p.errors[(event.error_type, event.error_code)] += 1
    p.seconds.setdefault(("REQUEST_SECONDS", event.api), []).append(event.latency_ns / 1e9)
    for span in event.spans:
        p.seconds.setdefault(("STAGE_SECONDS", span.stage), []).append(max(0, span.end_ns - span.start_ns) / 1e9)


def sample(gauge: Gauge, read: Callable[[], float]) -> None:
    """Set ``gauge`` to ``read()`` at each flush."""
    _sampled.append((gauge, read))


def flush() -> None:
    global _pending
    p = _pending
    if not (p.requests or p.seconds or _sampled):
        return  # nothing to write: prometheus-client stays unloaded
    _pending = _Pending()
    families = _families()
    for (api, status), n in p.requests.items():
        families.REQUESTS.labels(api, str(status)).inc(n)
    for (type_, code), n in p.errors.items():
        families.ERRORS.labels(type_, code).inc(n)
    for (histogram, label), values in p.seconds.items():
        _observe_all(getattr(families, histogram).labels(label), values)
    for gauge, read in _sampled:
        gauge.set(read())


def _observe_all(child: Histogram, values: list[float]) -> None:
    """Many observations with one write per bucket touched, where
    prometheus-client's ``observe`` writes twice per value."""
    bounds = getattr(child, "_upper_bounds", None)
    if bounds is None:  # another prometheus-client: one at a time
        for v in values:
            child.observe(v)
        return
    counts = [0] * len(bounds)
    for v in values:
        counts[bisect_left(bounds, v)] += 1
    for i, n in enumerate(counts):
        if n:
            child._buckets[i].inc(n)
    child._sum.inc(sum(values))


async def run_flusher() -> None:
    """Flush twice a second until cancelled (then once more)."""
    try:
        while True:
            await asyncio.sleep(FLUSH_S)
            flush()
    finally:
        flush()


def exposition() -> bytes:
    """The text format of every process's metrics (this one's alone when
    not in multi-process mode)."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    _families()  # this process's own are shown even before it wrote any
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


def process_died(pid: int, folder: Path) -> None:
    """Drop a dead process's live gauges (its counters keep counting in the sum)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(folder))
