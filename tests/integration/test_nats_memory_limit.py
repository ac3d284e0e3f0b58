"""The nats-server `sluice up` starts runs with a soft memory limit for Go's
heap (``services/cli/nats_server.NATS_MEMORY_LIMIT``), unless the operator
set their own ``GOMEMLIMIT``."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli import nats_server
from services.cli.nats_server import free_port


def limit_of(store: Path) -> str:
    proc = nats_server.start(store, free_port())
    try:
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        return next(v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"GOMEMLIMIT="))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_server_runs_under_the_default_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    assert limit_of(tmp_path) == nats_server.NATS_MEMORY_LIMIT == "128MiB"


def test_an_operators_own_limit_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOMEMLIMIT", "1GiB")
    assert limit_of(tmp_path) == "1GiB"
