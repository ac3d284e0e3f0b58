"""Kill a process of a running gateway under load, and see what callers got.

A bounded load of openai-SDK callers (streamed and not, half of them through
the redaction stage) runs against a gateway; one process is killed with
SIGKILL (or frozen with SIGSTOP) partway. The report says how every request
ended, how long the gateway took to serve again, and how the rows in
ClickHouse compare with what the mock upstream answered.

    python -m loadtest.faults [--callers 6] [--before 1.5] [--after 7]

prints one line per process. ``tests/integration/test_faults.py`` asserts on
the same reports.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import openai

from services.cli.layout import stage_processes

# One word per streamed chunk, a little latency for the non-streamed: both
# keep requests in flight at every stage when the kill comes.
STREAMED = "fault load [mock:chunks=8] [mock:chunk_ms=15]"
COMPLETE = "fault load [mock:latency_ms=60] [mock:chunks=8]"
# What is killed in turn: every stage process of the default layout, and the ingress.
PROCESSES = (*stage_processes(), "ingress")
# Every request of a caching tenant passes the cache stage (and has its answer
# kept), yet each is answered by the upstream: the mock's count stays exact.
FRESH = {"cache-control": "no-cache"}


class Outcome(msgspec.Struct):
    started: float
    ended: float
    stream: bool
    # 200, an HTTP error status, "stream_error" (a JSON error event after the
    # stream began), or "connection" (no HTTP answer at all).
    result: int | str
    request_id: str = ""
    # An error came as JSON in OpenAI's shape.
    json_error: bool = False


class Report(msgspec.Struct):
    # What was done, e.g. "SIGKILL pipeline" or "rolling restart".
    fault: str
    killed_at: float
    # When the fault's action returned (a rolling restart, an outage: its end).
    fault_ended: float
    outcomes: list[Outcome]
    # Seconds from the kill to the end of the first successful request that
    # started after it; None if none succeeded.
    serving_again_s: float | None
    # Of the requests in flight or started after the kill, how many failed.
    failed: int
    mock_answered: int
    window_ns: tuple[int, int]


def _call(client: openai.OpenAI, stream: bool, model: str) -> Outcome:
    started = time.monotonic()
    request_id = ""
    messages = [{"role": "user", "content": STREAMED if stream else COMPLETE}]
    try:
        if stream:
            raw = client.chat.completions.with_raw_response.create(
                model=model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=FRESH,
            )
            request_id = raw.headers.get("x-request-id", "")
            for _ in raw.parse():
                pass
        else:
            raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, extra_headers=FRESH)
            request_id = raw.headers.get("x-request-id", "")
            raw.parse()
        return Outcome(started, time.monotonic(), stream, 200, request_id)
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        return Outcome(
            started,
            time.monotonic(),
            stream,
            exc.status_code,
            exc.response.headers.get("x-request-id", ""),
            json_error="message" in body or "error" in body,
        )
    except openai.APIConnectionError:
        return Outcome(started, time.monotonic(), stream, "connection", request_id)
    except openai.APIError as exc:  # an error event inside a stream that had begun
        return Outcome(started, time.monotonic(), stream, "stream_error", request_id, json_error=exc.body is not None)


def signal_to(pid: int, sig: signal.Signals) -> Callable[[], None]:
    return lambda: os.kill(pid, sig)


def run(
    base_url: str,
    keys: list[str],
    mock_url: str,
    fault: str,
    act: Callable[[], object],
    *,
    callers: int = 6,
    before_s: float = 1.5,
    after_s: float = 7.0,
    model: str = "demo-model",
) -> Report:
    """Drive the gateway with ``callers`` threads; ``act`` (the fault: a
    signal, or a rolling restart that takes a while) runs ``before_s`` in,
    and the load goes on ``after_s`` after it returns."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    end_at = float("inf")  # set once the fault is done

    def caller(index: int) -> None:
        key = keys[index % len(keys)]
        with openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=40) as client:
            n = 0
            while time.monotonic() < end_at:
                outcome = _call(client, (index + n) % 2 == 1, model)
                with lock:
                    outcomes.append(outcome)
                if outcome.result == "connection":
                    time.sleep(0.1)  # the ingress is restarting: do not spin
                n += 1

    answered_before = _mock_answered(mock_url)
    since_ns = time.time_ns()
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    time.sleep(before_s)
    killed_at = time.monotonic()
    try:
        act()
    finally:
        fault_ended = time.monotonic()
        end_at = fault_ended + after_s
    for t in threads:
        t.join(120)
    until_ns = time.time_ns()
    time.sleep(0.5)  # streams the mock cut when the provider died end their bookkeeping
    after = [o for o in outcomes if o.ended >= killed_at]
    firsts = [o.ended - killed_at for o in outcomes if o.started >= killed_at and o.result == 200]
    return Report(
        fault=fault,
        killed_at=killed_at,
        fault_ended=fault_ended,
        outcomes=outcomes,
        serving_again_s=min(firsts) if firsts else None,
        failed=sum(1 for o in after if o.result != 200),
        mock_answered=_mock_answered(mock_url) - answered_before,
        window_ns=(since_ns, until_ns),
    )


def rows_beyond_one(query: Callable[..., dict], since_ns: int) -> tuple[int, int]:
    """Rows beyond one per request among those received since ``since_ns``,
    counted in the raw ``requests`` table (no FINAL: a merge would fold
    copies away, and the sink leaves out a request's second row before it
    could be seen), and the conflicts recorded for them: a second row that
    differed, kept in ``request_conflicts``. ``query`` runs a named query
    (``Stack.query``)."""
    result = query("duplicate_rows", since_ns=since_ns)
    if result["error"]:
        raise RuntimeError(result["error"])
    ((duplicates, conflicts),) = result["rows"]
    return int(duplicates), int(conflicts)


def _mock_answered(mock_url: str) -> int:
    stats = httpx.get(f"{mock_url}/mock/stats", timeout=10).json()
    return stats["completed_requests"] + stats["completed_streams"]


def main() -> None:
    from tests.stack import DEMO_KEY, REDACT_KEY, Stack

    parser = argparse.ArgumentParser(prog="python -m loadtest.faults")
    parser.add_argument("--callers", type=int, default=6)
    parser.add_argument("--before", type=float, default=1.5)
    parser.add_argument("--after", type=float, default=7.0)
    parser.add_argument("--stop", action="store_true", help="freeze with SIGSTOP instead of killing")
    args = parser.parse_args()
    stack = Stack(Path(tempfile.mkdtemp(prefix="sluice-faults-")), timeout_s=30).start()
    sig = signal.SIGSTOP if args.stop else signal.SIGKILL
    print(f"{'fault':20} {'requests':>8} {'failed':>6} {'serving again':>13}  mock answered")
    try:
        for name in PROCESSES:
            pid = stack.supervisor.pids()[name]
            r = run(
                stack.base_url,
                [DEMO_KEY, REDACT_KEY],
                stack.mock_url,
                f"{sig.name} {name}",
                signal_to(pid, sig),
                callers=args.callers,
                before_s=args.before,
                after_s=args.after,
            )
            again = f"{r.serving_again_s:.2f} s" if r.serving_again_s is not None else "never"
            print(f"{r.fault:20} {len(r.outcomes):>8} {r.failed:>6} {again:>13}  {r.mock_answered}")
            time.sleep(2)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
