"""``python -m loadtest.mock_upstream``: the mock LLM upstream (what ``sluice
mock-upstream`` and ``sluice up`` run)."""

from __future__ import annotations

import argparse

from loadtest.mock_upstream.app import run_mock
from loadtest.mock_upstream.faults import Behaviour


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.mock_upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--chunk-ms", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=12)
    args = parser.parse_args()
    defaults = Behaviour(latency_ms=args.latency_ms, chunk_ms=args.chunk_ms, chunks=args.chunks)
    print(f"mock upstream on http://{args.host}:{args.port}/v1 ({defaults})", flush=True)
    run_mock(args.host, args.port, defaults)


if __name__ == "__main__":
    main()
